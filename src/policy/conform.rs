//! AuthZEN's reading of what a request says (Authorization API 1.0):
//! context keys and entity properties the schema does not declare are
//! ignored, and declared values are converted to the declared type.
//!
//! Ignoring is safe: a validated policy cannot read an undeclared key, so
//! dropping one never changes a decision, and the standard requires that
//! unknown context never does. Conversion covers what JSON cannot say: an
//! entity reference written `Type::"id"` or `{"type","id"}`, and an
//! extension value (`ipaddr`, `decimal`, `datetime`, `duration`) written as
//! its string. A value of another type than declared is left as given, so
//! that Cedar refuses it and the request is denied with the error.

use cedar_policy::{EntityUid, Schema};
use cedar_policy_core::ast::{EntityType, EntityUID};
use cedar_policy_core::validator::ValidatorSchema;
use cedar_policy_core::validator::types::{Attributes, Type};
use serde_json::{Map, Value};

/// The context for `action`, keeping only the keys its context type
/// declares, converted. An action without a declared context type keeps
/// the context as given (Cedar then judges it).
pub(super) fn context(schema: &Schema, action: &EntityUid, context: &Value) -> Value {
    let validator: &ValidatorSchema = schema.as_ref();
    let uid: &EntityUID = action.as_ref();
    match (validator.context_type(uid), context) {
        (Some(Type::Record { attrs, .. }), Value::Object(given)) => {
            Value::Object(record(validator, attrs, given))
        }
        _ => context.clone(),
    }
}

/// Cedar entity JSON for `uid` with the `properties` its type declares,
/// converted; no parents, no tags. A type the schema does not declare gets
/// no attributes.
pub(super) fn entity(schema: &Schema, uid: &EntityUid, properties: &Map<String, Value>) -> Value {
    let validator: &ValidatorSchema = schema.as_ref();
    let ty: &EntityType = uid.type_name().as_ref();
    let attrs = validator
        .get_entity_type(ty)
        .map(|t| record(validator, t.attributes(), properties))
        .unwrap_or_default();
    serde_json::json!({
        "uid": {"type": uid.type_name().to_string(), "id": uid.id().unescaped()},
        "attrs": attrs,
        "parents": [],
    })
}

fn record(
    schema: &ValidatorSchema,
    declared: &Attributes,
    given: &Map<String, Value>,
) -> Map<String, Value> {
    given
        .iter()
        .filter_map(|(key, value)| {
            let ty = declared.get_attr(key)?;
            Some((key.clone(), convert(schema, &ty.attr_type, value)))
        })
        .collect()
}

fn convert(schema: &ValidatorSchema, ty: &Type, value: &Value) -> Value {
    match (ty, value) {
        (Type::Entity(_), Value::String(text)) => match text.parse::<EntityUid>() {
            Ok(uid) => entity_ref(&uid),
            Err(_) => value.clone(),
        },
        (Type::Entity(_), Value::Object(map)) if is_type_and_id(map) => {
            serde_json::json!({ "__entity": value })
        }
        (Type::ExtensionType { name }, Value::String(_)) => {
            let constructor = match name.to_string().as_str() {
                "ipaddr" => "ip".to_owned(),
                other => other.to_owned(),
            };
            serde_json::json!({ "__extn": { "fn": constructor, "arg": value } })
        }
        (
            Type::Set {
                element_type: Some(element),
            },
            Value::Array(items),
        ) => Value::Array(items.iter().map(|v| convert(schema, element, v)).collect()),
        (Type::Record { attrs, .. }, Value::Object(given)) => {
            Value::Object(record(schema, attrs, given))
        }
        _ => value.clone(),
    }
}

fn is_type_and_id(map: &Map<String, Value>) -> bool {
    map.len() == 2
        && map.get("type").is_some_and(Value::is_string)
        && map.get("id").is_some_and(Value::is_string)
}

fn entity_ref(uid: &EntityUid) -> Value {
    serde_json::json!({"__entity": {"type": uid.type_name().to_string(), "id": uid.id().unescaped()}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r#"
        entity User;
        entity Doc {
            owner: User,
            readers?: Set<User>,
            ip?: ipaddr,
            meta?: { level: Long },
            title?: String,
        };
        action read appliesTo {
            principal: User, resource: Doc,
            context: { mfa?: Bool, from?: ipaddr, action_properties?: { reason?: String } },
        };
    "#;

    fn schema() -> Schema {
        SCHEMA.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn uid(text: &str) -> EntityUid {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn properties_are_converted_to_their_declared_types_and_undeclared_ones_dropped() {
        let schema = schema();
        let given = json!({
            "owner": "User::\"alice\"",
            "readers": [{"type": "User", "id": "bob"}, "User::\"carol\""],
            "ip": "10.0.0.1",
            "meta": {"level": 3, "colour": "red"},
            "title": "plan",
            "undeclared": true,
        });

        let entity = entity(
            &schema,
            &uid("Doc::\"d\""),
            given.as_object().unwrap_or_else(|| unreachable!()),
        );
        let parsed = cedar_policy::Entity::from_json_value(entity.clone(), Some(&schema));

        assert!(parsed.is_ok(), "{entity}: {parsed:?}");
        assert_eq!(entity["attrs"].get("undeclared"), None);
        assert_eq!(entity["attrs"]["meta"], json!({"level": 3}));
    }

    #[test]
    fn a_property_of_the_wrong_type_is_left_for_cedar_to_refuse() {
        let schema = schema();
        let given = json!({"owner": "User::\"alice\"", "title": 7});

        let entity = entity(
            &schema,
            &uid("Doc::\"d\""),
            given.as_object().unwrap_or_else(|| unreachable!()),
        );

        assert!(cedar_policy::Entity::from_json_value(entity, Some(&schema)).is_err());
    }

    #[test]
    fn context_keys_the_action_does_not_declare_are_dropped() {
        let schema = schema();
        let given = json!({"mfa": true, "from": "192.168.0.1", "time": "noon", "action_properties": {"reason": "audit", "x": 1}});

        let context = context(&schema, &uid("Action::\"read\""), &given);

        assert_eq!(context.get("time"), None);
        assert_eq!(context["action_properties"], json!({"reason": "audit"}));
        let action = uid("Action::\"read\"");
        let parsed =
            cedar_policy::Context::from_json_value(context.clone(), Some((&schema, &action)));
        assert!(parsed.is_ok(), "{context}: {parsed:?}");
    }
}
