//! The HTTP API. Handlers extract, call one engine function, and convert;
//! no SQL or Cedar here.

pub mod admin;
pub mod auth_api;
pub mod authzen;
pub mod console;
pub mod email_change;
pub mod entities;
pub mod error;
pub mod extract;
pub mod health;
pub mod invite_page;
pub mod jobs;
mod link_page;
pub mod native;
pub mod orgs;
pub mod policies;
pub mod search;
pub mod written;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::clock::Clock;
use crate::engine::Engine;
use crate::invites::InviteService;
use crate::metrics::Metrics;
use error::ApiError;
pub use extract::Auth;

/// What every handler can reach: one `Arc`, because axum clones the state
/// for every middleware and route a request passes through.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// The state over `services`.
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
#[derive(Debug)]
pub struct Services {
    /// The decision engine (and through it the entity store).
    pub engine: Arc<Engine>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Caller authentication.
    pub auth: Arc<Auth>,
    /// The invitation service (absent when the schema is another model).
    pub invites: Option<Arc<InviteService>>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// This sidecar's base URL as callers reach it (`--public-url`, else
    /// `http://<bound address>`), for the AuthZEN metadata document.
    pub public_url: String,
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
        native::is_authorized, native::is_authorized_batch, native::plan,
        authzen::evaluation, authzen::evaluations, authzen::configuration,
        search::subject, search::resource, search::action,
        entities::put_entities, entities::delete_entity,
        policies::get_policies, policies::reload,
        health::healthz, health::readyz, health::metrics, openapi_json,
        admin::create_admin, admin::create_org, admin::list_members, admin::invite, jobs::bulk_invite, jobs::bulk_job,
        admin::resend, admin::revoke, admin::edit_member, admin::set_status, admin::remove_member,
        admin::decide_agent, admin::audit_trail, admin::save_department, admin::delete_department,
        admin::accept, admin::decline, orgs::settings, orgs::update_settings,
        email_change::request_email_change, auth_api::verify,
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
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses(
        (status = 200, description = "OpenAPI 3.1 document", body = Object),
        (status = 401, description = "missing or invalid API token", body = error::ErrorBody),
    ))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

/// The whole API with its layers: each area's router, the invitation
/// service's only when it is on.
pub fn router(state: AppState, limits: Limits) -> Router {
    let mut protected = native::router()
        .merge(authzen::router())
        .merge(entities::router())
        .merge(policies::router())
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi_json));
    let mut public = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route(
            "/.well-known/authzen-configuration",
            get(authzen::configuration),
        );
    if let Some(service) = &state.invites {
        let app = admin::InviteApp {
            service: Arc::clone(service),
            store: Arc::clone(state.engine.store()),
            clock: Arc::clone(&state.clock),
        };
        protected = protected
            .merge(admin::router(app.clone()))
            .merge(orgs::router(app.clone()))
            .merge(jobs::router(app.clone()))
            .merge(email_change::router(app.clone()))
            .merge(auth_api::router(app.clone()));
        public = public
            .merge(invite_page::router(app.clone()))
            .merge(email_change::page_router(app.clone()))
            .merge(console::router(app));
    }
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        extract::require_token,
    ));

    let routes = public
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .with_state(state.clone());
    // Around the router, not through `Router::layer`: that wraps every
    // route in each layer, boxed, and every request then clones and drops
    // the whole boxed stack of its route (a tenth of a cached decision's
    // instructions). Outermost first.
    let layered = tower::ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        // The trace span records method and path only (no query, no
        // headers), and no link's secret, so secrets never reach the logs.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let path = console::redact_path(email_change::redact_path(
                    invite_page::redact_path(req.uri().path()),
                ));
                tracing::debug_span!("http", method = %req.method(), path = %path)
            }),
        )
        // Not tower-http's timeout layer: its 503 has an empty body.
        .layer(axum::middleware::from_fn_with_state(
            limits.timeout,
            extract::time_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::count_status,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            extract::revision_header,
        ))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .service(routes);
    Router::new().fallback_service(layered)
}
