//! Decisions explained at the level of conditions, for the people who have
//! to act on a Deny: which permit would have applied and the first of its
//! conditions that was false, with the values that made it false (for
//! example `principal.getTag(resource.tenant).perms.organization == 2` was
//! `1 == 2`), and which forbids fired, in their own words.
//!
//! Everything is computed by Cedar: a policy's conditions are read from its
//! JSON syntax tree, each conjunct is printed by Cedar and evaluated with
//! [`cedar_policy::eval_expression`] on the decision's own request and
//! entities; whether a permit is in scope is asked of the authorizer with
//! the policy's conditions removed. Nothing here re-implements evaluation.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect, Entities, EvalResult, Expression, Policy,
    PolicyId, PolicySet, Request, eval_expression,
};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Decision, PolicySnapshot};

/// Why a decision came out as it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// For a Deny, each permit whose scope matches the request but which
    /// did not apply, with the first condition that did not hold: what is
    /// missing, so listed first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsatisfied: Vec<Unsatisfied>,
    /// The policies that determined the decision: the satisfied permits of
    /// an Allow, the forbids that fired for a Deny.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub determining: Vec<Determining>,
}

/// A permit in scope that did not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Unsatisfied {
    /// The policy id.
    pub policy: String,
    /// Where it is defined, `file:line`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The condition that did not hold, in Cedar syntax (`unless { … }`
    /// for an `unless` clause that held).
    pub condition: String,
    /// What it evaluated to: its operands' values for a comparison
    /// (`1 == 2`), else its value, or `error: …`.
    pub evaluated: String,
}

/// A policy that determined the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Determining {
    /// The policy id.
    pub policy: String,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// Where it is defined, `file:line`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Its `@message` annotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Explanation {
    /// One line for people, missing permissions first: "billing-read needs
    /// `…` (was `0 >= 1`); forbidden by member-must-be-active: only ACTIVE
    /// members may act in an organization".
    pub fn summary(&self) -> String {
        let missing = self.unsatisfied.iter().map(|u| {
            format!(
                "{} needs `{}` (was `{}`)",
                u.policy, u.condition, u.evaluated
            )
        });
        let fired = self.determining.iter().map(|d| match &d.message {
            Some(m) => format!("{} by {}: {m}", verb(d.effect), d.policy),
            None => format!("{} by {}", verb(d.effect), d.policy),
        });
        missing.chain(fired).collect::<Vec<_>>().join("; ")
    }
}

fn verb(effect: &str) -> &'static str {
    if effect == "forbid" {
        "forbidden"
    } else {
        "allowed"
    }
}

impl PolicySnapshot {
    /// Explains `decision`, which this snapshot made on `request` and
    /// `entities`.
    pub fn explain(
        &self,
        request: &Request,
        entities: &Entities,
        decision: &Decision,
    ) -> Explanation {
        let determining = decision
            .reasons
            .iter()
            .map(|id| {
                let origin = self.origin(id);
                Determining {
                    policy: id.clone(),
                    effect: match origin.map(|o| o.effect) {
                        Some(Effect::Forbid) => "forbid",
                        _ => "permit",
                    },
                    at: origin.map(|o| format!("{}:{}", o.file, o.line)),
                    message: self
                        .policies()
                        .annotation(&PolicyId::new(id), "message")
                        .map(str::to_owned),
                }
            })
            .collect();
        let unsatisfied = if decision.allow {
            Vec::new()
        } else {
            let mut permits: Vec<&Policy> = self
                .applicable(request)
                .policies()
                .filter(|p| p.effect() == Effect::Permit)
                .filter(|p| !decision.reasons.iter().any(|r| r == id_of(p)))
                .collect();
            permits.sort_by_key(|p| id_of(p));
            let mut unmet: Vec<(usize, Unsatisfied)> = permits
                .into_iter()
                .filter_map(|p| self.unsatisfied(p, request, entities))
                .collect();
            // The permit that came closest to applying first: what it
            // lacks is what the requester is most likely missing (a
            // manager's permission rather than being a system administrator).
            unmet.sort_by_key(|(held, _)| std::cmp::Reverse(*held));
            unmet.into_iter().map(|(_, u)| u).collect()
        };
        Explanation {
            unsatisfied,
            determining,
        }
    }

    /// `permit`'s first condition that does not hold, when its scope
    /// matches the request (`None` otherwise), with how many held before it.
    fn unsatisfied(
        &self,
        permit: &Policy,
        request: &Request,
        entities: &Entities,
    ) -> Option<(usize, Unsatisfied)> {
        let mut est = permit.to_json().ok()?;
        let conditions = est.get_mut("conditions").map(Value::take)?;
        est["conditions"] = json!([]);
        if est.get_mut("annotations").is_some() {
            est["annotations"] = json!({});
        }
        let scope_only = Policy::from_json(Some(permit.id().clone()), est).ok()?;
        let set = PolicySet::from_policies([scope_only]).ok()?;
        let in_scope = Authorizer::new().is_authorized(request, &set, entities);
        if in_scope.decision() != CedarDecision::Allow {
            return None;
        }
        let at = self
            .origin(id_of(permit))
            .map(|o| format!("{}:{}", o.file, o.line));
        let unmet = |condition: String, evaluated: String| Unsatisfied {
            policy: permit.id().to_string(),
            at: at.clone(),
            condition,
            evaluated,
        };
        let mut held = 0;
        for clause in conditions.as_array()? {
            let body = clause.get("body")?;
            if clause.get("kind").and_then(Value::as_str) == Some("unless") {
                let text = expression_text(body)?;
                let value = evaluate(&text, request, entities);
                if !matches!(value, Ok(EvalResult::Bool(false))) {
                    let shown = shown(body, value, request, entities);
                    return Some((held, unmet(format!("unless {{ {text} }}"), shown)));
                }
                held += 1;
                continue;
            }
            for conjunct in conjuncts(body) {
                let text = expression_text(conjunct)?;
                let value = evaluate(&text, request, entities);
                if !matches!(value, Ok(EvalResult::Bool(true))) {
                    return Some((held, unmet(text, shown(conjunct, value, request, entities))));
                }
                held += 1;
            }
        }
        None
    }
}

fn id_of(policy: &Policy) -> &str {
    policy.id().as_ref()
}

/// The top-level `&&` operands of `body`, left to right.
fn conjuncts(body: &Value) -> Vec<&Value> {
    match body.get("&&") {
        Some(and) => match (and.get("left"), and.get("right")) {
            (Some(left), Some(right)) => {
                let mut out = conjuncts(left);
                out.extend(conjuncts(right));
                out
            }
            _ => vec![body],
        },
        None => vec![body],
    }
}

/// Cedar's own printing of an expression in the JSON syntax tree: it is
/// made the condition of an otherwise empty policy, which Cedar prints.
fn expression_text(body: &Value) -> Option<String> {
    let policy = json!({
        "effect": "permit",
        "principal": {"op": "All"},
        "action": {"op": "All"},
        "resource": {"op": "All"},
        "conditions": [{"kind": "when", "body": body}],
    });
    let text = Policy::from_json(None, policy).ok()?.to_cedar()?;
    let start = text.find("when {")? + "when {".len();
    let end = text.rfind('}')?;
    Some(text.get(start..end)?.trim().to_owned())
}

fn evaluate(text: &str, request: &Request, entities: &Entities) -> Result<EvalResult, String> {
    let expression = Expression::from_str(text).map_err(|e| e.to_string())?;
    eval_expression(request, entities, &expression).map_err(|e| e.to_string())
}

/// Comparison operators whose operands are worth showing.
const COMPARISONS: [&str; 7] = ["==", "!=", "<", "<=", ">", ">=", "in"];

/// How a condition evaluated: a comparison as its operands' values
/// (`0 >= 1`), anything else as its value.
fn shown(
    node: &Value,
    value: Result<EvalResult, String>,
    request: &Request,
    entities: &Entities,
) -> String {
    let operands = COMPARISONS.iter().find_map(|op| {
        let pair = node.get(*op)?;
        let side = |key: &str| {
            let text = expression_text(pair.get(key)?)?;
            evaluate(&text, request, entities).ok()
        };
        Some(format!("{} {op} {}", side("left")?, side("right")?))
    });
    match (operands, value) {
        (Some(operands), Ok(_)) => operands,
        (_, Ok(value)) => value.to_string(),
        (_, Err(error)) => format!("error: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use cedar_policy::EntityUid;

    use super::*;

    fn shipped() -> (PolicySnapshot, Entities) {
        let snapshot = super::super::load(Path::new("policies"), Path::new("schema"))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let text = std::fs::read_to_string("policies/tests/entities/orgs.json")
            .unwrap_or_else(|e| panic!("{e}"));
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let entities = snapshot.entities(json).unwrap_or_else(|e| panic!("{e}"));
        (snapshot, entities)
    }

    fn uid(text: &str) -> EntityUid {
        EntityUid::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn explained(user: &str, action: &str, org: &str, context: Value) -> (Decision, Explanation) {
        let (snapshot, entities) = shipped();
        let request = snapshot
            .request(
                uid(&format!("User::\"{user}\"")),
                uid(&format!("Action::\"{action}\"")),
                uid(&format!("Organization::\"{org}\"")),
                &context,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let decision = snapshot.decide(&request, &entities);
        let explanation = snapshot.explain(&request, &entities, &decision);
        (decision, explanation)
    }

    #[test]
    fn a_deny_names_the_permit_and_the_condition_with_its_values() {
        // Rita reads billing in acme but may not manage it.
        let (decision, explanation) = explained("rita", "billing.manage", "acme", json!({}));

        assert!(!decision.allow);
        let billing = explanation
            .unsatisfied
            .iter()
            .find(|u| u.policy == "billing-manage")
            .unwrap_or_else(|| panic!("{explanation:#?}"));
        assert_eq!(
            billing.condition, "principal.getTag(resource.tenant).perms.billing == 2",
            "{explanation:#?}"
        );
        assert_eq!(billing.evaluated, "1 == 2", "{explanation:#?}");
        assert!(
            billing
                .at
                .as_deref()
                .is_some_and(|at| at.starts_with("policies/modules.cedar:"))
        );
        assert!(explanation.determining.is_empty(), "{explanation:#?}");
    }

    #[test]
    fn a_forbid_that_fired_is_explained_in_its_own_words() {
        // Pete's membership is PENDING.
        let (decision, explanation) = explained("pete", "billing.read", "acme", json!({}));

        assert!(!decision.allow);
        let fired = &explanation.determining;
        assert_eq!(fired.len(), 1, "{explanation:#?}");
        assert_eq!(fired[0].policy, "member-must-be-active");
        assert_eq!(fired[0].effect, "forbid");
        assert_eq!(
            fired[0].message.as_deref(),
            Some("only ACTIVE members may act in an organization")
        );
        assert!(
            explanation
                .summary()
                .contains("forbidden by member-must-be-active")
        );
    }

    #[test]
    fn an_allow_names_its_permits_and_nothing_unsatisfied() {
        let (decision, explanation) = explained("olivia", "billing.read", "acme", json!({}));

        assert!(decision.allow);
        assert!(explanation.unsatisfied.is_empty(), "{explanation:#?}");
        assert_eq!(explanation.determining[0].policy, "billing-read");
        assert_eq!(explanation.determining[0].effect, "permit");
    }

    #[test]
    fn an_outsider_is_told_the_membership_is_missing() {
        // Gwen belongs to globex, not acme.
        let (_, explanation) = explained("gwen", "billing.read", "acme", json!({}));

        let billing = explanation
            .unsatisfied
            .iter()
            .find(|u| u.policy == "billing-read")
            .unwrap_or_else(|| panic!("{explanation:#?}"));
        assert_eq!(billing.condition, "principal.hasTag(resource.tenant)");
        assert_eq!(billing.evaluated, "false");
    }
}
