//! The AuthZEN Authorization API 1.0: single and batch evaluation, and the
//! PDP metadata document.
//!
//! Mapping to Cedar: `subject` → principal and `resource` → resource (their
//! `type` and `id` form the entity uid); `action.name` → `Action::"name"`
//! (a name containing `::` is taken as a full uid, for namespaced schemas);
//! `context` → the Cedar context. `properties`, when given, become the
//! entity's attributes for this request, replacing the stored entity.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, MinRevision, RequestId};
use super::native::MAX_BATCH;
use crate::engine::{AuthzRequest, Decided, Describer};

/// A subject or resource.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Entity {
    /// The Cedar entity type, e.g. `User`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The entity id.
    pub id: String,
    /// Attributes for this request (replace the stored entity).
    #[serde(default)]
    pub properties: Option<serde_json::Map<String, Value>>,
}

/// The action.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Action {
    /// The Cedar action id, e.g. `billing.read`.
    pub name: String,
}

/// `POST /access/v1/evaluation`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EvaluationRequest {
    /// Who.
    pub subject: Entity,
    /// Does what.
    pub action: Action,
    /// On what.
    pub resource: Entity,
    /// In which context.
    #[serde(default)]
    pub context: Option<Value>,
}

/// One item of a batch; missing parts are taken from the batch's defaults.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EvaluationItem {
    /// Who (default: the batch's `subject`).
    pub subject: Option<Entity>,
    /// Does what (default: the batch's `action`).
    pub action: Option<Action>,
    /// On what (default: the batch's `resource`).
    pub resource: Option<Entity>,
    /// Context (default: the batch's `context`).
    pub context: Option<Value>,
}

/// How a batch is executed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    /// Evaluate every item.
    #[default]
    ExecuteAll,
    /// Stop after the first deny.
    DenyOnFirstDeny,
    /// Stop after the first permit.
    PermitOnFirstPermit,
}

/// Batch options.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct Options {
    /// `execute_all` (default), `deny_on_first_deny` or `permit_on_first_permit`.
    #[serde(default)]
    pub evaluations_semantic: Semantic,
}

/// `POST /access/v1/evaluations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EvaluationsRequest {
    /// Default subject.
    pub subject: Option<Entity>,
    /// Default action.
    pub action: Option<Action>,
    /// Default resource.
    pub resource: Option<Entity>,
    /// Default context.
    pub context: Option<Value>,
    /// The items; absent or empty means one evaluation of the defaults.
    #[serde(default)]
    pub evaluations: Vec<EvaluationItem>,
    /// Execution options.
    #[serde(default)]
    pub options: Options,
}

/// One decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationResponse {
    /// `true` for permit.
    pub decision: bool,
    /// Why, and under which policy revision.
    pub context: DecisionContext,
}

/// The `context` of an AuthZEN decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionContext {
    /// For administrators.
    pub reason_admin: ReasonAdmin,
    /// The policy revision that decided.
    pub policy_revision: u64,
    /// The store revision whose entities decided (send it back as
    /// `X-Cedargate-Min-Revision` to decide on that state or later).
    pub store_revision: u64,
}

/// Why a decision was reached.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReasonAdmin {
    /// One sentence in English.
    pub en: String,
    /// Ids of the determining policies.
    pub policies: Vec<String>,
    /// Errors met (any error makes the decision a deny).
    pub errors: Vec<String>,
}

/// The decisions of a batch, in order (shorter than the request when a
/// short-circuit semantic stopped early).
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationsResponse {
    /// One decision per evaluated item.
    pub evaluations: Vec<EvaluationResponse>,
}

/// The answer of `POST /access/v1/evaluations`: the batch's decisions, or
/// one decision when the request has no items.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EvaluationsOrOne {
    /// One decision per evaluated item.
    Many(EvaluationsResponse),
    /// The decision of the defaults.
    One(EvaluationResponse),
}

/// The PDP metadata document.
#[derive(Debug, Serialize, ToSchema)]
pub struct PdpMetadata {
    /// This sidecar's base URL.
    pub policy_decision_point: String,
    /// The single-evaluation endpoint.
    pub access_evaluation_endpoint: String,
    /// The batch endpoint.
    pub access_evaluations_endpoint: String,
}

fn uid(entity: &Entity) -> Value {
    json!({"type": entity.kind, "id": entity.id})
}

fn to_request(
    subject: &Entity,
    action: &Action,
    resource: &Entity,
    context: Option<&Value>,
) -> AuthzRequest {
    let action_uid = if action.name.contains("::") {
        Value::String(action.name.clone())
    } else {
        json!({"type": "Action", "id": action.name})
    };
    let entities = [subject, resource]
        .into_iter()
        .filter_map(|e| {
            let props = e.properties.as_ref()?;
            Some(json!({"uid": uid(e), "attrs": props, "parents": []}))
        })
        .collect();
    AuthzRequest {
        principal: uid(subject),
        action: action_uid,
        resource: uid(resource),
        context: context.cloned().unwrap_or_else(|| json!({})),
        entities,
        described_by: Describer::Caller,
    }
}

fn respond(decided: Decided) -> EvaluationResponse {
    let d = decided.decision;
    let summary = match (d.allow, d.reasons.is_empty(), d.errors.is_empty()) {
        (_, _, false) => format!("denied because of errors: {}", d.errors.join("; ")),
        (true, _, true) => format!("permitted by {}", d.reasons.join(", ")),
        (false, true, true) => "no policy permits this request".to_owned(),
        (false, false, true) => format!("forbidden by {}", d.reasons.join(", ")),
    };
    EvaluationResponse {
        decision: d.allow,
        context: DecisionContext {
            reason_admin: ReasonAdmin {
                en: summary,
                policies: d.reasons,
                errors: d.errors,
            },
            policy_revision: decided.policy_revision,
            store_revision: decided.store_revision,
        },
    }
}

/// Decides one request (AuthZEN Access Evaluation API).
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "authzen",
    request_body = EvaluationRequest,
    params(MinRevision),
    responses(
        (status = 200, body = EvaluationResponse),
        (status = 400, description = "malformed JSON, a wrong content type or missing fields", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn evaluation(
    State(state): State<AppState>,
    RequestId(id): RequestId,
    MinRevision(min): MinRevision,
    ApiJson(req): ApiJson<EvaluationRequest>,
) -> Result<Json<EvaluationResponse>, ApiError> {
    state.engine.at_least(min).await?;
    let request = to_request(
        &req.subject,
        &req.action,
        &req.resource,
        req.context.as_ref(),
    );
    Ok(Json(respond(state.engine.decide(&request, &id).await)))
}

/// Decides a batch (AuthZEN Access Evaluations API).
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "authzen",
    request_body = EvaluationsRequest,
    params(MinRevision),
    responses(
        (status = 200, description = "one decision per evaluated item, or one decision when there are no items", body = EvaluationsOrOne),
        (status = 400, description = "malformed JSON, a wrong content type, missing fields or over 10,000 evaluations", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn evaluations(
    State(state): State<AppState>,
    RequestId(id): RequestId,
    MinRevision(min): MinRevision,
    ApiJson(req): ApiJson<EvaluationsRequest>,
) -> Result<Json<EvaluationsOrOne>, ApiError> {
    let missing = |what: &str, i: usize| {
        ApiError::bad_request(format!(
            "evaluation {i}: no `{what}` here nor at the top level"
        ))
    };
    if req.evaluations.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {MAX_BATCH} evaluations"
        )));
    }
    state.engine.at_least(min).await?;
    if req.evaluations.is_empty() {
        // Without items, the request is a single evaluation of the defaults.
        let (Some(s), Some(a), Some(r)) = (&req.subject, &req.action, &req.resource) else {
            return Err(ApiError::bad_request(
                "`subject`, `action` and `resource` are required",
            ));
        };
        let decided = state
            .engine
            .decide(&to_request(s, a, r, req.context.as_ref()), &id)
            .await;
        return Ok(Json(EvaluationsOrOne::One(respond(decided))));
    }
    let mut requests = Vec::with_capacity(req.evaluations.len());
    for (i, item) in req.evaluations.iter().enumerate() {
        let subject = item
            .subject
            .as_ref()
            .or(req.subject.as_ref())
            .ok_or_else(|| missing("subject", i))?;
        let action = item
            .action
            .as_ref()
            .or(req.action.as_ref())
            .ok_or_else(|| missing("action", i))?;
        let resource = item
            .resource
            .as_ref()
            .or(req.resource.as_ref())
            .ok_or_else(|| missing("resource", i))?;
        let context = item.context.as_ref().or(req.context.as_ref());
        requests.push(to_request(subject, action, resource, context));
    }
    let semantic = req.options.evaluations_semantic;
    let decided = state
        .engine
        .decide_batch_until(&requests, &id, |d| match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !d.decision.allow,
            Semantic::PermitOnFirstPermit => d.decision.allow,
        })
        .await;
    let out: Vec<EvaluationResponse> = decided.into_iter().map(respond).collect();
    Ok(Json(EvaluationsOrOne::Many(EvaluationsResponse {
        evaluations: out,
    })))
}

/// The PDP metadata document (AuthZEN discovery). Public.
#[utoipa::path(get, path = "/.well-known/authzen-configuration", tag = "authzen", security(()),
    responses(
        (status = 200, description = "PDP metadata", body = PdpMetadata),
    ))]
pub async fn configuration(headers: HeaderMap) -> Json<PdpMetadata> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("http://{host}");
    Json(PdpMetadata {
        access_evaluation_endpoint: format!("{base}/access/v1/evaluation"),
        access_evaluations_endpoint: format!("{base}/access/v1/evaluations"),
        policy_decision_point: base,
    })
}
