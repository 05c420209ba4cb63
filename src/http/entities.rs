//! Host-owned entities: upsert and delete.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Path};

/// How many entities were written.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upserted {
    /// The number of entities written.
    pub upserted: usize,
    /// The store revision the write reached (also `X-Cedargate-Revision`):
    /// a consistency token for decisions that must see it.
    pub revision: u64,
}

/// Upserts entities (a JSON array in Cedar's entity format), validated
/// against the schema; if any is invalid, nothing is written.
#[utoipa::path(put, path = "/v1/entities", tag = "entities",
    request_body(content = Vec<Object>, description = "Cedar entity JSON: [{\"uid\", \"attrs\", \"parents\", \"tags\"}]"),
    responses(
        (status = 200, body = Upserted),
        (status = 400, description = "malformed JSON, a wrong content type, or invalid entities (nothing written)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn put_entities(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<Upserted>, ApiError> {
    let loaded = state.engine.current();
    let upserted = state
        .engine
        .store()
        .upsert(loaded.snapshot.schema(), body)
        .await?;
    Ok(Json(Upserted {
        upserted,
        revision: state.engine.store().token(),
    }))
}

/// Deletes one entity.
#[utoipa::path(delete, path = "/v1/entities/{type}/{id}", tag = "entities",
    params(("type" = String, Path, description = "entity type, e.g. `Account`"), ("id" = String, Path, description = "entity id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "a path segment that is not UTF-8, or an invalid entity type", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 404, description = "no such entity", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn delete_entity(
    State(state): State<AppState>,
    Path((kind, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let type_name = kind
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid entity type `{kind}`: {e}")))?;
    let uid =
        cedar_policy::EntityUid::from_type_name_and_id(type_name, cedar_policy::EntityId::new(&id));
    if state.engine.store().delete(&uid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no entity `{uid}`")))
    }
}

/// The entity store API.
pub fn router() -> axum::Router<AppState> {
    use axum::routing::{delete, put};
    axum::Router::new()
        .route("/v1/entities", put(put_entities))
        .route("/v1/entities/{type}/{id}", delete(delete_entity))
}
