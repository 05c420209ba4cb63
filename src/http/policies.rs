//! Policy status and reload.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// One policy of the set in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyInfo {
    /// Its id (`@id` annotation).
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// The file it is written in.
    pub file: String,
    /// Its first line.
    pub line: usize,
}

/// The policy set in force and the last reload attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyStatus {
    /// Grows by one per successful reload.
    pub revision: u64,
    /// Unix seconds when this revision was loaded.
    pub loaded_at: i64,
    /// The policy files.
    pub files: Vec<String>,
    /// Every policy.
    pub policies: Vec<PolicyInfo>,
    /// Diagnostics of the last refused reload, if the last attempt failed.
    pub last_reload_error: Option<String>,
    /// Unix seconds of the last reload attempt.
    pub last_reload_attempt_at: Option<i64>,
    /// Reload attempts since start, taken or refused.
    pub reload_attempts: u64,
}

/// The policy set in force.
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    responses(
        (status = 200, body = PolicyStatus),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
    ))]
pub async fn get_policies(State(state): State<AppState>) -> Json<PolicyStatus> {
    let loaded = state.engine.current();
    let status = state.engine.reload_status();
    let policies = loaded
        .snapshot
        .policy_ids()
        .into_iter()
        .map(|(id, origin)| PolicyInfo {
            id,
            effect: if origin.effect == cedar_policy::Effect::Permit {
                "permit"
            } else {
                "forbid"
            },
            file: origin.file.clone(),
            line: origin.line,
        })
        .collect();
    Json(PolicyStatus {
        revision: loaded.revision,
        loaded_at: loaded.loaded_at,
        files: loaded.snapshot.files().to_vec(),
        policies,
        last_reload_error: status.last_error,
        last_reload_attempt_at: status.last_attempt_at,
        reload_attempts: status.attempts,
    })
}

/// The revision now in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// The new revision.
    pub revision: u64,
    /// The store revision now in force (also `X-Cedargate-Revision`).
    pub store_revision: u64,
}

/// Loads the policy and schema directories again; an invalid set is
/// refused (422 with file and line) and the previous set keeps serving.
#[utoipa::path(post, path = "/v1/policies/reload", tag = "policies",
    responses(
        (status = 200, body = Reloaded),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 422, description = "invalid policies; the previous set keeps serving", body = ErrorBody),
        (status = 503, description = "not answered within the time limit", body = ErrorBody),
    ))]
pub async fn reload(State(state): State<AppState>) -> Result<Json<Reloaded>, ApiError> {
    match state.engine.reload().await {
        Ok(revision) => Ok(Json(Reloaded {
            revision,
            store_revision: state.engine.store().token(),
        })),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policies",
            e.render(),
        )),
    }
}

/// The policy API.
pub fn router() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/policies", get(get_policies))
        .route("/v1/policies/reload", post(reload))
}
