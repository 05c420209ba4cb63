//! A request as the engine reads it: its uids parsed once, its AuthZEN
//! shape conformed to the schema, its request-scoped entities.

use cedar_policy::EntityUid;

use super::{AuthzRequest, Loaded, UidRef};
use crate::policy::{PolicySnapshot, RequestError, parse_uid};

/// The parsed entity references of a request.
#[derive(Debug)]
pub(super) struct RequestUids {
    pub(super) principal: EntityUid,
    pub(super) action: EntityUid,
    pub(super) resource: EntityUid,
}

pub(super) fn parse_request(
    snapshot: &PolicySnapshot,
    request: &AuthzRequest,
) -> Result<RequestUids, RequestError> {
    Ok(RequestUids {
        principal: uid(snapshot, "principal", &request.principal)?,
        action: uid(snapshot, "action", &request.action)?,
        resource: uid(snapshot, "resource", &request.resource)?,
    })
}

/// Parses one reference of a request: `{"type", "id"}` by looking the type
/// up among the schema's, any other form as Cedar reads it.
pub(super) fn uid(
    snapshot: &PolicySnapshot,
    field: &'static str,
    given: &UidRef,
) -> Result<EntityUid, RequestError> {
    match given {
        UidRef::Parts { ty, id } => match snapshot.known_uid(ty, id) {
            Some(uid) => Ok(uid),
            None => parse_uid(field, &given.to_json()),
        },
        UidRef::Json(value) => snapshot.uid(field, value),
    }
}

/// `request` read the AuthZEN way: its context and its entities'
/// attributes keep what the schema declares, converted. An entity left
/// with no attribute says nothing and is dropped (so that undeclared
/// properties of a store-only entity are ignored, not refused).
pub(super) fn conform(
    snapshot: &PolicySnapshot,
    action: &EntityUid,
    request: &AuthzRequest,
) -> AuthzRequest {
    let entities = request
        .entities
        .iter()
        .filter_map(|entity| {
            let uid = entity.get("uid").map(|u| parse_uid("entity", u));
            match (uid, entity.get("attrs")) {
                (Some(Ok(uid)), Some(serde_json::Value::Object(attrs))) => {
                    let conformed = snapshot.conform_entity(&uid, attrs);
                    let empty = conformed["attrs"].as_object().is_some_and(|a| a.is_empty());
                    (!empty).then_some(conformed)
                }
                // Left whole, so that its fault is reported.
                _ => Some(entity.clone()),
            }
        })
        .collect();
    // Field by field: `..request.clone()` would copy the context and the
    // entities only to drop them, on every AuthZEN decision.
    AuthzRequest {
        principal: request.principal.clone(),
        action: request.action.clone(),
        resource: request.resource.clone(),
        context: snapshot.conform_context(action, &request.context),
        entities,
        described_by: request.described_by,
        shape: request.shape,
    }
}

/// Request-scoped entities (Cedar entity JSON), less the schema's action
/// entities, which come from the schema.
pub(super) fn request_entities<'a>(
    loaded: &Loaded,
    json: &'a [serde_json::Value],
) -> Result<Vec<&'a serde_json::Value>, RequestError> {
    let mut out = Vec::with_capacity(json.len());
    for entity in json {
        let uid = entity
            .get("uid")
            .map(|u| parse_uid("entity", u))
            .transpose()?
            .ok_or_else(|| RequestError::Entities("an entity has no `uid`".to_owned()))?;
        if !loaded.actions.contains_key(&uid) {
            out.push(entity);
        }
    }
    Ok(out)
}
