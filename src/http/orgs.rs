//! An organization's settings: `GET` and `PATCH /v1/orgs/{org}`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;
use super::admin::{ActorHeader, InviteApp, actor};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Path};
use super::written::Written;
use crate::invites::orgs::{OrgSettings, SettingsChange};

/// The settings routes (under the bearer token, with the invitation
/// service).
pub fn router(app: InviteApp) -> Router<AppState> {
    Router::new()
        .route("/v1/orgs/{org}", get(settings).patch(update_settings))
        .with_state(app)
}

/// An organization's settings: name and whether it requires two-step
/// verification.
#[utoipa::path(get, path = "/v1/orgs/{org}", tag = "administration",
    params(ActorHeader, ("org" = String, Path)),
    responses(
        (status = 200, body = OrgSettings),
        (status = 400, description = "no `X-Cedargate-Actor` header, or a path segment that is not UTF-8", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them), whether or not the organization exists", body = ErrorBody),
        (status = 404, description = "no such organization (only to a caller the policies allow)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit", body = ErrorBody),
    ))]
pub async fn settings(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path(org): Path<String>,
) -> Result<Json<OrgSettings>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    Ok(Json(
        service.org_settings(&actor, &org, app.clock.now()).await?,
    ))
}

/// Changes an organization's name or two-step verification requirement
/// (`organization.manage`); effective on the next decision.
#[utoipa::path(patch, path = "/v1/orgs/{org}", tag = "administration",
    params(ActorHeader, ("org" = String, Path)), request_body = SettingsChange,
    responses(
        (status = 200, body = Written<OrgSettings>),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a body that is not the JSON described (malformed, wrong content type, unknown fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them), whether or not the organization exists", body = ErrorBody),
        (status = 404, description = "no such organization (only to a caller the policies allow)", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "an invalid name (`field` names it)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit", body = ErrorBody),
    ))]
pub async fn update_settings(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path(org): Path<String>,
    ApiJson(change): ApiJson<SettingsChange>,
) -> Result<Json<Written<OrgSettings>>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    let settings = service
        .update_org_settings(&actor, &org, &change, app.clock.now())
        .await?;
    Ok(Json(Written::new(&app.store, settings)))
}
