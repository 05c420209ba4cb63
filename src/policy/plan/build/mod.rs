//! Building a plan: each residual policy read as three conditions over the
//! resource (satisfied, not satisfied, evaluated without error) and
//! combined under fail-closed decisions (see the parent module).

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy::pst;
use cedar_policy::{Effect, Entities, EntityUid, EvalResult};

use super::{CmpOp, Condition, FilterPlan, PlanError, SetOp, Term, Value};
use crate::policy::Residuals;

mod eval;
#[cfg(test)]
mod tests;

/// Builds the filter plan from what partial evaluation left for `principal`
/// (known, with `principal_entities`: the principal with its whole,
/// transitively closed ancestor set, and whatever its attributes and tags
/// refer to) and a resource of unknown id.
///
/// The condition is exact under fail-closed decisions: a stored resource
/// matches it exactly when [`super::PolicySnapshot::decide`] allows the
/// request with that resource (see the module documentation).
pub fn plan(
    residuals: &Residuals,
    principal: &EntityUid,
    principal_entities: &Entities,
) -> Result<FilterPlan, PlanError> {
    match residuals.decided {
        Some(true) => return Ok(FilterPlan::AlwaysAllowed),
        Some(false) => return Ok(FilterPlan::AlwaysDenied),
        None => {}
    }
    let mut satisfied = Vec::new();
    let mut permits_defined = Vec::new();
    let mut forbids_unsatisfied = Vec::new();
    // In policy id order: the same query gives the same tree.
    let mut policies: Vec<&cedar_policy::Policy> = residuals.policies.policies().collect();
    policies.sort_by_key(|p| p.id().to_string());
    for policy in policies {
        let evaluator = Evaluator {
            principal,
            entities: principal_entities,
            policy: policy.id().to_string(),
        };
        let pst = policy.to_pst().map_err(|e| PlanError::Residual {
            policy: evaluator.policy.clone(),
            message: e.to_string(),
        })?;
        let b = evaluator.policy(&pst)?;
        match policy.effect() {
            Effect::Permit => {
                satisfied.push(b.t);
                permits_defined.push(b.d);
            }
            Effect::Forbid => forbids_unsatisfied.push(b.f),
        }
    }
    // "Satisfied without error" implies "without error": with one permit
    // left undecided its definedness adds nothing.
    let live: Vec<usize> = (0..satisfied.len())
        .filter(|&i| !(satisfied[i].is_false() && permits_defined[i].is_true()))
        .collect();
    if let [only] = live.as_slice() {
        permits_defined[*only] = Condition::Bool(true);
    }
    let condition = Condition::and(
        std::iter::once(Condition::or(satisfied))
            .chain(permits_defined)
            .chain(forbids_unsatisfied),
    );
    Ok(match condition {
        Condition::Bool(true) => FilterPlan::AlwaysAllowed,
        Condition::Bool(false) => FilterPlan::AlwaysDenied,
        condition => FilterPlan::Conditional { condition },
    })
}

/// `t` equals one of `values` (never sets): `==` for a single value, false
/// for none when `t` is the resource (which is never unknown).
fn one_of(t: Term, values: Vec<Value>) -> Condition {
    match values.as_slice() {
        [] if t == Term::Resource => Condition::Bool(false),
        [v] => Condition::Compare(CmpOp::Eq, t, Term::Value(v.clone())),
        _ => Condition::OneOf(t, values),
    }
}

/// A boolean expression over the resource, as three conditions: satisfied
/// without error (`t`), not satisfied without error (`f`), evaluated
/// without error (`d`, which is `t or f`).
#[derive(Debug, Clone)]
struct B {
    t: Condition,
    f: Condition,
    d: Condition,
}

impl B {
    fn constant(b: bool) -> Self {
        Self {
            t: Condition::Bool(b),
            f: Condition::Bool(!b),
            d: Condition::Bool(true),
        }
    }

    fn error() -> Self {
        Self {
            t: Condition::Bool(false),
            f: Condition::Bool(false),
            d: Condition::Bool(false),
        }
    }

    /// An atomic test, unknown when one of the paths it reads is missing.
    fn atom(atom: Condition) -> Self {
        let d = Condition::and(atom.paths().into_iter().map(|p| Condition::Has(p.to_vec())));
        Self {
            f: atom.clone().negate_atom(),
            t: atom,
            d,
        }
    }

    fn not(self) -> Self {
        Self {
            t: self.f,
            f: self.t,
            d: self.d,
        }
    }

    fn total(&self) -> bool {
        self.d.is_true()
    }

    /// Cedar's `&&`: the right operand only matters when the left is true.
    fn and(self, right: Self) -> Self {
        let total = self.total();
        let t = Condition::and([self.t.clone(), right.t]);
        let f = if total {
            Condition::or([self.f.clone(), right.f])
        } else {
            Condition::or([self.f.clone(), Condition::and([self.t.clone(), right.f])])
        };
        let d = if right.d.is_true() {
            self.d
        } else if total {
            Condition::or([self.f, right.d])
        } else {
            Condition::or([self.f, Condition::and([self.t, right.d])])
        };
        Self { t, f, d }
    }

    /// Cedar's `||`: the right operand only matters when the left is false.
    fn or(self, right: Self) -> Self {
        self.not().and(right.not()).not()
    }

    /// `if c then a else b` on booleans.
    fn ite(c: Self, a: Self, b: Self) -> Self {
        let pick = |x: Condition, y: Condition| {
            Condition::or([
                Condition::and([c.t.clone(), x]),
                Condition::and([c.f.clone(), y]),
            ])
        };
        Self {
            t: pick(a.t, b.t),
            f: pick(a.f, b.f),
            d: pick(a.d, b.d),
        }
    }
}

/// What a subexpression denotes for every resource.
#[derive(Debug, Clone)]
enum Sym {
    /// The same value whatever the resource.
    Val(Value),
    /// A resource-dependent non-boolean term (never `Term::Value`).
    Term(Term),
    /// A resource-dependent boolean.
    Bool(Box<B>),
    /// An error whatever the resource.
    Err,
    /// Disjoint cases, each under a guard (true without error); a resource
    /// matching no guard makes the expression an error.
    Cases(Vec<(Condition, Sym)>),
}

impl Sym {
    fn bool(b: bool) -> Self {
        Self::Val(Value::Bool(b))
    }

    fn boolean(b: B) -> Self {
        Self::Bool(Box::new(b))
    }
}

struct Evaluator<'a> {
    principal: &'a EntityUid,
    entities: &'a Entities,
    policy: String,
}

type R<T> = Result<T, PlanError>;

/// `path has attrs` for a resource path: an error when `path` itself
/// cannot be read, else whether the longer path exists.
fn has_b(path: &[String], attrs: &[String]) -> B {
    let mut full = path.to_vec();
    full.extend(attrs.iter().cloned());
    let d = if path.is_empty() {
        Condition::Bool(true)
    } else {
        Condition::Has(path.to_vec())
    };
    let t = Condition::Has(full);
    let f = Condition::and([d.clone(), Condition::Not(Box::new(t.clone()))]);
    B { t, f, d }
}

fn is_boolean(s: &Sym) -> bool {
    match s {
        Sym::Val(Value::Bool(_)) | Sym::Bool(_) | Sym::Err => true,
        Sym::Cases(cases) => cases.iter().all(|(_, s)| is_boolean(s)),
        _ => false,
    }
}

/// Adds a case, dropping impossible guards and flattening nested cases.
fn push_case(out: &mut Vec<(Condition, Sym)>, guard: Condition, s: Sym) {
    if guard.is_false() {
        return;
    }
    match s {
        Sym::Cases(inner) => {
            for (g, s) in inner {
                push_case(out, Condition::and([guard.clone(), g]), s);
            }
        }
        s => out.push((guard, s)),
    }
}

fn pst_uid(uid: &pst::EntityUID) -> Value {
    Value::Entity {
        ty: uid.ty.to_string(),
        id: uid.eid.to_string(),
    }
}

fn uid_of(ty: &str, id: &str) -> Option<EntityUid> {
    let ty: cedar_policy::EntityTypeName = ty.parse().ok()?;
    Some(EntityUid::from_type_name_and_id(
        ty,
        cedar_policy::EntityId::new(id),
    ))
}

/// A Cedar pattern in the tree's syntax: `*` wildcard, `\*` and `\\` literal.
fn pattern_text(pattern: &[pst::PatternElem]) -> String {
    let mut out = String::new();
    for elem in pattern {
        match elem {
            pst::PatternElem::Wildcard => out.push('*'),
            pst::PatternElem::Char(c @ ('*' | '\\')) => {
                out.push('\\');
                out.push(*c);
            }
            pst::PatternElem::Char(c) => out.push(*c),
        }
    }
    out
}

/// Cedar's `like` on a known string.
fn wildcard_match(pattern: &[pst::PatternElem], text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    // matches[j]: the pattern so far matches chars[..j].
    let mut matches = vec![false; chars.len() + 1];
    matches[0] = true;
    for elem in pattern {
        match elem {
            pst::PatternElem::Wildcard => {
                for j in 1..=chars.len() {
                    matches[j] = matches[j] || matches[j - 1];
                }
            }
            pst::PatternElem::Char(c) => {
                for j in (1..=chars.len()).rev() {
                    matches[j] = matches[j - 1] && chars[j - 1] == *c;
                }
                matches[0] = false;
            }
        }
    }
    matches[chars.len()]
}
