//! The native Cedar-shaped decision API.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, MinRevision, RequestId};
use crate::engine::{AuthzRequest, Decided, Describer, Shape, UidRef};
use crate::policy::Explanation;

/// Largest batch accepted in one call.
pub const MAX_BATCH: usize = 10_000;

/// One request: principal, action and resource as Cedar uids, either
/// `"User::\"alice\""` or `{"type": "User", "id": "alice"}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IsAuthorizedRequest {
    /// The principal.
    #[schema(value_type = serde_json::Value)]
    pub principal: UidRef,
    /// The action, e.g. `Action::"billing.read"`.
    #[schema(value_type = serde_json::Value)]
    pub action: UidRef,
    /// The resource.
    #[schema(value_type = serde_json::Value)]
    pub resource: UidRef,
    /// The request context.
    #[serde(default)]
    pub context: Option<serde_json::Value>,
    /// Request-scoped entities (Cedar entity JSON): host-owned entities the
    /// store does not hold, or attributes a stored one lacks.
    #[serde(default)]
    pub entities: Vec<serde_json::Value>,
    /// Decide only on store state at or after this revision (a write's
    /// `X-Cedargate-Revision`); the header `X-Cedargate-Min-Revision` does
    /// the same.
    #[serde(default)]
    pub min_revision: Option<u64>,
    /// Explain the decision at the level of conditions (`explanation` in
    /// the answer): never served from the decision cache.
    #[serde(default)]
    pub explain: bool,
}

impl From<IsAuthorizedRequest> for AuthzRequest {
    fn from(r: IsAuthorizedRequest) -> Self {
        native(r.principal, r.action, r.resource, r.context, r.entities)
    }
}

/// A host application's request, read as Cedar reads JSON.
fn native(
    principal: UidRef,
    action: UidRef,
    resource: UidRef,
    context: Option<serde_json::Value>,
    entities: Vec<serde_json::Value>,
) -> AuthzRequest {
    AuthzRequest {
        principal,
        action,
        resource,
        context: context.unwrap_or_else(|| serde_json::json!({})),
        entities,
        described_by: Describer::Caller,
        shape: Shape::Cedar,
    }
}

/// The answer: a Deny is a 200 like an Allow.
#[derive(Debug, Serialize, ToSchema)]
pub struct IsAuthorizedResponse {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Ids of the policies that determined the decision.
    pub reasons: Vec<String>,
    /// Errors met; any error makes the decision `deny`.
    pub errors: Vec<String>,
    /// The principal or resource when neither the store nor the request
    /// describes it (read as an entity without attributes, parents or
    /// tags); absent when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_entities: Vec<String>,
    /// The policy revision that decided.
    pub policy_revision: u64,
    /// The store revision whose entities decided.
    pub store_revision: u64,
    /// Served from the decision cache.
    pub cached: bool,
    /// Why, when the request asked (`explain: true`): for a Deny the
    /// permits in scope with their first condition that did not hold,
    /// then the forbids that fired; for an Allow the permits that did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

impl From<Decided> for IsAuthorizedResponse {
    fn from(d: Decided) -> Self {
        Self {
            decision: d.decision.as_str(),
            reasons: d.decision.reasons,
            errors: d.decision.errors,
            unknown_entities: d.decision.unknown_entities,
            policy_revision: d.policy_revision,
            store_revision: d.store_revision,
            cached: d.cached,
            explanation: d.explanation,
        }
    }
}

/// A batch of requests, decided in order against one policy revision.
#[derive(Debug, Deserialize, ToSchema)]
pub struct BatchRequest {
    /// The requests.
    pub requests: Vec<IsAuthorizedRequest>,
    /// Decide only on store state at or after this revision.
    #[serde(default)]
    pub min_revision: Option<u64>,
    /// Explain every decision of the batch (as does `explain` on any of
    /// its requests).
    #[serde(default)]
    pub explain: bool,
}

/// The answers, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One answer per request.
    pub results: Vec<IsAuthorizedResponse>,
}

/// Decides one request.
#[utoipa::path(post, path = "/v1/is_authorized", tag = "decisions",
    request_body = IsAuthorizedRequest,
    params(MinRevision),
    responses(
        (status = 200, body = IsAuthorizedResponse),
        (status = 400, description = "malformed JSON, a wrong content type or missing fields", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn is_authorized(
    State(state): State<AppState>,
    RequestId(id): RequestId,
    min: MinRevision,
    ApiJson(request): ApiJson<IsAuthorizedRequest>,
) -> Result<Json<IsAuthorizedResponse>, ApiError> {
    state.engine.at_least(min.or(request.min_revision)).await?;
    let explain = request.explain;
    let request = request.into();
    let decided = if explain {
        state.engine.decide_explained(&request, &id).await
    } else {
        state.engine.decide(&request, &id).await
    };
    Ok(Json(decided.into()))
}

/// Decides up to 10,000 requests against one policy revision.
#[utoipa::path(post, path = "/v1/is_authorized/batch", tag = "decisions",
    request_body = BatchRequest,
    params(MinRevision),
    responses(
        (status = 200, body = BatchResponse),
        (status = 400, description = "malformed JSON, a wrong content type, missing fields or over 10,000 requests", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn is_authorized_batch(
    State(state): State<AppState>,
    RequestId(id): RequestId,
    min: MinRevision,
    ApiJson(batch): ApiJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    if batch.requests.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {MAX_BATCH} requests"
        )));
    }
    state.engine.at_least(min.or(batch.min_revision)).await?;
    let explain = batch.explain || batch.requests.iter().any(|r| r.explain);
    let requests: Vec<AuthzRequest> = batch.requests.into_iter().map(Into::into).collect();
    let results = state
        .engine
        .decide_batch_until(&requests, &id, explain, |_| false)
        .await;
    Ok(Json(BatchResponse {
        results: results.into_iter().map(Into::into).collect(),
    }))
}

/// `POST /v1/plan`: which resources of a type a principal may take an
/// action on, as one condition over their attributes.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlanRequest {
    /// The principal.
    pub principal: serde_json::Value,
    /// The action.
    pub action: serde_json::Value,
    /// The resource type, e.g. `Account`.
    pub resource_type: String,
    /// The request context.
    #[serde(default)]
    pub context: Option<serde_json::Value>,
    /// Request-scoped entities (Cedar entity JSON), as for a decision.
    #[serde(default)]
    pub entities: Vec<serde_json::Value>,
    /// Plan only on store state at or after this revision.
    #[serde(default)]
    pub min_revision: Option<u64>,
}

/// A filter plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanResponse {
    /// `{"decision": "always_allowed" | "always_denied" | "conditional",
    /// "condition": …}` (README, "Filter plans").
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub plan: crate::policy::FilterPlan,
    /// The policy revision it was made under.
    pub policy_revision: u64,
    /// The store revision of the principal's entities it was made on.
    pub store_revision: u64,
}

/// Makes a filter plan.
#[utoipa::path(post, path = "/v1/plan", tag = "decisions",
    request_body = PlanRequest,
    params(MinRevision),
    responses(
        (status = 200, body = PlanResponse),
        (status = 400, description = "malformed JSON, missing fields, an unknown resource type or a context of the wrong shape", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "the policies' residual cannot be written as a condition (extension values, arithmetic on the resource…)", body = ErrorBody),
        (status = 503, description = "the store failed or did not answer in time, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn plan(
    State(state): State<AppState>,
    MinRevision(min): MinRevision,
    ApiJson(req): ApiJson<PlanRequest>,
) -> Result<Json<PlanResponse>, ApiError> {
    state.engine.at_least(min.or(req.min_revision)).await?;
    // The resource is what the plan is about: any of `resource_type`.
    let request = native(
        req.principal.into(),
        req.action.into(),
        serde_json::Value::Null.into(),
        req.context,
        req.entities,
    );
    let planned = state.engine.plan(&request, &req.resource_type).await?;
    Ok(Json(PlanResponse {
        plan: planned.plan,
        policy_revision: planned.policy_revision,
        store_revision: planned.store_revision,
    }))
}

/// The native decision API.
pub fn router() -> axum::Router<AppState> {
    use axum::routing::post;
    axum::Router::new()
        .route("/v1/is_authorized", post(is_authorized))
        .route("/v1/is_authorized/batch", post(is_authorized_batch))
        .route("/v1/plan", post(plan))
}
