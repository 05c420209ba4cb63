//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (alive) or `ready`.
    pub status: &'static str,
    /// The policy revision in force (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<u64>,
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", security(()),
    responses(
        (status = 200, description = "alive", body = Health),
    ))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        policy_revision: None,
    })
}

/// Ready: policies are loaded and the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health", security(()),
    responses(
        (status = 200, description = "ready", body = Health),
        (status = 503, description = "not ready (database unreachable), or not answered within the time limit", body = ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let revision = state.engine.current().revision;
    match state.engine.store().ping().await {
        Ok(()) => Ok(Json(Health {
            status: "ready",
            policy_revision: Some(revision),
        })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: database unreachable");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "database unreachable",
            ))
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
