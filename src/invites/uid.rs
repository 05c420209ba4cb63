//! The entity uids of the organization model, in every form the service
//! needs them: a typed [`EntityUid`] (cache invalidation, deletion), the
//! JSON of a request or an entity (`{"type", "id"}`), an entity reference
//! (`{"__entity": ...}`), and the audit trail's text (`Type::"id"`).

use std::fmt;

use cedar_policy::{EntityId, EntityUid};
use serde_json::{Value, json};

/// The id of the one `Platform` entity (system administration).
const PLATFORM_ID: &str = "cedargate";

/// One entity of the organization model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUid {
    ty: &'static str,
    id: String,
}

impl ModelUid {
    /// `User::"<user>"`.
    pub fn user(user_id: &str) -> Self {
        Self::new("User", user_id.to_owned())
    }

    /// `Organization::"<org>"`.
    pub fn organization(org_id: &str) -> Self {
        Self::new("Organization", org_id.to_owned())
    }

    /// `Membership::"<org>/<user>"`.
    pub fn membership(org_id: &str, user_id: &str) -> Self {
        Self::new("Membership", format!("{org_id}/{user_id}"))
    }

    /// `Department::"<org>/<department>"`.
    pub fn department(org_id: &str, department_id: &str) -> Self {
        Self::new("Department", format!("{org_id}/{department_id}"))
    }

    /// `Account::"<account>"` (written by the host application, read here).
    pub fn account(account_id: &str) -> Self {
        Self::new("Account", account_id.to_owned())
    }

    /// `Platform::"cedargate"`, the resource of system administration.
    pub fn platform() -> Self {
        Self::new("Platform", PLATFORM_ID.to_owned())
    }

    fn new(ty: &'static str, id: String) -> Self {
        Self { ty, id }
    }

    /// `{"type": ..., "id": ...}`.
    pub fn json(&self) -> Value {
        json!({"type": self.ty, "id": self.id})
    }

    /// `{"__entity": {"type": ..., "id": ...}}`, an attribute pointing here.
    pub fn reference(&self) -> Value {
        json!({"__entity": self.json()})
    }

    /// The typed uid.
    #[expect(
        clippy::expect_used,
        reason = "the type names are this module's constants, all valid"
    )]
    pub fn typed(&self) -> EntityUid {
        let ty = self.ty.parse().expect("a valid entity type name");
        EntityUid::from_type_name_and_id(ty, EntityId::new(&self.id))
    }
}

/// The audit trail's form, `Type::"id"` (unescaped, as it always was).
impl fmt::Display for ModelUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::\"{}\"", self.ty, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_names_the_same_entity() {
        let m = ModelUid::membership("acme", "u1");
        assert_eq!(m.to_string(), "Membership::\"acme/u1\"");
        assert_eq!(m.json(), json!({"type": "Membership", "id": "acme/u1"}));
        assert_eq!(m.reference()["__entity"], m.json());
        assert_eq!(m.typed().to_string(), "Membership::\"acme/u1\"");
        assert_eq!(ModelUid::platform().to_string(), "Platform::\"cedargate\"");
    }
}
