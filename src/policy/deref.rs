//! Which entity types the policies ever dereference, so the entity store
//! loads referenced entities of those types only.
//!
//! Sound under strict validation: an attribute access `e.a` (or `e has a`)
//! on a `T`-typed value names an attribute declared on `T`, and
//! `getTag`/`hasTag` need `T` to declare tags. So a type none of whose
//! attributes is ever named, and whose tags are never read, is never
//! dereferenced: references to it need no entity data. Entities on the
//! left of `in` need their ancestors; when that left side is anything but
//! `principal`/`resource`/`action`, the analysis gives up (every type is
//! followed).

use std::collections::HashSet;

use cedar_policy::PolicySet;
use serde_json::Value;

/// Attribute names read and tag use, collected from the policies.
#[derive(Debug, Default)]
struct Reads {
    attrs: HashSet<String>,
    tags: bool,
    give_up: bool,
    /// Entity literals whose attributes or tags are read (`Group::"x".a`).
    literals: Vec<Value>,
}

/// What the policies dereference.
#[derive(Debug, Clone, Default)]
pub(super) struct Analysis {
    /// Entity type names whose attributes or tags some policy reads.
    pub types: HashSet<String>,
    /// Entity literals (`{"type","id"}`) some policy dereferences: every
    /// slice must hold them.
    pub literals: Vec<Value>,
}

/// What the policies dereference, or `None` when the analysis cannot tell
/// (then every reference is followed and every ancestor loaded).
pub(super) fn dereferenced_types(
    schema_fragments: &[Value],
    policies: &PolicySet,
) -> Option<Analysis> {
    let mut reads = Reads::default();
    for policy in policies.policies() {
        match policy.to_json() {
            Ok(est) => {
                if let Some(conditions) = est.get("conditions") {
                    walk(conditions, &mut reads);
                }
            }
            Err(_) => return None,
        }
    }
    if reads.give_up {
        return None;
    }
    let mut out = HashSet::new();
    for (full, ty) in super::supplied::entity_types(schema_fragments) {
        let has_tags = ty.get("tags").is_some();
        let read = match ty.get("shape") {
            None => false,
            // A shape given by a common type: attributes unknown here.
            Some(_) => super::supplied::attributes(ty)
                .is_none_or(|attrs| attrs.keys().any(|a| reads.attrs.contains(a))),
        };
        if read || (has_tags && reads.tags) {
            out.insert(full);
        }
    }
    Some(Analysis {
        types: out,
        literals: reads.literals,
    })
}

/// Records the left operand when it is an entity literal.
fn note_literal(operation: &Value, reads: &mut Reads) {
    if let Some(uid) = operation
        .get("left")
        .and_then(|l| l.get("Value"))
        .and_then(|v| v.get("__entity"))
    {
        reads.literals.push(uid.clone());
    }
}

fn walk(value: &Value, reads: &mut Reads) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match key.as_str() {
                    "." | "has" => {
                        if let Some(attr) = inner.get("attr").and_then(Value::as_str) {
                            reads.attrs.insert(attr.to_owned());
                        }
                        note_literal(inner, reads);
                    }
                    "getTag" | "hasTag" => {
                        reads.tags = true;
                        note_literal(inner, reads);
                    }
                    "in" => {
                        let left_is_var = inner.get("left").and_then(|l| l.get("Var")).is_some();
                        if !left_is_var {
                            reads.give_up = true;
                        }
                    }
                    _ => {}
                }
                walk(inner, reads);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, reads)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn the_shipped_model_dereferences_users_memberships_and_organizations() {
        let snapshot = crate::policy::load(Path::new("policies"), Path::new("schema"))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let types: Vec<String> = snapshot
            .dereferenced_types()
            .map(|t| t.iter().map(|t| t.to_string()).collect())
            .unwrap_or_else(|| panic!("the analysis gave up"));
        // `getTag(...).org.requireMfa` and `.status` read Membership and Organization.
        assert!(types.contains(&"Membership".to_owned()), "{types:?}");
        assert!(types.contains(&"Organization".to_owned()), "{types:?}");
        assert!(types.contains(&"User".to_owned()), "{types:?}");
    }

    #[test]
    fn the_workload_never_dereferences_its_permission_groups() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/workload"));
        let snapshot = crate::policy::load(
            &dir.join("policies.cedar"),
            &dir.join("schema.cedarschema.json"),
        )
        .unwrap_or_else(|e| panic!("{}", e.render()));
        let types: Vec<String> = snapshot
            .dereferenced_types()
            .map(|t| t.iter().map(|t| t.to_string()).collect())
            .unwrap_or_else(|| panic!("the analysis gave up"));
        assert!(!types.contains(&"Group".to_owned()), "{types:?}");
        assert!(types.contains(&"Organization".to_owned()), "{types:?}");
    }
}
