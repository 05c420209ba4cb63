//! `POST /v1/auth/verify`: for host applications that sign their people
//! in themselves with cedargate's accounts (rather than an external
//! identity provider): checks an e-mail, a password and, for a person with
//! two-step verification, a code; answers who they are and their
//! memberships. Same throttling (per account) and code replay rules as the
//! console.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::admin::InviteApp;
use super::console::accounts_of;
use super::error::{ApiError, ErrorBody};
use super::extract::ApiJson;
use crate::accounts::HostIdentity;

/// The credentials a host application's sign-in form collected.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VerifyBody {
    /// The login e-mail.
    pub email: String,
    /// The password.
    pub password: String,
    /// A two-step verification code (or recovery code), for people who set
    /// it up.
    #[serde(default)]
    pub totp: Option<String>,
}

/// The host API's routes (behind the API token).
pub fn router(app: InviteApp) -> Router<AppState> {
    Router::new()
        .route("/v1/auth/verify", post(verify))
        .with_state(app)
}

/// Checks a person's credentials.
#[utoipa::path(post, path = "/v1/auth/verify", tag = "auth", request_body = VerifyBody,
    responses(
        (status = 200, description = "the credentials are right: who the person is", body = HostIdentity),
        (status = 400, description = "a body that is not the JSON described (malformed, wrong content type, missing fields)", body = ErrorBody),
        (status = 401, description = "`invalid_credentials` (unknown e-mail or wrong password, one answer), `totp_required` (the person uses two-step verification and no code was sent), `invalid_totp`, or `unauthorized` (missing or invalid API token)", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 429, description = "`throttled`: too many failed attempts for this account; see Retry-After", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn verify(
    State(app): State<InviteApp>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Json<HostIdentity>, ApiError> {
    let accounts = accounts_of(&app);
    let identity = accounts
        .verify_for_host(
            &body.email,
            &body.password,
            body.totp.as_deref(),
            app.clock.now(),
        )
        .await?;
    Ok(Json(identity))
}
