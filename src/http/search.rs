//! The AuthZEN search APIs (Authorization API 1.0): subject, resource and
//! action search, with pagination.
//!
//! `page.token` is opaque to callers: the last id returned, bound to a
//! fingerprint of the query, so that a token sent with another query (or
//! another `limit`) is refused rather than silently paging something else.

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::AppState;
use super::authzen::{Action, Entity, to_request};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, MinRevision};
use crate::engine::{Search, Searched};

/// Results per page when the request gives no `page.limit`.
const DEFAULT_LIMIT: usize = 1_000;
/// The largest `page.limit`.
const MAX_LIMIT: usize = 10_000;

/// The searched side: its type (an `id`, if sent, is ignored).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Wanted {
    /// The entity type searched, e.g. `Account`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Pagination of a search request.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
pub struct PageRequest {
    /// The `next_token` of the previous page (the query must be the same).
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
    /// At most this many results (1 to 10,000; default 1,000).
    #[serde(default)]
    pub limit: Option<u64>,
}

/// `POST /access/v1/search/subject`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubjectSearchRequest {
    /// The subject type searched.
    pub subject: Wanted,
    /// The action.
    pub action: Action,
    /// The resource.
    pub resource: Entity,
    /// The context.
    #[serde(default)]
    pub context: Option<Value>,
    /// Pagination.
    #[serde(default)]
    pub page: PageRequest,
}

/// `POST /access/v1/search/resource`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceSearchRequest {
    /// The subject.
    pub subject: Entity,
    /// The action.
    pub action: Action,
    /// The resource type searched.
    pub resource: Wanted,
    /// The context.
    #[serde(default)]
    pub context: Option<Value>,
    /// Pagination.
    #[serde(default)]
    pub page: PageRequest,
}

/// `POST /access/v1/search/action`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionSearchRequest {
    /// The subject.
    pub subject: Entity,
    /// The resource.
    pub resource: Entity,
    /// The context.
    #[serde(default)]
    pub context: Option<Value>,
    /// Pagination (every action fits one page).
    #[serde(default)]
    pub page: PageRequest,
}

/// A found subject or resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct FoundEntity {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// A found action.
#[derive(Debug, Serialize, ToSchema)]
pub struct FoundAction {
    /// The action id.
    pub name: String,
}

/// Pagination of a search answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageResponse {
    /// Send as `page.token` for the next page; empty on the last page.
    pub next_token: String,
    /// Results in this answer.
    pub count: usize,
}

/// How a search was answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchContext {
    /// The policy revision that decided.
    pub policy_revision: u64,
    /// The store revision every result was decided on.
    pub store_revision: u64,
    /// Errors that denied every candidate (as they deny a decision).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The answer of a search.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse<T> {
    /// Pagination.
    pub page: PageResponse,
    /// What was found, in id order.
    pub results: Vec<T>,
    /// How it was answered.
    pub context: SearchContext,
}

impl<T> SearchResponse<T> {
    fn new(results: Vec<T>, next_token: String, context: SearchContext) -> Self {
        Self {
            page: PageResponse {
                next_token,
                count: results.len(),
            },
            results,
            context,
        }
    }
}

/// The query's fingerprint: what a token is bound to.
fn fingerprint(searched: &str, query: &impl Serialize) -> String {
    let digest = Sha256::digest(
        serde_json::to_vec(&json!({"search": searched, "query": query})).unwrap_or_default(),
    );
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

fn token(fingerprint: &str, after: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"q": fingerprint, "after": after}).to_string())
}

/// The id a token continues after, if it belongs to this query.
fn continue_after(page: &PageRequest, fingerprint: &str) -> Result<String, ApiError> {
    let Some(given) = page.token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(String::new());
    };
    let invalid = || ApiError::bad_request("`page.token` is not a token of this query");
    let bytes = URL_SAFE_NO_PAD.decode(given).map_err(|_| invalid())?;
    let parsed: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match (parsed.get("q"), parsed.get("after")) {
        (Some(Value::String(q)), Some(Value::String(after))) if q == fingerprint => {
            Ok(after.clone())
        }
        _ => Err(invalid()),
    }
}

fn limit(page: &PageRequest) -> Result<usize, ApiError> {
    match page.limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::bad_request(format!(
            "`page.limit` must be between 1 and {MAX_LIMIT}, not {n}"
        ))),
    }
}

/// A subject or resource search of `request` for entities of `kind`, the
/// page the caller's token continues, answered with the next token.
async fn entities(
    state: &AppState,
    min: Option<u64>,
    (searched, kind): (Searched, &str),
    request: crate::engine::AuthzRequest,
    (page, print): (&PageRequest, String),
) -> Result<Json<SearchResponse<FoundEntity>>, ApiError> {
    let search = Search {
        request,
        searched,
        kind: kind.to_owned(),
        after: continue_after(page, &print)?,
        limit: limit(page)?,
    };
    state.engine.at_least(min).await?;
    let found = state.engine.search(&search).await?;
    let next_token = match (found.more, found.ids.last()) {
        (true, Some(last)) => token(&print, last),
        _ => String::new(),
    };
    let results = found
        .ids
        .into_iter()
        .map(|id| FoundEntity {
            kind: search.kind.clone(),
            id,
        })
        .collect();
    Ok(Json(SearchResponse::new(
        results,
        next_token,
        SearchContext {
            policy_revision: found.policy_revision,
            store_revision: found.store_revision,
            errors: found.errors,
        },
    )))
}

fn placeholder(kind: &str) -> Entity {
    Entity {
        kind: kind.to_owned(),
        id: String::new(),
        properties: None,
    }
}

/// The subjects of a type allowed to take an action on a resource
/// (AuthZEN Subject Search API).
#[utoipa::path(post, path = "/access/v1/search/subject", tag = "authzen",
    request_body = SubjectSearchRequest,
    params(MinRevision),
    responses(
        (status = 200, description = "the stored subjects of the type the request allows, in id order", body = SearchResponse<FoundEntity>),
        (status = 400, description = "malformed JSON, a wrong content type, missing fields, a bad `page.limit` or a token of another query", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 503, description = "the store failed or did not answer in time, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn subject(
    State(state): State<AppState>,
    MinRevision(min): MinRevision,
    ApiJson(req): ApiJson<SubjectSearchRequest>,
) -> Result<Json<SearchResponse<FoundEntity>>, ApiError> {
    let request = to_request(
        &placeholder(&req.subject.kind),
        &req.action,
        &req.resource,
        req.context.as_ref(),
    );
    let print = fingerprint("subject", &req);
    let searched = (Searched::Subject, req.subject.kind.as_str());
    entities(&state, min, searched, request, (&req.page, print)).await
}

/// The resources of a type a subject is allowed to take an action on
/// (AuthZEN Resource Search API).
#[utoipa::path(post, path = "/access/v1/search/resource", tag = "authzen",
    request_body = ResourceSearchRequest,
    params(MinRevision),
    responses(
        (status = 200, description = "the stored resources of the type the request allows, in id order", body = SearchResponse<FoundEntity>),
        (status = 400, description = "malformed JSON, a wrong content type, missing fields, a bad `page.limit` or a token of another query", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 503, description = "the store failed or did not answer in time, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn resource(
    State(state): State<AppState>,
    MinRevision(min): MinRevision,
    ApiJson(req): ApiJson<ResourceSearchRequest>,
) -> Result<Json<SearchResponse<FoundEntity>>, ApiError> {
    let request = to_request(
        &req.subject,
        &req.action,
        &placeholder(&req.resource.kind),
        req.context.as_ref(),
    );
    let print = fingerprint("resource", &req);
    let searched = (Searched::Resource, req.resource.kind.as_str());
    entities(&state, min, searched, request, (&req.page, print)).await
}

/// The actions a subject is allowed to take on a resource (AuthZEN Action
/// Search API). Every action fits one page.
#[utoipa::path(post, path = "/access/v1/search/action", tag = "authzen",
    request_body = ActionSearchRequest,
    params(MinRevision),
    responses(
        (status = 200, description = "the schema's actions the request allows, in id order", body = SearchResponse<FoundAction>),
        (status = 400, description = "malformed JSON, a wrong content type or missing fields", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 503, description = "the store failed or did not answer in time, or the asked store revision was not reached in time", body = ErrorBody),
    ))]
pub async fn action(
    State(state): State<AppState>,
    MinRevision(min): MinRevision,
    ApiJson(req): ApiJson<ActionSearchRequest>,
) -> Result<Json<SearchResponse<FoundAction>>, ApiError> {
    let request = to_request(
        &req.subject,
        &Action {
            name: String::new(),
            properties: None,
        },
        &req.resource,
        req.context.as_ref(),
    );
    state.engine.at_least(min).await?;
    let found = state.engine.search_actions(&request).await?;
    let results = found
        .actions
        .into_iter()
        .map(|name| FoundAction { name })
        .collect();
    Ok(Json(SearchResponse::new(
        results,
        String::new(),
        SearchContext {
            policy_revision: found.policy_revision,
            store_revision: found.store_revision,
            errors: Vec::new(),
        },
    )))
}
