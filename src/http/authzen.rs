//! The AuthZEN Authorization API 1.0: single and batch evaluation, the
//! search APIs and the PDP metadata document.
//!
//! Mapping to Cedar: `subject` → principal and `resource` → resource (their
//! `type` and `id` form the entity uid); `action.name` → `Action::"name"`
//! (a name containing `::` is taken as a full uid, for namespaced schemas);
//! `context` → the Cedar context, and `action.properties` → its
//! `action_properties` attribute. `properties` of a subject or resource
//! describe the entity for this request, within what the schema's
//! `@source` annotations allow. Keys the schema does not declare are
//! ignored, declared values converted to their type
//! ([`crate::engine::Shape::AuthZen`]).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody, ErrorDetail};
use super::extract::{ApiJson, MinRevision, RequestId};
use super::native::MAX_BATCH;
use crate::engine::{AuthzRequest, Decided, Describer, Shape, UidRef};
use crate::policy::Explanation;

/// A subject or resource.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Entity {
    /// The Cedar entity type, e.g. `User`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The entity id.
    pub id: String,
    /// Attributes for this request: the ones the schema declares are
    /// converted to their type and merged with the stored entity (never
    /// overriding a stored attribute unless the schema marks it
    /// `@source("request")`); the others are ignored.
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
}

/// The action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Action {
    /// The Cedar action id, e.g. `billing.read`.
    pub name: String,
    /// Reaches the policies as the context attribute `action_properties`
    /// when the action's context type declares it; otherwise ignored.
    #[serde(default)]
    pub properties: Option<Map<String, Value>>,
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
    /// In which context (keys the action's context type does not declare
    /// are ignored).
    #[serde(default)]
    pub context: Option<Value>,
    /// cedargate's options (`{"explain": true}`).
    #[serde(default)]
    pub options: EvaluationOptions,
}

/// Options of one evaluation.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct EvaluationOptions {
    /// Explain the decision at the level of conditions, in
    /// `context.reason_admin` (never served from the decision cache).
    #[serde(default)]
    pub explain: bool,
}

/// One item of a batch; a part it omits is the batch's, whole (a subject
/// or resource without `type` or `id` takes the batch's).
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
    /// Explain every decision (cedargate's extension).
    #[serde(default)]
    pub explain: bool,
}

/// `POST /access/v1/evaluations`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EvaluationsRequest {
    /// Default subject (may lack what every item gives).
    #[schema(value_type = Option<Entity>)]
    pub subject: Option<Map<String, Value>>,
    /// Default action.
    pub action: Option<Action>,
    /// Default resource (may lack what every item gives).
    #[schema(value_type = Option<Entity>)]
    pub resource: Option<Map<String, Value>>,
    /// Default context.
    pub context: Option<Value>,
    /// The items; absent or empty means one evaluation of the defaults.
    /// An item that is not a valid evaluation once the defaults are filled
    /// in is answered with a deny carrying the error, not a 400.
    #[serde(default)]
    #[schema(value_type = Vec<EvaluationItem>)]
    pub evaluations: Vec<Map<String, Value>>,
    /// Execution options.
    #[serde(default)]
    pub options: Options,
}

/// One decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationResponse {
    /// `true` for permit.
    pub decision: bool,
    /// Why, and under which policy revision; or, for a batch item that
    /// could not be evaluated, the error.
    pub context: EvaluationContext,
}

/// The `context` of an AuthZEN decision.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EvaluationContext {
    /// A decision was reached.
    Decided(DecisionContext),
    /// A batch item was not a valid evaluation (denied).
    Invalid {
        /// Why.
        error: ErrorDetail,
    },
}

/// The `context` of an AuthZEN decision that was reached.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionContext {
    /// For administrators.
    pub reason_admin: ReasonAdmin,
    /// The subject or resource, when neither the store nor the request
    /// describes it: it was evaluated as an entity without attributes,
    /// parents or tags. Absent when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_entities: Vec<String>,
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
    /// The decision at the level of conditions, when asked for
    /// (`options.explain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
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
    /// The subject search endpoint.
    pub search_subject_endpoint: String,
    /// The resource search endpoint.
    pub search_resource_endpoint: String,
    /// The action search endpoint.
    pub search_action_endpoint: String,
}

fn uid(kind: &str, id: &str) -> Value {
    json!({"type": kind, "id": id})
}

fn action_uid(action: &Action) -> UidRef {
    if action.name.contains("::") {
        Value::String(action.name.clone()).into()
    } else {
        UidRef::parts("Action", &action.name)
    }
}

pub(super) fn to_request(
    subject: &Entity,
    action: &Action,
    resource: &Entity,
    context: Option<&Value>,
) -> AuthzRequest {
    let entities = [subject, resource]
        .into_iter()
        .filter_map(|e| {
            let props = e.properties.as_ref()?;
            Some(json!({"uid": uid(&e.kind, &e.id), "attrs": props, "parents": []}))
        })
        .collect();
    let mut context = context.cloned().unwrap_or_else(|| json!({}));
    if let (Some(props), Value::Object(map)) = (&action.properties, &mut context) {
        map.insert("action_properties".to_owned(), Value::Object(props.clone()));
    }
    AuthzRequest {
        principal: UidRef::parts(&subject.kind, &subject.id),
        action: action_uid(action),
        resource: UidRef::parts(&resource.kind, &resource.id),
        context,
        entities,
        described_by: Describer::Caller,
        shape: Shape::AuthZen,
    }
}

fn respond(decided: Decided) -> EvaluationResponse {
    let d = decided.decision;
    let mut summary = match (d.allow, d.reasons.is_empty(), d.errors.is_empty()) {
        (_, _, false) => format!("denied because of errors: {}", d.errors.join("; ")),
        (true, _, true) => format!("permitted by {}", d.reasons.join(", ")),
        (false, true, true) => "no policy permits this request".to_owned(),
        (false, false, true) => format!("forbidden by {}", d.reasons.join(", ")),
    };
    if let Some(why) = decided.explanation.as_ref().map(Explanation::summary)
        && !why.is_empty()
    {
        summary = format!("{summary}: {why}");
    }
    if !d.unknown_entities.is_empty() {
        summary.push_str(&format!(
            " (not in the entity store: {})",
            d.unknown_entities.join(", ")
        ));
    }
    EvaluationResponse {
        decision: d.allow,
        context: EvaluationContext::Decided(DecisionContext {
            reason_admin: ReasonAdmin {
                en: summary,
                policies: d.reasons,
                errors: d.errors,
                explanation: decided.explanation,
            },
            unknown_entities: d.unknown_entities,
            policy_revision: decided.policy_revision,
            store_revision: decided.store_revision,
        }),
    }
}

/// A batch item that is no evaluation: denied, with the reason.
fn invalid(message: String) -> EvaluationResponse {
    EvaluationResponse {
        decision: false,
        context: EvaluationContext::Invalid {
            error: ErrorDetail {
                code: "bad_request".to_owned(),
                message,
                field: None,
                policies: None,
            },
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
    let decided = if req.options.explain {
        state.engine.decide_explained(&request, &id).await
    } else {
        state.engine.decide(&request, &id).await
    };
    Ok(Json(respond(decided)))
}

/// The parts of a batch item with the batch's defaults filled in: each
/// part the item omits is the default's, whole.
fn item_request(
    defaults: &EvaluationsRequest,
    item: Map<String, Value>,
) -> Result<AuthzRequest, String> {
    let part = |name: &str| -> Result<Option<Value>, String> {
        match item.get(name) {
            Some(Value::Null) | None => Ok(None),
            Some(v) => Ok(Some(v.clone())),
        }
    };
    let entity = |name: &str, default: &Option<Map<String, Value>>| -> Result<Entity, String> {
        let given = match (part(name)?, default) {
            // The item's entity replaces the default whole, but a `type` or
            // `id` it lacks is the default's (AuthZEN certification 3.2.7).
            (Some(Value::Object(mut given)), Some(default)) => {
                for key in ["type", "id"] {
                    if let (false, Some(v)) = (given.contains_key(key), default.get(key)) {
                        given.insert(key.to_owned(), v.clone());
                    }
                }
                Value::Object(given)
            }
            (Some(given), _) => given,
            (None, Some(default)) => Value::Object(default.clone()),
            (None, None) => return Err(format!("no `{name}` here nor at the top level")),
        };
        serde_json::from_value(given).map_err(|e| format!("`{name}`: {e}"))
    };
    let subject = entity("subject", &defaults.subject)?;
    let resource = entity("resource", &defaults.resource)?;
    let action: Action = match part("action")? {
        Some(v) => serde_json::from_value(v).map_err(|e| format!("`action`: {e}"))?,
        None => defaults
            .action
            .clone()
            .ok_or("no `action` here nor at the top level")?,
    };
    let context = part("context")?.or_else(|| defaults.context.clone());
    Ok(to_request(&subject, &action, &resource, context.as_ref()))
}

/// Decides a batch (AuthZEN Access Evaluations API).
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "authzen",
    request_body = EvaluationsRequest,
    params(MinRevision),
    responses(
        (status = 200, description = "one decision per evaluated item (an item that is no valid evaluation is a deny carrying the error), or one decision when there are no items", body = EvaluationsOrOne),
        (status = 400, description = "malformed JSON, a wrong content type, malformed defaults or over 10,000 evaluations", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn evaluations(
    State(state): State<AppState>,
    RequestId(id): RequestId,
    MinRevision(min): MinRevision,
    ApiJson(mut req): ApiJson<EvaluationsRequest>,
) -> Result<Json<EvaluationsOrOne>, ApiError> {
    if req.evaluations.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {MAX_BATCH} evaluations"
        )));
    }
    state.engine.at_least(min).await?;
    if req.evaluations.is_empty() {
        // Without items, the request is a single evaluation of the defaults.
        let request = item_request(&req, Map::new()).map_err(ApiError::bad_request)?;
        let decided = if req.options.explain {
            state.engine.decide_explained(&request, &id).await
        } else {
            state.engine.decide(&request, &id).await
        };
        return Ok(Json(EvaluationsOrOne::One(respond(decided))));
    }
    let semantic = req.options.evaluations_semantic;
    let stops = |allow: bool| match semantic {
        Semantic::ExecuteAll => false,
        Semantic::DenyOnFirstDeny => !allow,
        Semantic::PermitOnFirstPermit => allow,
    };
    let mut items: Vec<Result<AuthzRequest, String>> = std::mem::take(&mut req.evaluations)
        .into_iter()
        .enumerate()
        .map(|(i, item)| item_request(&req, item).map_err(|e| format!("evaluation {i}: {e}")))
        .collect();
    // An invalid item is a deny in its place: a deny-on-first-deny batch
    // ends there.
    if let Some(first) = items
        .iter()
        .position(Result::is_err)
        .filter(|_| stops(false))
    {
        items.truncate(first + 1);
    }
    let valid: Vec<AuthzRequest> = items
        .iter()
        .filter_map(|i| i.as_ref().ok().cloned())
        .collect();
    let mut decided = state
        .engine
        .decide_batch_until(&valid, &id, req.options.explain, |d| {
            stops(d.decision.allow)
        })
        .await
        .into_iter();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Err(message) => out.push(invalid(message)),
            Ok(_) => {
                let Some(d) = decided.next() else { break };
                let stop = stops(d.decision.allow);
                out.push(respond(d));
                if stop {
                    break;
                }
            }
        }
    }
    Ok(Json(EvaluationsOrOne::Many(EvaluationsResponse {
        evaluations: out,
    })))
}

/// The PDP metadata document (AuthZEN discovery): every endpoint this
/// sidecar serves, under `--public-url`. Public.
#[utoipa::path(get, path = "/.well-known/authzen-configuration", tag = "authzen", security(()),
    responses(
        (status = 200, description = "PDP metadata", body = PdpMetadata),
    ))]
pub async fn configuration(State(state): State<AppState>) -> Json<PdpMetadata> {
    let base = state.public_url.trim_end_matches('/');
    let at = |path: &str| format!("{base}{path}");
    Json(PdpMetadata {
        access_evaluation_endpoint: at("/access/v1/evaluation"),
        access_evaluations_endpoint: at("/access/v1/evaluations"),
        search_subject_endpoint: at("/access/v1/search/subject"),
        search_resource_endpoint: at("/access/v1/search/resource"),
        search_action_endpoint: at("/access/v1/search/action"),
        policy_decision_point: base.to_owned(),
    })
}

/// The AuthZEN evaluation and search APIs (under the bearer token).
pub fn router() -> axum::Router<AppState> {
    use axum::routing::post;
    axum::Router::new()
        .route("/access/v1/evaluation", post(evaluation))
        .route("/access/v1/evaluations", post(evaluations))
        .route("/access/v1/search/subject", post(super::search::subject))
        .route("/access/v1/search/resource", post(super::search::resource))
        .route("/access/v1/search/action", post(super::search::action))
}
