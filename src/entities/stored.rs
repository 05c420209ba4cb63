//! Reading a stored body into Cedar's form.
//!
//! Every stored body was written by Cedar (`Entity::to_json_value`, see
//! `normalize`): references are `{"__entity": …}`, extension values
//! `{"__extn": …}`, so the body says what each value is without the schema.
//! Cedar's own reader instead tries each of its untagged JSON forms in turn
//! and builds an error for every form it rejects; on a cold slice that was
//! three quarters of the decision. So a body in the normalized form is
//! converted here directly, then checked against the schema by Cedar's own
//! conformance checker, the same check Cedar's reader ends with (it is what
//! refuses an entity a schema change left non-conforming). A body in any
//! other form, or one the check refuses, goes through Cedar's reader, which
//! reads it the schema's way or reports why it cannot.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use cedar_policy::{Entity, EntityUid};
use cedar_policy_core::ast::{Eid, Entity as CoreEntity, EntityUID, Name, PartialValue, Value};
use cedar_policy_core::entities::conformance::EntitySchemaConformanceChecker;
use cedar_policy_core::extensions::Extensions;
use cedar_policy_core::validator::CoreSchema;
use serde_json::{Map, Value as Json};
use smol_str::SmolStr;

use super::{Parsed, SchemaRef};

/// Parses a stored body against `schema`.
pub(super) fn parse(schema: SchemaRef<'_>, body: &str) -> Result<Parsed, String> {
    let value: Json = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let direct = Reader { schema }.entity(&value).filter(|(entity, _)| {
        let core = CoreSchema::new(schema.schema.as_ref());
        EntitySchemaConformanceChecker::new(&core, Extensions::all_available())
            .validate_entity(entity)
            .is_ok()
    });
    let (entity, refs) = match direct {
        Some(read) => read,
        None => cedar_reader(schema, value)?,
    };
    Ok(Parsed {
        schema: schema.digest,
        entity: Arc::new(entity),
        refs,
    })
}

/// Cedar's JSON reader, directed by the schema.
fn cedar_reader(
    schema: SchemaRef<'_>,
    value: Json,
) -> Result<(CoreEntity, Vec<EntityUid>), String> {
    let mut refs = Vec::new();
    for key in ["attrs", "tags"] {
        if let Some(v) = value.get(key) {
            collect_refs(v, &mut refs);
        }
    }
    let entity = Entity::from_json_value(value, Some(schema.schema))
        .map_err(|e| crate::policy::with_causes(&e))?;
    Ok((CoreEntity::clone(entity.as_ref()), refs))
}

/// Entity references (`{"__entity": {"type", "id"}}`) anywhere in a value.
fn collect_refs(value: &Json, out: &mut Vec<EntityUid>) {
    match value {
        Json::Object(map) => {
            if let Some(target) = map.get("__entity") {
                if let Ok(uid) = EntityUid::from_json(target.clone()) {
                    out.push(uid);
                }
                return;
            }
            for v in map.values() {
                collect_refs(v, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The direct conversion: `None` for anything outside the normalized form.
struct Reader<'a> {
    schema: SchemaRef<'a>,
}

impl Reader<'_> {
    fn entity(&self, body: &Json) -> Option<(CoreEntity, Vec<EntityUid>)> {
        let body = body.as_object()?;
        if body
            .keys()
            .any(|k| !matches!(k.as_str(), "uid" | "attrs" | "parents" | "tags"))
        {
            return None;
        }
        let uid = self.uid(body.get("uid")?)?;
        let parents = match body.get("parents") {
            None => HashSet::new(),
            Some(parents) => (parents.as_array()?.iter())
                .map(|p| self.uid(p))
                .collect::<Option<_>>()?,
        };
        let mut refs = Vec::new();
        let attrs = self.fields(body.get("attrs"), &mut refs)?;
        let tags = self.fields(body.get("tags"), &mut refs)?;
        let entity =
            CoreEntity::new_with_attr_partial_value(uid, attrs, HashSet::new(), parents, tags);
        Some((entity, refs))
    }

    /// `{"type", "id"}`, with a type the schema declares.
    fn uid(&self, value: &Json) -> Option<EntityUID> {
        let map = value.as_object().filter(|m| m.len() == 2)?;
        let ty = self.schema.names.get(map.get("type")?.as_str()?)?;
        let id = map.get("id")?.as_str()?;
        Some(EntityUID::from_components(
            ty.as_ref().clone(),
            Eid::new(id),
            None,
        ))
    }

    fn fields(
        &self,
        fields: Option<&Json>,
        refs: &mut Vec<EntityUid>,
    ) -> Option<Vec<(SmolStr, PartialValue)>> {
        let Some(fields) = fields else {
            return Some(Vec::new());
        };
        (fields.as_object()?.iter())
            .map(|(k, v)| Some((SmolStr::from(k), PartialValue::Value(self.value(v, refs)?))))
            .collect()
    }

    fn value(&self, value: &Json, refs: &mut Vec<EntityUid>) -> Option<Value> {
        Some(match value {
            Json::Bool(b) => Value::from(*b),
            Json::Number(n) => Value::from(n.as_i64()?),
            Json::String(s) => Value::from(s.as_str()),
            Json::Array(items) => Value::set(
                items
                    .iter()
                    .map(|v| self.value(v, refs))
                    .collect::<Option<Vec<_>>>()?,
                None,
            ),
            Json::Object(map) => match escape(map) {
                Some(("__entity", target)) => {
                    let uid = self.uid(target)?;
                    refs.push(EntityUid::from(uid.clone()));
                    Value::from(uid)
                }
                Some(("__extn", call)) => extension(call)?,
                Some(_) => return None,
                None => Value::record(
                    map.iter()
                        .map(|(k, v)| Some((SmolStr::from(k), self.value(v, refs)?)))
                        .collect::<Option<BTreeMap<_, _>>>()?,
                    None,
                ),
            },
            Json::Null => return None,
        })
    }
}

/// An object that is one of Cedar's escapes: its only key, and its value.
/// Any other key Cedar reserves (`__…`) makes the object unknown here.
fn escape(map: &Map<String, Json>) -> Option<(&str, &Json)> {
    let mut reserved = map.iter().filter(|(k, _)| k.starts_with("__"));
    let (key, value) = reserved.next()?;
    Some(if map.len() == 1 {
        (key.as_str(), value)
    } else {
        ("", value)
    })
}

/// `{"fn": "ip", "arg": "10.0.0.1"}`: a one-argument constructor of a
/// string, the form Cedar writes for `ip`, `decimal`, `datetime` and
/// `duration`. Other calls are left to Cedar's reader.
fn extension(call: &Json) -> Option<Value> {
    let call = call.as_object().filter(|c| c.len() == 2)?;
    let name: Name = call.get("fn")?.as_str()?.parse().ok()?;
    let arg = call.get("arg")?.as_str()?;
    let func = Extensions::all_available().func(&name).ok()?;
    match func.call(&[Value::from(arg)]).ok()? {
        PartialValue::Value(v) => Some(v),
        PartialValue::Residual(_) => None,
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"
        entity Org { name: String, perms: { read: Group }, tier?: Long };
        entity Group in [Org];
        entity User in [Group] { addr: ipaddr, tags: Set<String>, org: Org } tags String;
    "#;

    fn schema() -> cedar_policy::Schema {
        SCHEMA.parse().expect("the schema")
    }

    fn names(schema: &cedar_policy::Schema) -> crate::policy::TypeNames {
        crate::policy::type_names(schema)
    }

    /// What Cedar's own reader makes of `body`, and what this module does.
    fn both(body: &Json) -> (Result<Parsed, String>, Result<Parsed, String>) {
        let schema = schema();
        let names = names(&schema);
        let at = SchemaRef {
            schema: &schema,
            digest: [0; 32],
            names: &names,
        };
        let cedar = cedar_reader(at, body.clone()).map(|(entity, refs)| Parsed {
            schema: at.digest,
            entity: Arc::new(entity),
            refs,
        });
        (cedar, parse(at, &body.to_string()))
    }

    fn normalized(body: &Json) -> Json {
        Entity::from_json_value(body.clone(), Some(&schema()))
            .expect("a conforming entity")
            .to_json_value()
            .expect("its JSON")
    }

    #[test]
    fn a_normalized_body_reads_as_cedar_reads_it() {
        let body = normalized(&serde_json::json!({
            "uid": {"type": "User", "id": "u"},
            "attrs": {
                "addr": {"__extn": {"fn": "ip", "arg": "10.0.0.0/8"}},
                "tags": ["a", "b"],
                "org": {"type": "Org", "id": "o"},
            },
            "parents": [{"type": "Group", "id": "g"}],
            "tags": {"t": "v"},
        }));
        assert!(
            Reader {
                schema: SchemaRef {
                    schema: &schema(),
                    digest: [0; 32],
                    names: &names(&schema()),
                }
            }
            .entity(&body)
            .is_some(),
            "{body} is read directly"
        );

        let (cedar, direct) = both(&body);

        let (cedar, direct) = (cedar.expect("cedar reads it"), direct.expect("read"));
        assert!(cedar.entity.deep_eq(&direct.entity), "{body}");
        assert_eq!(cedar.refs, direct.refs);
    }

    #[test]
    fn a_body_the_schema_refuses_is_refused_with_cedars_reason() {
        // `name` is required: what a schema change can leave behind.
        let body = serde_json::json!({
            "uid": {"type": "Org", "id": "o"},
            "attrs": {"perms": {"read": {"__entity": {"type": "Group", "id": "g"}}}},
            "parents": [],
        });

        let (cedar, direct) = both(&body);

        let reason = direct.expect_err("refused");
        assert_eq!(Some(reason.clone()), cedar.err());
        assert!(reason.contains("name"), "{reason}");
    }

    #[test]
    fn a_body_in_another_form_goes_through_cedars_reader() {
        // An implicit reference and a plain string for `ipaddr`: only the
        // schema tells what they are.
        let body = serde_json::json!({
            "uid": {"type": "User", "id": "u"},
            "attrs": {
                "addr": "10.0.0.1",
                "tags": [],
                "org": {"type": "Org", "id": "o"},
            },
            "parents": [],
        });

        let (cedar, direct) = both(&body);

        let (cedar, direct) = (cedar.expect("cedar reads it"), direct.expect("read"));
        assert!(cedar.entity.deep_eq(&direct.entity), "{body}");
    }

    #[test]
    fn an_entity_reference_to_an_undeclared_type_is_refused() {
        let body = serde_json::json!({
            "uid": {"type": "User", "id": "u"},
            "attrs": {
                "addr": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
                "tags": [],
                "org": {"__entity": {"type": "Nope", "id": "o"}},
            },
            "parents": [],
        });

        let (cedar, direct) = both(&body);

        assert!(cedar.is_err() && direct.is_err(), "{body}");
    }

    #[test]
    fn references_are_found_in_records_sets_and_tags() {
        let mut out = Vec::new();
        collect_refs(
            &serde_json::json!({
                "org": {"__entity": {"type": "Organization", "id": "acme"}},
                "restrictions": {"active": [{"__entity": {"type": "Account", "id": "a1"}}]},
                "name": "x"
            }),
            &mut out,
        );
        let names: Vec<String> = out.iter().map(|u| u.to_string()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&r#"Organization::"acme""#.to_owned()));
        assert!(names.contains(&r#"Account::"a1""#.to_owned()));
    }
}
