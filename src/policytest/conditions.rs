//! The conditions of a policy as Cedar's own JSON representation (the EST
//! of `Policy::to_json`) holds them: each `when`/`unless` body split into
//! its top-level `&&` conjuncts. Mutants and the condition coverage probes
//! are built by editing this structure and reading it back with
//! `Policy::from_json`, never by editing policy text.

use cedar_policy::{Policy, PolicyId};
use serde_json::{Map, Value, json};

/// `when` or `unless`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    When,
    Unless,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::When => "when",
            Kind::Unless => "unless",
        }
    }
}

/// One `when`/`unless` clause.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub(crate) kind: Kind,
    /// The top-level conjuncts, in source order (EST expressions).
    pub(crate) conjuncts: Vec<Value>,
}

/// A static policy as an EST object and its conditions.
#[derive(Debug, Clone)]
pub(crate) struct Structure {
    pub(crate) id: String,
    /// The whole policy (`effect`, scope, `conditions`, `annotations`).
    pub(crate) est: Map<String, Value>,
    pub(crate) conditions: Vec<Condition>,
}

/// Why a policy could not be taken apart or put back together.
#[derive(Debug, thiserror::Error)]
pub enum StructureError {
    /// Cedar gave no JSON form of the policy.
    #[error("policy `{id}` has no JSON form: {message}")]
    ToJson {
        /// The policy.
        id: String,
        /// Cedar's error.
        message: String,
    },
    /// The JSON form is not shaped as expected.
    #[error("policy `{id}`: unexpected JSON form: {what}")]
    Shape {
        /// The policy.
        id: String,
        /// What was unexpected.
        what: &'static str,
    },
    /// Cedar does not read the edited JSON form back.
    #[error("policy `{id}`: the edited JSON form is not a policy: {message}")]
    FromJson {
        /// The policy.
        id: String,
        /// Cedar's error.
        message: String,
    },
}

impl Structure {
    /// Takes a static policy apart.
    pub(crate) fn of(policy: &Policy) -> Result<Self, StructureError> {
        let id = policy.id().to_string();
        let shape = |what| StructureError::Shape {
            id: id.clone(),
            what,
        };
        let json = policy.to_json().map_err(|e| StructureError::ToJson {
            id: id.clone(),
            message: e.to_string(),
        })?;
        let Value::Object(est) = json else {
            return Err(shape("not an object"));
        };
        let mut conditions = Vec::new();
        for condition in est
            .get("conditions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let kind = match condition.get("kind").and_then(Value::as_str) {
                Some("when") => Kind::When,
                Some("unless") => Kind::Unless,
                _ => return Err(shape("a condition of unknown kind")),
            };
            let body = condition
                .get("body")
                .ok_or_else(|| shape("a condition without a body"))?;
            let mut conjuncts = Vec::new();
            flatten(body, &mut conjuncts);
            conditions.push(Condition { kind, conjuncts });
        }
        Ok(Self {
            id,
            est,
            conditions,
        })
    }

    /// This policy with its conditions replaced by `conditions` and, when
    /// given, its scope part `principal`/`action`/`resource` unconstrained.
    pub(crate) fn rebuild(
        &self,
        conditions: &[(Kind, Value)],
        widen: Option<&str>,
        permit: bool,
    ) -> Map<String, Value> {
        let mut est = self.est.clone();
        est.insert(
            "conditions".to_owned(),
            Value::Array(
                conditions
                    .iter()
                    .map(|(kind, body)| json!({"kind": kind.as_str(), "body": body}))
                    .collect(),
            ),
        );
        if let Some(part) = widen {
            est.insert(part.to_owned(), json!({"op": "All"}));
        }
        if permit {
            est.insert("effect".to_owned(), json!("permit"));
        }
        est
    }

    /// The conditions as written, as (kind, body) pairs.
    pub(crate) fn original(&self) -> Vec<(Kind, Value)> {
        self.conditions
            .iter()
            .map(|c| (c.kind, conjoin(&c.conjuncts)))
            .collect()
    }

    /// The scope part `principal`, `action` or `resource` in Cedar syntax,
    /// or `None` when it is unconstrained.
    pub(crate) fn scope(&self, part: &str) -> Option<String> {
        let scope = self.est.get(part)?;
        let op = scope.get("op")?.as_str()?;
        let entity = |v: &Value| match (v.get("type"), v.get("id")) {
            (Some(Value::String(t)), Some(Value::String(id))) => format!("{t}::{id:?}"),
            _ => v.to_string(),
        };
        let target = || {
            if let Some(list) = scope.get("entities").and_then(Value::as_array) {
                format!(
                    "[{}]",
                    list.iter().map(entity).collect::<Vec<_>>().join(", ")
                )
            } else if let Some(one) = scope.get("entity") {
                entity(one)
            } else if let Some(slot) = scope.get("slot").and_then(Value::as_str) {
                slot.to_owned()
            } else {
                "?".to_owned()
            }
        };
        Some(match op {
            "All" => return None,
            "is" => {
                let ty = scope
                    .get("entity_type")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                match scope.get("in") {
                    Some(within) => {
                        let inner = within.get("entity").map(entity).unwrap_or_default();
                        format!("{part} is {ty} in {inner}")
                    }
                    None => format!("{part} is {ty}"),
                }
            }
            op => format!("{part} {op} {}", target()),
        })
    }
}

/// Reads an edited EST object back as a policy with id `id`.
pub(crate) fn policy(id: &str, est: Map<String, Value>) -> Result<Policy, StructureError> {
    Policy::from_json(Some(PolicyId::new(id)), Value::Object(est)).map_err(|e| {
        StructureError::FromJson {
            id: id.to_owned(),
            message: e.to_string(),
        }
    })
}

/// The top-level conjuncts of an EST expression: `a && b && c` (however
/// nested) gives `[a, b, c]`; anything else gives itself.
fn flatten(expr: &Value, out: &mut Vec<Value>) {
    match expr.get("&&") {
        Some(and) if expr.as_object().is_some_and(|o| o.len() == 1) => {
            match (and.get("left"), and.get("right")) {
                (Some(left), Some(right)) => {
                    flatten(left, out);
                    flatten(right, out);
                }
                _ => out.push(expr.clone()),
            }
        }
        _ => out.push(expr.clone()),
    }
}

/// `c1 && c2 && …` as an EST expression; `true` for none.
pub(crate) fn conjoin(conjuncts: &[Value]) -> Value {
    let mut iter = conjuncts.iter().cloned();
    let Some(first) = iter.next() else {
        return json!({"Value": true});
    };
    iter.fold(
        first,
        |left, right| json!({"&&": {"left": left, "right": right}}),
    )
}

/// `!(expr)` as an EST expression.
pub(crate) fn negate(expr: &Value) -> Value {
    json!({"!": {"arg": expr}})
}

/// An EST expression in Cedar syntax (Cedar's own printer).
pub(crate) fn display(expr: &Value) -> String {
    serde_json::from_value::<cedar_policy_core::est::Expr>(expr.clone())
        .map(|e| e.to_string())
        .unwrap_or_else(|_| expr.to_string())
}

#[cfg(test)]
#[allow(clippy::expect_used, reason = "tests may panic")]
mod tests {
    use super::*;

    fn structure(src: &str) -> Structure {
        let policy = Policy::parse(Some(PolicyId::new("p")), src).expect("a policy");
        Structure::of(&policy).expect("a structure")
    }

    #[test]
    fn conjuncts_are_split_at_top_level_ands_only() {
        let s = structure(
            r#"permit (principal, action, resource is User)
               when { resource.a && (resource.b || resource.c) && !(resource.d && resource.e) }
               unless { resource.f };"#,
        );
        assert_eq!(s.conditions.len(), 2);
        assert_eq!(s.conditions[0].kind, Kind::When);
        let texts: Vec<String> = s.conditions[0].conjuncts.iter().map(display).collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts[0].contains("resource.a"), "{texts:?}");
        assert!(texts[1].contains("||"), "{texts:?}");
        assert!(texts[2].starts_with('!'), "{texts:?}");
        assert_eq!(s.conditions[1].kind, Kind::Unless);
        assert_eq!(s.conditions[1].conjuncts.len(), 1);
    }

    #[test]
    fn the_rebuilt_original_is_the_same_policy() {
        let src = r#"@id("x") forbid (principal, action in [Action::"a", Action::"b"], resource is Membership)
                     when { resource.a && resource.b } unless { resource.c };"#;
        let s = structure(src);
        let rebuilt = policy("p", s.rebuild(&s.original(), None, false)).expect("a policy");
        let original = Policy::parse(Some(PolicyId::new("p")), src).expect("a policy");
        assert_eq!(
            rebuilt.to_json().expect("json"),
            original.to_json().expect("json")
        );
        assert_eq!(
            s.scope("action").as_deref(),
            Some(r#"action in [Action::"a", Action::"b"]"#)
        );
        assert_eq!(
            s.scope("resource").as_deref(),
            Some("resource is Membership")
        );
        assert_eq!(s.scope("principal"), None);
        let widened = policy("p", s.rebuild(&s.original(), Some("resource"), true))
            .expect("a policy")
            .to_string();
        assert!(widened.starts_with("@id(\"x\")\npermit("), "{widened}");
        assert!(!widened.contains("Membership"), "{widened}");
    }
}
