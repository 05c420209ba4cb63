//! The HTTP API. Handlers extract, call one engine function, and convert;
//! no SQL or Cedar here.

pub mod authzen;
pub mod entities;
pub mod error;
pub mod extract;
pub mod health;
pub mod native;
pub mod policies;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::engine::Engine;
use crate::metrics::Metrics;
use error::ApiError;
pub use extract::Auth;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The decision engine (and through it the entity store).
    pub engine: Arc<Engine>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Caller authentication.
    pub auth: Arc<Auth>,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
    /// Longest time to answer.
    pub timeout: Duration,
}

/// The OpenAPI document of every endpoint.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "cedargate", description = "Authorization sidecar: Cedar policies behind AuthZEN and a native API"),
    paths(
        native::is_authorized, native::is_authorized_batch,
        authzen::evaluation, authzen::evaluations, authzen::configuration,
        entities::put_entities, entities::delete_entity,
        policies::get_policies, policies::reload,
        health::healthz, health::readyz, health::metrics, openapi_json,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// The whole API with its layers.
pub fn router(state: AppState, limits: Limits) -> Router {
    let protected = Router::new()
        .route("/v1/is_authorized", post(native::is_authorized))
        .route("/v1/is_authorized/batch", post(native::is_authorized_batch))
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/v1/entities", put(entities::put_entities))
        .route("/v1/entities/{type}/{id}", delete(entities::delete_entity))
        .route("/v1/policies", get(policies::get_policies))
        .route("/v1/policies/reload", post(policies::reload))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi_json))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::require_token,
        ));
    let public = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/.well-known/authzen-configuration",
            get(authzen::configuration),
        );

    public
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), extract::count_status))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.timeout))
        // The trace span records method and path only (no query, no headers),
        // so secrets never reach the logs.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
