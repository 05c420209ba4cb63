//! The Cedar projection of the service's rows: `Organization`, `User` (with
//! one tag per membership), `Membership` and `Department` entities, written
//! in the same transaction as the rows they mirror.

use cedar_policy::{EntityUid, Schema};
use serde_json::{Value, json};

use super::InviteError;
use super::store::{self, MembershipRow};
use crate::entities::EntityStore;

fn uid(ty: &str, id: &str) -> Value {
    json!({"type": ty, "id": id})
}

fn reference(ty: &str, id: &str) -> Value {
    json!({"__entity": uid(ty, id)})
}

/// `Membership::"<org>/<user>"`.
pub fn membership_id(org: &str, user: &str) -> String {
    format!("{org}/{user}")
}

fn membership_entity(m: &MembershipRow) -> Value {
    let mut attrs = json!({
        "tenant": m.org_id,
        "user": reference("User", &m.user_id),
        "org": reference("Organization", &m.org_id),
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
            reference("Department", &format!("{}/{dept}", m.org_id)),
        );
    }
    json!({"uid": uid("Membership", &membership_id(&m.org_id, &m.user_id)), "attrs": attrs, "parents": []})
}

/// Rewrites the user and all their memberships. Returns the uids written.
pub async fn user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    schema: &Schema,
    user_id: &str,
) -> Result<Vec<EntityUid>, InviteError> {
    let Some(user) = store::user_by_id(tx, user_id).await? else {
        return Err(InviteError::NotFound(format!("no user `{user_id}`")));
    };
    let memberships = store::memberships_of_user(tx, user_id).await?;
    let tags: serde_json::Map<String, Value> = memberships
        .iter()
        .map(|m| {
            (
                m.org_id.clone(),
                reference("Membership", &membership_id(&m.org_id, &m.user_id)),
            )
        })
        .collect();
    let mut entities = vec![json!({
        "uid": uid("User", &user.user_id),
        "attrs": {"email": user.email, "systemAdmin": user.system_admin},
        "parents": [],
        "tags": tags,
    })];
    entities.extend(memberships.iter().map(membership_entity));
    Ok(EntityStore::upsert_in(tx, schema, Value::Array(entities)).await?)
}

/// Rewrites the organization entity.
pub async fn organization(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    schema: &Schema,
    org_id: &str,
    name: &str,
    require_mfa: bool,
) -> Result<Vec<EntityUid>, InviteError> {
    let entity = json!({
        "uid": uid("Organization", org_id),
        "attrs": {"tenant": org_id, "name": name, "requireMfa": require_mfa},
        "parents": [],
    });
    Ok(EntityStore::upsert_in(tx, schema, json!([entity])).await?)
}

/// Rewrites a department entity.
pub async fn department(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    schema: &Schema,
    org_id: &str,
    department_id: &str,
    name: &str,
) -> Result<Vec<EntityUid>, InviteError> {
    let entity = json!({
        "uid": uid("Department", &format!("{org_id}/{department_id}")),
        "attrs": {"tenant": org_id, "name": name},
        "parents": [],
    });
    Ok(EntityStore::upsert_in(tx, schema, json!([entity])).await?)
}

/// The uid of a membership entity.
pub fn membership_uid(org: &str, user: &str) -> EntityUid {
    typed_uid("Membership", membership_id(org, user))
}

/// The uid of a department entity.
pub fn department_uid(org: &str, department: &str) -> EntityUid {
    typed_uid("Department", format!("{org}/{department}"))
}

#[expect(
    clippy::expect_used,
    reason = "called only with the schema's constant type names"
)]
fn typed_uid(ty: &str, id: String) -> EntityUid {
    let ty = ty.parse().expect("a valid entity type name");
    EntityUid::from_type_name_and_id(ty, cedar_policy::EntityId::new(id))
}
