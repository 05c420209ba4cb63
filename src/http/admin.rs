//! The administration API of the invitation service. Every call names the
//! acting user in `X-Cedargate-Actor` (user id or e-mail), and
//! `X-Cedargate-Actor-Mfa: true` when the actor's session passed two-step
//! verification; the actor is authorized through the Cedar policies.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, patch, post, put};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Path, Query, RequestId};
use super::written::Written;
use crate::audit;
use crate::clock::Clock;
use crate::entities::EntityStore;
use crate::invites::service::{
    Accepted, EditInput, InviteInput, InviteOutcome, MemberView, NewPassword,
};
use crate::invites::status::StatusChange;
use crate::invites::{Actor, InviteService};

/// The header naming the acting user.
pub const ACTOR_HEADER: &str = "x-cedargate-actor";
/// The header saying the actor's session passed MFA.
pub const ACTOR_MFA_HEADER: &str = "x-cedargate-actor-mfa";

/// The acting user as the request names them (and, for the OpenAPI
/// document, the headers that name them).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ActorHeader {
    /// The acting user: user id or e-mail.
    #[param(rename = "X-Cedargate-Actor")]
    name: String,
    /// `true` when the actor's session passed two-step verification.
    #[param(rename = "X-Cedargate-Actor-Mfa", required = false)]
    mfa: bool,
    #[param(ignore)]
    request_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ActorHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(RequestId(request_id)) = RequestId::from_request_parts(parts, state).await;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let name = header(ACTOR_HEADER)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "name the acting user (user id or e-mail) in the `X-Cedargate-Actor` header",
                )
            })?;
        Ok(Self {
            name: name.to_owned(),
            mfa: header(ACTOR_MFA_HEADER).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            request_id: Some(request_id.trim().to_owned()).filter(|id| !id.is_empty()),
        })
    }
}

/// What the invitation routes reach. The service is there by
/// construction: its routes are merged only when it is on.
#[derive(Debug, Clone)]
pub struct InviteApp {
    /// The invitation service.
    pub service: Arc<InviteService>,
    /// The entity store (for the consistency token of a write).
    pub store: Arc<EntityStore>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// The invitation service's API (under the bearer token).
pub fn router(app: InviteApp) -> Router<AppState> {
    Router::new()
        .route("/v1/admins", post(create_admin))
        .route("/v1/orgs", post(create_org))
        .route("/v1/orgs/{org}/members", get(list_members))
        .route("/v1/orgs/{org}/invitations", post(invite))
        .route(
            "/v1/orgs/{org}/members/{user}",
            patch(edit_member).delete(remove_member),
        )
        .route(
            "/v1/orgs/{org}/members/{user}/invitation",
            post(resend).delete(revoke),
        )
        .route("/v1/orgs/{org}/members/{user}/status", put(set_status))
        .route(
            "/v1/orgs/{org}/members/{user}/agent-approval",
            put(decide_agent),
        )
        .route("/v1/orgs/{org}/audit", get(audit_trail))
        .route(
            "/v1/orgs/{org}/departments/{department}",
            put(save_department).delete(delete_department),
        )
        .route("/v1/invitations/accept", post(accept))
        .route("/v1/invitations/decline", post(decline))
        .with_state(app)
}

pub(super) async fn actor(service: &InviteService, header: ActorHeader) -> Result<Actor, ApiError> {
    Ok(service
        .resolve_actor(&header.name, header.mfa, header.request_id)
        .await?)
}

/// A new system administrator.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewAdmin {
    /// E-mail.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// The new system administrator.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewAdminId {
    /// Their user id.
    pub user_id: String,
}

/// Creates a system administrator (system administrators only).
#[utoipa::path(post, path = "/v1/admins", tag = "administration", params(ActorHeader), request_body = NewAdmin,
    responses(
        (status = 201, description = "created", body = Written<NewAdminId>),
        (status = 400, description = "no `X-Cedargate-Actor` header, or a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "invalid e-mail or names (`field` names it)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn create_admin(
    State(app): State<InviteApp>,
    who: ActorHeader,
    ApiJson(body): ApiJson<NewAdmin>,
) -> Result<(StatusCode, Json<Written<NewAdminId>>), ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    let user_id = service
        .create_admin(
            &actor,
            &body.email,
            &body.first_name,
            &body.last_name,
            app.clock.now(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Written::new(&app.store, NewAdminId { user_id })),
    ))
}

/// A new organization and its first owner.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewOrganization {
    /// Id (slug), e.g. `acme`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Require two-step verification.
    #[serde(default)]
    pub require_mfa: bool,
    /// The first owner, who receives an invitation.
    pub owner: InviteInput,
}

/// Creates an organization and invites its owner (system administrators only).
#[utoipa::path(post, path = "/v1/orgs", tag = "administration", params(ActorHeader), request_body = NewOrganization,
    responses(
        (status = 201, body = Written<InviteOutcome>),
        (status = 400, description = "no `X-Cedargate-Actor` header, or a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 409, description = "the organization exists", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "invalid field (`field` names it)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn create_org(
    State(app): State<InviteApp>,
    who: ActorHeader,
    ApiJson(body): ApiJson<NewOrganization>,
) -> Result<(StatusCode, Json<Written<InviteOutcome>>), ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    let outcome = service
        .create_org(
            &actor,
            &body.id,
            &body.name,
            body.require_mfa,
            body.owner,
            app.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(Written::new(&app.store, outcome))))
}

/// The organization's members with status, role, permissions,
/// restrictions, department, agent flag and invitation state.
#[utoipa::path(get, path = "/v1/orgs/{org}/members", tag = "administration",
    params(ActorHeader, ("org" = String, Path)),
    responses(
        (status = 200, body = Vec<MemberView>),
        (status = 400, description = "no `X-Cedargate-Actor` header, or a path segment that is not UTF-8", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit", body = ErrorBody),
    ))]
pub async fn list_members(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path(org): Path<String>,
) -> Result<Json<Vec<MemberView>>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    Ok(Json(
        service.list_members(&actor, &org, app.clock.now()).await?,
    ))
}

/// Invites one person ("save" with `send: false`, "save and send" by default).
#[utoipa::path(post, path = "/v1/orgs/{org}/invitations", tag = "administration",
    params(ActorHeader, ("org" = String, Path)), request_body = InviteInput,
    responses(
        (status = 201, body = Written<InviteOutcome>),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization", body = ErrorBody),
        (status = 409, description = "already a member, or an inactive member (reactivate instead)", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "invalid field (`field` names it)", body = ErrorBody),
        (status = 429, description = "over the organization's 24-hour limit; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn invite(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path(org): Path<String>,
    ApiJson(body): ApiJson<InviteInput>,
) -> Result<(StatusCode, Json<Written<InviteOutcome>>), ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    let outcome = service.invite(&actor, &org, &body, app.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(Written::new(&app.store, outcome))))
}

/// Resends a pending member's invitation: a new link; the old one stops working.
#[utoipa::path(post, path = "/v1/orgs/{org}/members/{user}/invitation", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("user" = String, Path)),
    responses(
        (status = 200, body = Written<InviteOutcome>),
        (status = 400, description = "no `X-Cedargate-Actor` header, or a path segment that is not UTF-8", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization or member", body = ErrorBody),
        (status = 409, description = "the member is not pending", body = ErrorBody),
        (status = 429, description = "over the organization's 24-hour limit; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn resend(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Written<InviteOutcome>>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    Ok(Json(Written::new(
        &app.store,
        service.resend(&actor, &org, &user, app.clock.now()).await?,
    )))
}

/// Revokes a pending member's invitation.
#[utoipa::path(delete, path = "/v1/orgs/{org}/members/{user}/invitation", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("user" = String, Path)),
    responses(
        (status = 204, description = "revoked"),
        (status = 400, description = "no `X-Cedargate-Actor` header, or a path segment that is not UTF-8", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization, member or pending invitation", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn revoke(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    service.revoke(&actor, &org, &user, app.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a member's role, permissions, department, restrictions or agent flag.
#[utoipa::path(patch, path = "/v1/orgs/{org}/members/{user}", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("user" = String, Path)), request_body = EditInput,
    responses(
        (status = 200, body = Written<MemberView>),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization or member", body = ErrorBody),
        (status = 409, description = "the members changed meanwhile; try again", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "invalid field (`field` names it)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn edit_member(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<EditInput>,
) -> Result<Json<Written<MemberView>>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    Ok(Json(Written::new(
        &app.store,
        service
            .edit_member(&actor, &org, &user, &body, app.clock.now())
            .await?,
    )))
}

/// Sets a member ACTIVE or INACTIVE. A reactivation restores the
/// permissions held before (`"reactivate": "restore"`, the default) or
/// starts fresh with the `role`, `permissions` and `restrictions` given
/// (`"reactivate": "fresh"`); either way the grant is authorized as an edit.
#[utoipa::path(put, path = "/v1/orgs/{org}/members/{user}/status", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("user" = String, Path)), request_body = StatusChange,
    responses(
        (status = 200, body = Written<MemberView>),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a body that is not the JSON described (malformed, wrong content type, missing or unknown fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them), including the reactivation's grant", body = ErrorBody),
        (status = 404, description = "no such organization or member", body = ErrorBody),
        (status = 409, description = "the member is pending, `reactivate` names a member who is not inactive, or the members changed meanwhile", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "not `ACTIVE` or `INACTIVE`; a reactivation choice on a deactivation or a restore; an unknown choice, role, module, level or account (`field` names it)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn set_status(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<Written<MemberView>>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    Ok(Json(Written::new(
        &app.store,
        service
            .set_status(&actor, &org, &user, &body, app.clock.now())
            .await?,
    )))
}

/// Removes a membership.
#[utoipa::path(delete, path = "/v1/orgs/{org}/members/{user}", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("user" = String, Path)),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "no `X-Cedargate-Actor` header, or a path segment that is not UTF-8", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization or member", body = ErrorBody),
        (status = 409, description = "the members changed meanwhile; try again", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn remove_member(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    service
        .remove_member(&actor, &org, &user, app.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An agent decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AgentDecision {
    /// Approve (`true`) or reject (`false`).
    pub approved: bool,
    /// Reference of the signed Notice of Agent Designation (required to approve).
    #[serde(default)]
    pub designation: Option<String>,
}

/// Approves or rejects a third-party agent (system administrators only).
#[utoipa::path(put, path = "/v1/orgs/{org}/members/{user}/agent-approval", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("user" = String, Path)), request_body = AgentDecision,
    responses(
        (status = 200, body = Written<MemberView>),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization or member", body = ErrorBody),
        (status = 409, description = "the member is not an agent awaiting a decision", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "approval without a designation", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn decide_agent(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<AgentDecision>,
) -> Result<Json<Written<MemberView>>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    let view = service
        .decide_agent(
            &actor,
            &org,
            &user,
            body.approved,
            body.designation.as_deref(),
            app.clock.now(),
        )
        .await?;
    Ok(Json(Written::new(&app.store, view)))
}

/// The organization's audit trail, oldest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "administration",
    params(ActorHeader, ("org" = String, Path), audit::Filter),
    responses(
        (status = 200, body = Vec<audit::Record>),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a query that does not parse", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit", body = ErrorBody),
    ))]
pub async fn audit_trail(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path(org): Path<String>,
    Query(filter): Query<audit::Filter>,
) -> Result<Json<Vec<audit::Record>>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    Ok(Json(
        service
            .audit_trail(&actor, &org, &filter, app.clock.now())
            .await?,
    ))
}

/// A department's name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DepartmentBody {
    /// Display name.
    pub name: String,
}

/// Creates or renames a department.
#[utoipa::path(put, path = "/v1/orgs/{org}/departments/{department}", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("department" = String, Path)), request_body = DepartmentBody,
    responses(
        (status = 204, description = "saved"),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "invalid department id or name", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn save_department(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, department)): Path<(String, String)>,
    ApiJson(body): ApiJson<DepartmentBody>,
) -> Result<StatusCode, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    service
        .save_department(&actor, &org, &department, &body.name, app.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a department; its members keep no department.
#[utoipa::path(delete, path = "/v1/orgs/{org}/departments/{department}", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("department" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "no `X-Cedargate-Actor` header, or a path segment that is not UTF-8", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such department", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn delete_department(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, department)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    service
        .delete_department(&actor, &org, &department, app.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accepting through the API (for host applications with their own page).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct AcceptBody {
    /// The secret from the link.
    pub token: String,
    /// The new password (when the person has no account yet).
    #[serde(default)]
    pub password: Option<String>,
}

/// Accepts an invitation (the token travels in the body, never in a URL).
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "invitations", request_body = AcceptBody,
    responses(
        (status = 200, body = Written<Accepted>),
        (status = 400, description = "a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 404, description = "link unavailable: unknown, used, expired, revoked or declined", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "password rules", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn accept(
    State(app): State<InviteApp>,
    request_id: RequestId,
    ApiJson(body): ApiJson<AcceptBody>,
) -> Result<Json<Written<Accepted>>, ApiError> {
    let service = &app.service;
    Ok(Json(Written::new(
        &app.store,
        service
            .accept(
                &body.token,
                // One entry: a host application's page checks its own
                // confirmation.
                NewPassword {
                    password: body.password.as_deref(),
                    confirmation: None,
                },
                request_id.audited(),
                app.clock.now(),
            )
            .await?
            .into_result()?,
    )))
}

/// Declining through the API.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeclineBody {
    /// The secret from the link.
    pub token: String,
}

/// Declines an invitation.
#[utoipa::path(post, path = "/v1/invitations/decline", tag = "invitations", request_body = DeclineBody,
    responses(
        (status = 204, description = "declined"),
        (status = 400, description = "a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 404, description = "link unavailable: unknown, used, expired, revoked or declined", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn decline(
    State(app): State<InviteApp>,
    request_id: RequestId,
    ApiJson(body): ApiJson<DeclineBody>,
) -> Result<StatusCode, ApiError> {
    let service = &app.service;
    service
        .decline(&body.token, request_id.audited(), app.clock.now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
