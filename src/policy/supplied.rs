//! What a request may say about an entity, from the schema's annotations.
//!
//! Stored data is authoritative. A request may describe an entity the store
//! does not hold (a host-owned resource), and may add attributes a stored
//! entity lacks; it never overrides a stored attribute, parent or tag,
//! unless the schema marks that attribute `@source("request")`. An entity
//! type marked `@source("store")` cannot be described by a request at all:
//! its entities come from the store only.
//!
//! ```cedarschema
//! @source("store")
//! entity User { email: String, systemAdmin: Bool };
//! entity Session { @source("request") ip: ipaddr };
//! ```

use std::collections::{HashMap, HashSet};

use cedar_policy::{EntityTypeName, EntityUid, Schema};
use cedar_policy_core::ast::Entity as CoreEntity;
use serde_json::Value;

/// The annotation key, on entity types and attributes.
const SOURCE: &str = "source";

/// Each declared entity type of the schema's JSON fragments, by full name.
pub(super) fn entity_types(fragments: &[Value]) -> impl Iterator<Item = (String, &Value)> {
    fragments
        .iter()
        .filter_map(Value::as_object)
        .flatten()
        .filter_map(|(ns, decl)| Some((ns, decl.get("entityTypes")?.as_object()?)))
        .flat_map(|(ns, types)| {
            types.iter().map(move |(name, ty)| {
                let full = if ns.is_empty() {
                    name.clone()
                } else {
                    format!("{ns}::{name}")
                };
                (full, ty)
            })
        })
}

/// The declared attributes of an entity type, when its shape is a record
/// written out in the schema (`None` for a shape given by a common type).
pub(super) fn attributes(ty: &Value) -> Option<&serde_json::Map<String, Value>> {
    let shape = ty.get("shape")?;
    if shape.get("type").and_then(Value::as_str) != Some("Record") {
        return None;
    }
    shape.get("attributes").and_then(Value::as_object)
}

fn source(decl: &Value) -> Option<&str> {
    decl.get("annotations")?.get(SOURCE)?.as_str()
}

/// Why a request's description of an entity was refused.
#[derive(Debug, thiserror::Error)]
pub enum SupplyError {
    /// The type's entities come from the store only.
    #[error(
        "`{0}` comes from the entity store only (schema `@source(\"store\")`): a request cannot describe it"
    )]
    StoreOnly(String),
    /// The description is not a valid entity of the schema.
    #[error("invalid entities: {0}")]
    Invalid(String),
    /// The request contradicts what the store holds.
    #[error("`{uid}`: the stored {what} `{name}` cannot be overridden by a request")]
    Overrides {
        /// The entity.
        uid: String,
        /// `attribute`, `tag` or `parent`.
        what: &'static str,
        /// Its name.
        name: String,
    },
}

/// What requests may supply, per entity type.
#[derive(Debug, Clone, Default)]
pub struct Supplied {
    store_only: HashSet<EntityTypeName>,
    /// Attributes a request may override, per type.
    from_request: HashMap<EntityTypeName, HashSet<String>>,
}

impl Supplied {
    /// Reads the `@source` annotations of the schema's JSON fragments.
    pub(super) fn from_fragments(fragments: &[Value]) -> Self {
        let mut out = Self::default();
        for (name, ty) in entity_types(fragments) {
            let Ok(type_name) = name.parse::<EntityTypeName>() else {
                continue;
            };
            if source(ty) == Some("store") {
                out.store_only.insert(type_name.clone());
            }
            let overridable: HashSet<String> = attributes(ty)
                .into_iter()
                .flatten()
                .filter(|(_, decl)| source(decl) == Some("request"))
                .map(|(attr, _)| attr.clone())
                .collect();
            if !overridable.is_empty() {
                out.from_request.insert(type_name, overridable);
            }
        }
        out
    }

    /// The entity a decision sees for a request's description `given`
    /// (Cedar entity JSON) of an entity the store holds as `stored`, if it
    /// holds it: `given` alone when it does not; otherwise the stored
    /// entity plus the attributes it lacks and those marked
    /// `@source("request")`. A description that contradicts a stored
    /// attribute, tag or parent is refused, so that the caller learns it
    /// was not used.
    pub fn resolve(
        &self,
        schema: &Schema,
        stored: Option<&CoreEntity>,
        given: &Value,
    ) -> Result<CoreEntity, SupplyError> {
        let uid = given
            .get("uid")
            .cloned()
            .and_then(|u| EntityUid::from_json(u).ok())
            .ok_or_else(|| SupplyError::Invalid("an entity without a valid `uid`".to_owned()))?;
        if self.store_only.contains(uid.type_name()) {
            return Err(SupplyError::StoreOnly(uid.type_name().to_string()));
        }
        let Some(stored) = stored else {
            return describe(schema, given);
        };
        let refuse = |what, name: String| SupplyError::Overrides {
            uid: uid.to_string(),
            what,
            name,
        };
        for parent in given
            .get("parents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let parent = EntityUid::from_json(parent.clone())
                .map_err(|e| SupplyError::Invalid(format!("`{uid}`: a parent: {e}")))?;
            if !stored.is_child_of(&parent.clone().into()) {
                return Err(refuse("parent", parent.to_string()));
            }
        }
        // The stored entity with the request's attributes and tags laid over
        // it, parsed like any entity; then every stored value must survive.
        let mut overlay = stored
            .to_json_value()
            .map_err(|e| SupplyError::Invalid(format!("`{uid}`: {e}")))?;
        for key in ["attrs", "tags"] {
            if let (Some(Value::Object(over)), Some(Value::Object(base))) =
                (given.get(key), overlay.get_mut(key))
            {
                base.extend(over.clone());
            }
        }
        let merged = describe(schema, &overlay)?;
        let overridable = self.from_request.get(uid.type_name());
        for (k, v) in stored.attrs() {
            if merged.get(k) != Some(v) && !overridable.is_some_and(|o| o.contains(k.as_str())) {
                return Err(refuse("attribute", k.to_string()));
            }
        }
        if merged.tags_len() != stored.tags_len()
            || stored.tags().any(|(k, v)| merged.get_tag(k) != Some(v))
        {
            let tag = given.get("tags").and_then(Value::as_object);
            let name = tag
                .and_then(|t| t.keys().next())
                .cloned()
                .unwrap_or_default();
            return Err(refuse("tag", name));
        }
        Ok(merged)
    }
}

/// The entity a description (Cedar entity JSON) gives, checked against
/// the schema.
pub fn describe(schema: &Schema, json: &Value) -> Result<CoreEntity, SupplyError> {
    cedar_policy::Entity::from_json_value(json.clone(), Some(schema))
        .map(|e| CoreEntity::clone(e.as_ref()))
        .map_err(|e| SupplyError::Invalid(super::with_causes(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r#"
        @source("store") entity User { admin: Bool };
        entity Account { tenant: String, @source("request") label?: String, note?: String };
        namespace App { @source("store") entity Doc; }
        action read appliesTo { principal: User, resource: Account };
    "#;

    fn schema() -> Schema {
        SCHEMA.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn supplied() -> Supplied {
        let (fragment, _) = cedar_policy::SchemaFragment::from_cedarschema_str(SCHEMA)
            .unwrap_or_else(|e| panic!("{e}"));
        Supplied::from_fragments(&[fragment.to_json_value().unwrap_or_else(|e| panic!("{e}"))])
    }

    fn account(attrs: Value) -> Value {
        json!({"uid": {"type": "Account", "id": "a"}, "attrs": attrs, "parents": []})
    }

    #[test]
    fn store_only_types_are_read_from_the_annotation_in_every_namespace() {
        let s = supplied();
        for ty in ["User", "App::Doc"] {
            let given = json!({"uid": {"type": ty, "id": "x"}, "attrs": {}, "parents": []});
            let refused = s.resolve(&schema(), None, &given);
            assert!(
                matches!(refused, Err(SupplyError::StoreOnly(_))),
                "{ty}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_request_adds_what_the_store_lacks_and_overrides_only_marked_attributes() {
        let (s, schema) = (supplied(), schema());
        let stored = s
            .resolve(
                &schema,
                None,
                &account(json!({"tenant": "acme", "label": "old"})),
            )
            .unwrap_or_else(|e| panic!("{e}"));

        let merged = s
            .resolve(
                &schema,
                Some(&stored),
                &account(json!({"label": "new", "note": "x"})),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let forged = s.resolve(
            &schema,
            Some(&stored),
            &account(json!({"tenant": "globex"})),
        );

        let text = merged.to_json_value().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text["attrs"]["tenant"], "acme");
        assert_eq!(text["attrs"]["label"], "new");
        assert_eq!(text["attrs"]["note"], "x");
        assert!(
            matches!(
                forged,
                Err(SupplyError::Overrides {
                    what: "attribute",
                    ..
                })
            ),
            "{forged:?}"
        );
    }
}
