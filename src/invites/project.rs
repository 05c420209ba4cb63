//! The Cedar projection of the service's rows: `Organization`, `User` (with
//! one tag per membership), `Membership` and `Department` entities, written
//! in the same transaction as the rows they mirror. Each function records
//! what it wrote in the [`Change`], which drops it from the caches at commit.

use cedar_policy::Schema;
use serde_json::{Value, json};

use super::change::Change;
use super::model::Status;
use super::store::{self, MembershipRow};
use super::uid::ModelUid;
use super::{InviteError, NotFound};
use crate::entities::EntityStore;

/// The entity of `m`.
pub(crate) fn membership_entity(m: &MembershipRow) -> Value {
    let mut attrs = json!({
        "tenant": m.org_id,
        "user": ModelUid::user(&m.user_id).reference(),
        "org": ModelUid::organization(&m.org_id).reference(),
        "status": m.status.as_str(),
        "role": m.role,
        "perms": m.permissions.to_cedar(),
        "restrictions": m.restrictions.to_cedar(),
        "agent": m.agent,
        "agentApproved": m.agent_approved,
    });
    if let (Some(dept), Some(map)) = (&m.department_id, attrs.as_object_mut()) {
        map.insert(
            "department".to_owned(),
            ModelUid::department(&m.org_id, dept).reference(),
        );
    }
    json!({"uid": ModelUid::membership(&m.org_id, &m.user_id).json(), "attrs": attrs, "parents": []})
}

/// Writes already-built entities in the change and records their uids.
async fn write(change: &mut Change, schema: &Schema, entities: Value) -> Result<(), InviteError> {
    let uids = EntityStore::upsert_in(change, schema, entities).await?;
    change.project(uids);
    Ok(())
}

/// Rewrites the user and all their memberships.
pub async fn user(change: &mut Change, schema: &Schema, user_id: &str) -> Result<(), InviteError> {
    let entities = user_entities(change, user_id).await?;
    write(change, schema, Value::Array(entities)).await
}

/// The user and all their memberships as Cedar entities, from the rows as
/// `conn` reads them (inside a write: as it is about to commit them).
pub async fn user_entities(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
) -> Result<Vec<Value>, InviteError> {
    let Some(user) = store::user_by_id(conn, user_id).await? else {
        return Err(NotFound::User {
            user_id: user_id.to_owned(),
        }
        .into());
    };
    let memberships = store::memberships_of_user(conn, user_id).await?;
    let tags: serde_json::Map<String, Value> = memberships
        .iter()
        .map(|m| {
            (
                m.org_id.clone(),
                ModelUid::membership(&m.org_id, &m.user_id).reference(),
            )
        })
        .collect();
    let mut entities = vec![json!({
        "uid": ModelUid::user(&user.user_id).json(),
        "attrs": {"email": user.email, "systemAdmin": user.system_admin},
        "parents": [],
        "tags": tags,
    })];
    // A placeholder (see `store::insert_placeholder`) stands for nobody:
    // its membership is never ACTIVE in Cedar, so it is denied everything
    // as a pending member is, whatever becomes of its row. The account it
    // stands in for joins under its own id by accepting.
    entities.extend(memberships.iter().map(|m| match m.status {
        Status::Active if user.placeholder => membership_entity(&MembershipRow {
            status: Status::Pending,
            ..m.clone()
        }),
        _ => membership_entity(m),
    }));
    Ok(entities)
}

/// The organization entity (also what its creation is authorized on).
pub fn organization_entity(org_id: &str, name: &str, require_mfa: bool) -> Value {
    json!({
        "uid": ModelUid::organization(org_id).json(),
        "attrs": {"tenant": org_id, "name": name, "requireMfa": require_mfa},
        "parents": [],
    })
}

/// Rewrites the organization entity.
pub async fn organization(
    change: &mut Change,
    schema: &Schema,
    org_id: &str,
    name: &str,
    require_mfa: bool,
) -> Result<(), InviteError> {
    let entity = organization_entity(org_id, name, require_mfa);
    write(change, schema, json!([entity])).await
}

/// Rewrites a department entity.
pub async fn department(
    change: &mut Change,
    schema: &Schema,
    org_id: &str,
    department_id: &str,
    name: &str,
) -> Result<(), InviteError> {
    let entity = json!({
        "uid": ModelUid::department(org_id, department_id).json(),
        "attrs": {"tenant": org_id, "name": name},
        "parents": [],
    });
    write(change, schema, json!([entity])).await
}

/// The `Platform` entity (system administration is authorized on it).
pub fn platform_entity() -> Value {
    json!({"uid": ModelUid::platform().json(), "attrs": {"tenant": "platform:cedargate"}, "parents": []})
}
