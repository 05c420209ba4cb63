//! Filter plans: what a principal may do with *every* resource of a type,
//! as one condition over the resource's attributes that a host application
//! can turn into a database query (`POST /v1/plan`, `cedargate plan --sql`).
//!
//! [`plan`] reads what typed partial evaluation left of the policies
//! ([`Residuals`]: principal, action and context known, resource unknown)
//! and answers a [`FilterPlan`]:
//!
//! ```json
//! {"decision": "always_allowed"}
//! {"decision": "always_denied"}
//! {"decision": "conditional", "condition": <condition>}
//! ```
//!
//! # The condition tree
//!
//! A condition is a JSON object. Boolean nodes have an `op` and `args`;
//! operands (*terms*) are one of three objects:
//!
//! | term | meaning |
//! |---|---|
//! | `{"var": "resource"}` | the resource itself (an entity; compare by type and id) |
//! | `{"attr": ["resource", "a", "b"]}` | the attribute path `resource.a.b`; a step may go through an entity the previous attribute refers to (`resource.org.perms` reads `perms` of the resource's `org` entity) |
//! | `{"value": V}` | a literal: JSON `true`/`false`, an integer, a string, an entity `{"type": "T", "id": "i"}`, an array (a set), or `{"record": {..}}` |
//!
//! | node | true when |
//! |---|---|
//! | `{"value": true}` / `{"value": false}` | always / never (only ever the whole condition) |
//! | `{"op": "and", "args": [c, ..]}`, `{"op": "or", ..}` | all / some of the conditions hold |
//! | `{"op": "not", "args": [atom]}` | the atomic test is false (see unknowns below) |
//! | `{"op": "==" \| "!=" \| "<" \| "<=" \| ">" \| ">=", "args": [t, t]}` | the comparison holds (ordering on integers only; entities compare by type and id) |
//! | `{"op": "like", "args": [t], "pattern": "a*b"}` | the string matches Cedar's pattern: `*` any run of characters, `\*` a literal `*`, `\\` a literal `\` |
//! | `{"op": "has", "args": [{"attr": [..]}]}` | every attribute along the path exists (a path through a missing entity does not) |
//! | `{"op": "in", "args": [t, {"entities": [E, ..]}]}` | the entity `t` (the resource, or an entity-valued attribute) is one of the `E`s or has one of them among its ancestors |
//! | `{"op": "one_of", "args": [t, {"values": [v, ..]}]}` | `t` equals one of the values, which are never sets (when `t` is a set-valued attribute: some element of it does) |
//! | `{"op": "contains", "args": [set, t]}` | the set contains `t` |
//! | `{"op": "contains_all" \| "contains_any", "args": [set, set]}` | the first set contains all / some of the second's elements |
//! | `{"op": "is_empty", "args": [set]}` | the set is empty |
//! | `{"op": "is", "args": [t], "entity_type": "T"}` | the entity `t` has type `T` |
//!
//! Only the resource is left in a condition: the principal, the action and
//! the context have been replaced by what they are. In particular
//! `principal in resource.x` becomes `one_of(resource.x, [the principal and
//! all its ancestors])`, and `principal.getTag(resource.k).f` becomes a case
//! split over the principal's tag keys (`resource.k == "key1" and …`).
//!
//! ## Missing attributes and errors: fail closed
//!
//! An atomic test (a comparison, `like`, `in`, `one_of`, `contains…`,
//! `is_empty`) whose operand reads an attribute that is absent (or goes
//! through an entity that does not exist) is *unknown*, as SQL compares a
//! `NULL`: the test is not true, **and neither is its `not`**. `and`/`or`
//! follow SQL's three-valued logic and a row matches only when the whole
//! condition is true. `has`, `is` and tests on `{"var": "resource"}` are
//! never unknown.
//!
//! The tree is in negation normal form (`not` only ever wraps an atomic
//! test), so a translator may equally treat an unknown test *and its
//! negation* as false. Cedar errors (an absent attribute or entity read
//! without a `has` guard, overflow, a statically erroring residual) deny
//! under cedargate's fail-closed decisions; the plan keeps that meaning
//! because it is built from two conditions per policy, "satisfied without
//! error" and "not satisfied, without error": a row matches when some permit
//! is satisfied, every permit evaluates without error, and every forbid is
//! not satisfied without error. An erroring subexpression satisfies
//! neither, so its rows never match, even under a `forbid` or a `!`.
//!
//! What cannot be expressed (extension values such as `decimal` or `ip`,
//! arithmetic or tags on the resource, attributes of an entity the
//! principal's entities lack) is a [`PlanError`], never an approximate plan.

use std::collections::BTreeMap;
use std::sync::Arc;

use cedar_policy::pst;
use cedar_policy::{Effect, Entities, EntityUid, EvalResult};
use serde::{Deserialize, Serialize};

use super::Residuals;

/// The answer to a filter plan query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum FilterPlan {
    /// Every resource of the type is allowed.
    AlwaysAllowed,
    /// No resource of the type is allowed.
    AlwaysDenied,
    /// Exactly the resources for which `condition` is true are allowed.
    Conditional {
        /// The condition over the resource (see the module documentation).
        condition: Condition,
    },
}

/// Why no plan could be made. The plan is never approximated instead.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The residual of a policy uses something the condition tree cannot express.
    #[error("policy `{policy}`: {what} cannot be expressed in a filter plan")]
    Unsupported {
        /// The policy id.
        policy: String,
        /// What was met.
        what: String,
    },
    /// The residual reads an entity the principal's entities do not hold.
    #[error(
        "policy `{policy}`: the entity {uid} is not among the principal's entities (its attributes, tags or ancestors are unknown)"
    )]
    UnknownEntity {
        /// The policy id.
        policy: String,
        /// The entity.
        uid: String,
    },
    /// A residual policy could not be read as a policy syntax tree.
    #[error("policy `{policy}`: {message}")]
    Residual {
        /// The policy id.
        policy: String,
        /// Cedar's message.
        message: String,
    },
}

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// `true` / `false`.
    Bool(bool),
    /// A 64-bit integer.
    Long(i64),
    /// A string.
    String(String),
    /// An entity.
    Entity {
        /// Entity type name, e.g. `Organization` or `App::Account`.
        ty: String,
        /// Entity id.
        id: String,
    },
    /// A set (sorted, without duplicates).
    Set(Vec<Value>),
    /// A record.
    Record(BTreeMap<String, Value>),
}

impl Value {
    fn set(mut items: Vec<Value>) -> Self {
        items.sort();
        items.dedup();
        Self::Set(items)
    }

    fn entity(uid: &EntityUid) -> Self {
        Self::Entity {
            ty: uid.type_name().to_string(),
            id: uid.id().unescaped().to_owned(),
        }
    }

    /// The value as JSON (see the module documentation).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::Bool(b) => json!(b),
            Self::Long(n) => json!(n),
            Self::String(s) => json!(s),
            Self::Entity { ty, id } => json!({"type": ty, "id": id}),
            Self::Set(items) => items.iter().map(Self::to_json).collect(),
            Self::Record(fields) => {
                let fields: serde_json::Map<_, _> = fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect();
                json!({ "record": fields })
            }
        }
    }

    /// Reads a value written by [`Value::to_json`].
    pub fn from_json(json: &serde_json::Value) -> Result<Self, String> {
        use serde_json::Value as J;
        Ok(match json {
            J::Bool(b) => Self::Bool(*b),
            J::Number(n) => Self::Long(
                n.as_i64()
                    .ok_or_else(|| format!("not a 64-bit integer: {n}"))?,
            ),
            J::String(s) => Self::String(s.clone()),
            J::Array(items) => Self::set(
                items
                    .iter()
                    .map(Self::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(map) => match (map.get("type"), map.get("id"), map.get("record")) {
                (Some(J::String(ty)), Some(J::String(id)), None) if map.len() == 2 => {
                    Self::Entity {
                        ty: ty.clone(),
                        id: id.clone(),
                    }
                }
                (None, None, Some(J::Object(fields))) if map.len() == 1 => Self::Record(
                    fields
                        .iter()
                        .map(|(k, v)| Ok((k.clone(), Self::from_json(v)?)))
                        .collect::<Result<_, String>>()?,
                ),
                _ => return Err(format!("not a value: {json}")),
            },
            J::Null => return Err("null is not a value".to_owned()),
        })
    }
}

/// An operand of an atomic test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// The resource itself.
    Resource,
    /// An attribute path from the resource (the names after `resource`).
    Attr(Vec<String>),
    /// A literal.
    Value(Value),
}

impl Term {
    fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Self::Resource => json!({"var": "resource"}),
            Self::Attr(path) => {
                let mut names = vec!["resource".to_owned()];
                names.extend(path.iter().cloned());
                json!({ "attr": names })
            }
            Self::Value(v) => json!({"value": v.to_json()}),
        }
    }

    fn from_json(json: &serde_json::Value) -> Result<Self, String> {
        let map = json.as_object().filter(|m| m.len() == 1);
        match map.and_then(|m| m.iter().next()) {
            Some((k, v)) if k == "var" && v == "resource" => Ok(Self::Resource),
            Some((k, serde_json::Value::Array(names))) if k == "attr" => {
                let names = names
                    .iter()
                    .map(|n| n.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("attribute names must be strings: {json}"))?;
                match names.split_first() {
                    Some((first, rest)) if first == "resource" && !rest.is_empty() => {
                        Ok(Self::Attr(rest.to_vec()))
                    }
                    _ => Err(format!(
                        "an attribute path starts with \"resource\": {json}"
                    )),
                }
            }
            Some((k, v)) if k == "value" => Value::from_json(v).map(Self::Value),
            _ => Err(format!("not a term: {json}")),
        }
    }

    fn path(&self) -> Option<&[String]> {
        match self {
            Self::Attr(p) => Some(p),
            _ => None,
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator's symbol in the tree (and in SQL, but for `!=`).
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }

    fn negated(self) -> Self {
        match self {
            Self::Eq => Self::Ne,
            Self::Ne => Self::Eq,
            Self::Lt => Self::Ge,
            Self::Le => Self::Gt,
            Self::Gt => Self::Le,
            Self::Ge => Self::Lt,
        }
    }

    fn from_symbol(s: &str) -> Option<Self> {
        [Self::Eq, Self::Ne, Self::Lt, Self::Le, Self::Gt, Self::Ge]
            .into_iter()
            .find(|op| op.symbol() == s)
    }
}

/// A set operation between two terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// `contains`: the first term (a set) contains the second.
    Contains,
    /// `contains_all`: the first set contains every element of the second.
    ContainsAll,
    /// `contains_any`: the sets share an element.
    ContainsAny,
}

impl SetOp {
    /// The operator's name in the tree.
    pub fn name(self) -> &'static str {
        match self {
            Self::Contains => "contains",
            Self::ContainsAll => "contains_all",
            Self::ContainsAny => "contains_any",
        }
    }
}

/// A filter condition over the resource (see the module documentation for
/// its JSON form and its semantics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "serde_json::Value", try_from = "serde_json::Value")]
pub enum Condition {
    /// Always true / always false.
    Bool(bool),
    /// All hold.
    And(Vec<Condition>),
    /// Some holds.
    Or(Vec<Condition>),
    /// The atomic test is false (not unknown).
    Not(Box<Condition>),
    /// `left op right`.
    Compare(CmpOp, Term, Term),
    /// The string term matches the pattern (Cedar syntax: `*`, `\*`, `\\`).
    Like(Term, String),
    /// Every attribute along the path exists.
    Has(Vec<String>),
    /// The entity term is one of the entities or has one among its ancestors.
    In(Term, Vec<Value>),
    /// The term equals one of the values (a set term: some element does).
    OneOf(Term, Vec<Value>),
    /// A set operation.
    Set(SetOp, Term, Term),
    /// The set term is empty.
    IsEmpty(Term),
    /// The entity term has this entity type.
    Is(Term, String),
}

impl Condition {
    fn is_true(&self) -> bool {
        matches!(self, Self::Bool(true))
    }

    fn is_false(&self) -> bool {
        matches!(self, Self::Bool(false))
    }

    /// Conjunction, flattened and simplified.
    pub fn and(items: impl IntoIterator<Item = Condition>) -> Self {
        let mut out: Vec<Condition> = Vec::new();
        for item in items {
            match item {
                Self::Bool(true) => {}
                Self::Bool(false) => return Self::Bool(false),
                Self::And(inner) => {
                    for c in inner {
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
                c => {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
        // Within a conjunction, the other conjuncts only matter where an
        // atomic conjunct is true: simplify them under that assumption. (The
        // tree is in negation normal form and a row matches only where it is
        // true, so this keeps which rows match.)
        let mut changed = false;
        for i in 0..out.len() {
            if out[i].is_atomic() {
                for j in 0..out.len() {
                    if i != j {
                        let assumed = out[j].assume(&out[i]);
                        if assumed != out[j] {
                            out[j] = assumed;
                            changed = true;
                        }
                    }
                }
            }
        }
        if changed {
            return Self::and(out);
        }
        match out.len() {
            0 => Self::Bool(true),
            1 => out.pop().unwrap_or(Self::Bool(true)),
            _ => Self::And(out),
        }
    }

    fn is_atomic(&self) -> bool {
        !matches!(self, Self::And(_) | Self::Or(_) | Self::Bool(_))
    }

    /// This condition where the atomic test `fact` is true.
    fn assume(&self, fact: &Condition) -> Self {
        match self {
            Self::And(items) => Self::and(items.iter().map(|c| c.assume(fact))),
            Self::Or(items) => Self::or(items.iter().map(|c| c.assume(fact))),
            Self::Bool(_) => self.clone(),
            atom if atom == fact => Self::Bool(true),
            atom if *atom == fact.clone().negate_atom() => Self::Bool(false),
            Self::Has(path) if fact.paths().iter().any(|read| read.starts_with(path)) => {
                // A test that is true read its paths: they exist.
                Self::Bool(true)
            }
            atom => {
                // `t == v` decides other equalities of `t` to literals.
                let Self::Compare(CmpOp::Eq, t, Term::Value(v)) = fact else {
                    return atom.clone();
                };
                match atom {
                    Self::Compare(op @ (CmpOp::Eq | CmpOp::Ne), u, Term::Value(w)) if u == t => {
                        Self::Bool((w == v) == (*op == CmpOp::Eq))
                    }
                    Self::OneOf(u, values) if u == t && !matches!(v, Value::Set(_)) => {
                        Self::Bool(values.contains(v))
                    }
                    Self::Not(inner) => match inner.assume(fact) {
                        Self::Bool(b) => Self::Bool(!b),
                        _ => atom.clone(),
                    },
                    _ => atom.clone(),
                }
            }
        }
    }

    /// Disjunction, flattened and simplified.
    pub fn or(items: impl IntoIterator<Item = Condition>) -> Self {
        let mut out: Vec<Condition> = Vec::new();
        for item in items {
            match item {
                Self::Bool(false) => {}
                Self::Bool(true) => return Self::Bool(true),
                Self::Or(inner) => {
                    for c in inner {
                        if !out.contains(&c) {
                            out.push(c);
                        }
                    }
                }
                c => {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
        // `a or not a` (an atomic test and its negation) holds exactly where
        // the test is not unknown: where the paths it reads exist.
        let mut i = 0;
        while i < out.len() {
            let negation = out[i].clone().negate_atom();
            let atomic = !matches!(out[i], Self::And(_) | Self::Or(_) | Self::Bool(_));
            match out.iter().position(|c| *c == negation) {
                Some(j) if atomic => {
                    let defined =
                        Self::and(out[i].paths().into_iter().map(|p| Self::Has(p.to_vec())));
                    let (first, second) = (i.min(j), i.max(j));
                    out.remove(second);
                    out[first] = defined;
                    return Self::or(out);
                }
                _ => i += 1,
            }
        }
        match out.len() {
            0 => Self::Bool(false),
            1 => out.pop().unwrap_or(Self::Bool(false)),
            _ => Self::Or(out),
        }
    }

    /// The negation of an atomic test (comparisons flip their operator).
    fn negate_atom(self) -> Self {
        match self {
            Self::Bool(b) => Self::Bool(!b),
            Self::Compare(op, l, r) => Self::Compare(op.negated(), l, r),
            Self::Not(inner) => *inner,
            atom => Self::Not(Box::new(atom)),
        }
    }

    /// The condition as JSON (see the module documentation).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let node = |op: &str, args: Vec<serde_json::Value>| json!({"op": op, "args": args});
        match self {
            Self::Bool(b) => json!({"value": b}),
            Self::And(items) => node("and", items.iter().map(Self::to_json).collect()),
            Self::Or(items) => node("or", items.iter().map(Self::to_json).collect()),
            Self::Not(inner) => node("not", vec![inner.to_json()]),
            Self::Compare(op, l, r) => node(op.symbol(), vec![l.to_json(), r.to_json()]),
            Self::Like(t, pattern) => {
                json!({"op": "like", "args": [t.to_json()], "pattern": pattern})
            }
            Self::Has(path) => node("has", vec![Term::Attr(path.clone()).to_json()]),
            Self::In(t, entities) => node(
                "in",
                vec![
                    t.to_json(),
                    json!({"entities": entities.iter().map(Value::to_json).collect::<Vec<_>>()}),
                ],
            ),
            Self::OneOf(t, values) => node(
                "one_of",
                vec![
                    t.to_json(),
                    json!({"values": values.iter().map(Value::to_json).collect::<Vec<_>>()}),
                ],
            ),
            Self::Set(op, a, b) => node(op.name(), vec![a.to_json(), b.to_json()]),
            Self::IsEmpty(t) => node("is_empty", vec![t.to_json()]),
            Self::Is(t, ty) => json!({"op": "is", "args": [t.to_json()], "entity_type": ty}),
        }
    }

    /// Reads a condition written by [`Condition::to_json`].
    pub fn from_json(json: &serde_json::Value) -> Result<Self, String> {
        let Some(map) = json.as_object() else {
            return Err(format!("a condition is an object: {json}"));
        };
        if let Some(value) = map.get("value") {
            return match value {
                serde_json::Value::Bool(b) if map.len() == 1 => Ok(Self::Bool(*b)),
                _ => Err(format!("a literal condition is true or false: {json}")),
            };
        }
        let op = map
            .get("op")
            .and_then(|o| o.as_str())
            .ok_or_else(|| format!("a condition has an \"op\": {json}"))?;
        let args = map
            .get("args")
            .and_then(|a| a.as_array())
            .ok_or_else(|| format!("a condition has \"args\": {json}"))?;
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("`{op}` takes {n} argument(s): {json}"))
            }
        };
        let term = |i: usize| Term::from_json(&args[i]);
        let list = |i: usize, key: &str| -> Result<Vec<Value>, String> {
            args[i]
                .get(key)
                .and_then(|l| l.as_array())
                .ok_or_else(|| format!("`{op}` takes {{\"{key}\": [..]}} second: {json}"))?
                .iter()
                .map(Value::from_json)
                .collect()
        };
        let string = |key: &str| {
            map.get(key)
                .and_then(|s| s.as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("`{op}` needs a string \"{key}\": {json}"))
        };
        Ok(match op {
            "and" | "or" => {
                let items = args
                    .iter()
                    .map(Self::from_json)
                    .collect::<Result<Vec<_>, _>>()?;
                if op == "and" {
                    Self::And(items)
                } else {
                    Self::Or(items)
                }
            }
            "not" => {
                arity(1)?;
                Self::Not(Box::new(Self::from_json(&args[0])?))
            }
            "like" => {
                arity(1)?;
                Self::Like(term(0)?, string("pattern")?)
            }
            "has" => {
                arity(1)?;
                match term(0)? {
                    Term::Attr(path) => Self::Has(path),
                    _ => return Err(format!("`has` takes an attribute path: {json}")),
                }
            }
            "in" => {
                arity(2)?;
                Self::In(term(0)?, list(1, "entities")?)
            }
            "one_of" => {
                arity(2)?;
                Self::OneOf(term(0)?, list(1, "values")?)
            }
            "contains" | "contains_all" | "contains_any" => {
                arity(2)?;
                let set_op = match op {
                    "contains" => SetOp::Contains,
                    "contains_all" => SetOp::ContainsAll,
                    _ => SetOp::ContainsAny,
                };
                Self::Set(set_op, term(0)?, term(1)?)
            }
            "is_empty" => {
                arity(1)?;
                Self::IsEmpty(term(0)?)
            }
            "is" => {
                arity(1)?;
                Self::Is(term(0)?, string("entity_type")?)
            }
            other => match CmpOp::from_symbol(other) {
                Some(cmp) => {
                    arity(2)?;
                    Self::Compare(cmp, term(0)?, term(1)?)
                }
                None => return Err(format!("unknown op `{other}`")),
            },
        })
    }

    /// The attribute paths an atomic test reads (its definedness).
    fn paths(&self) -> Vec<&[String]> {
        let terms: Vec<&Term> = match self {
            Self::Compare(_, a, b) | Self::Set(_, a, b) => vec![a, b],
            Self::Like(t, _)
            | Self::In(t, _)
            | Self::OneOf(t, _)
            | Self::IsEmpty(t)
            | Self::Is(t, _) => {
                vec![t]
            }
            Self::Not(inner) if !matches!(**inner, Self::Has(_)) => return inner.paths(),
            _ => Vec::new(),
        };
        terms.into_iter().filter_map(Term::path).collect()
    }
}

impl From<Condition> for serde_json::Value {
    fn from(c: Condition) -> Self {
        c.to_json()
    }
}

impl TryFrom<serde_json::Value> for Condition {
    type Error = String;
    fn try_from(json: serde_json::Value) -> Result<Self, String> {
        Self::from_json(&json)
    }
}

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

impl Evaluator<'_> {
    fn unsupported<T>(&self, what: impl Into<String>) -> R<T> {
        Err(PlanError::Unsupported {
            policy: self.policy.clone(),
            what: what.into(),
        })
    }

    fn policy(&self, policy: &pst::Policy) -> R<B> {
        let body = policy.body();
        let mut b = B::constant(true);
        match &body.principal {
            pst::PrincipalConstraint::Any => {}
            other => {
                let known = self.principal_scope(other)?;
                b = b.and(B::constant(known));
            }
        }
        if !matches!(body.action, pst::ActionConstraint::Any) {
            return self.unsupported("an action scope in a residual policy");
        }
        let resource = match &body.resource {
            pst::ResourceConstraint::Any => B::constant(true),
            pst::ResourceConstraint::Eq(e) => B::atom(Condition::Compare(
                CmpOp::Eq,
                Term::Resource,
                Term::Value(self.scope_entity(e)?),
            )),
            pst::ResourceConstraint::In(e) => {
                B::atom(Condition::In(Term::Resource, vec![self.scope_entity(e)?]))
            }
            pst::ResourceConstraint::Is(ty) => {
                B::atom(Condition::Is(Term::Resource, ty.to_string()))
            }
            pst::ResourceConstraint::IsIn(ty, e) => {
                B::atom(Condition::Is(Term::Resource, ty.to_string())).and(B::atom(Condition::In(
                    Term::Resource,
                    vec![self.scope_entity(e)?],
                )))
            }
        };
        b = b.and(resource);
        for clause in body.clauses() {
            let (expr, negate) = match clause {
                pst::Clause::When(e) => (e, false),
                pst::Clause::Unless(e) => (e, true),
            };
            // A false scope or clause stops evaluation (no error from what follows).
            if b.t.is_false() && b.d.is_true() {
                return Ok(b);
            }
            let c = self.to_bool(self.eval(expr)?);
            b = b.and(if negate { c.not() } else { c });
        }
        Ok(b)
    }

    fn scope_entity(&self, e: &pst::EntityOrSlot) -> R<Value> {
        match e {
            pst::EntityOrSlot::Entity(uid) => Ok(pst_uid(uid)),
            pst::EntityOrSlot::Slot(_) => self.unsupported("a template slot"),
        }
    }

    fn principal_scope(&self, c: &pst::PrincipalConstraint) -> R<bool> {
        let me = Value::entity(self.principal);
        let is = |ty: &pst::EntityType| ty.to_string() == self.principal.type_name().to_string();
        Ok(match c {
            pst::PrincipalConstraint::Any => true,
            pst::PrincipalConstraint::Eq(e) => self.scope_entity(e)? == me,
            pst::PrincipalConstraint::In(e) => self.entity_in(&me, &self.scope_entity(e)?)?,
            pst::PrincipalConstraint::Is(ty) => is(ty),
            pst::PrincipalConstraint::IsIn(ty, e) => {
                is(ty) && self.entity_in(&me, &self.scope_entity(e)?)?
            }
        })
    }

    /// The entity `uid` as the principal's entities hold it.
    fn lookup(&self, ty: &str, id: &str) -> R<Option<&cedar_policy::Entity>> {
        let uid = uid_of(ty, id).ok_or_else(|| PlanError::Unsupported {
            policy: self.policy.clone(),
            what: format!("the entity type name `{ty}`"),
        })?;
        Ok(self.entities.get(&uid))
    }

    fn known_entity(&self, ty: &str, id: &str) -> R<&cedar_policy::Entity> {
        self.lookup(ty, id)?
            .ok_or_else(|| PlanError::UnknownEntity {
                policy: self.policy.clone(),
                uid: format!("{ty}::{:?}", id),
            })
    }

    /// The entity itself and all its ancestors. The principal's ancestor
    /// set is complete (the engine hands it in closed); any other
    /// entity's is trusted only when every ancestor is among the
    /// principal's entities, or more could be in the store.
    fn self_and_ancestors(&self, v: &Value) -> R<Vec<Value>> {
        let Value::Entity { ty, id } = v else {
            return Ok(Vec::new());
        };
        let mut out = vec![v.clone()];
        let Some(uid) = uid_of(ty, id) else {
            return self.unsupported(format!("the entity type name `{ty}`"));
        };
        match self.entities.ancestors(&uid) {
            Some(ancestors) => {
                for a in ancestors {
                    if &uid != self.principal && self.entities.get(a).is_none() {
                        return Err(PlanError::UnknownEntity {
                            policy: self.policy.clone(),
                            uid: a.to_string(),
                        });
                    }
                    out.push(Value::entity(a));
                }
            }
            // Cedar reads an absent principal as an entity without parents.
            None if &uid == self.principal => {}
            None => {
                return Err(PlanError::UnknownEntity {
                    policy: self.policy.clone(),
                    uid: uid.to_string(),
                });
            }
        }
        // Sorted: the same query gives the same tree.
        out.sort();
        Ok(out)
    }

    fn entity_in(&self, left: &Value, right: &Value) -> R<bool> {
        let family = self.self_and_ancestors(left)?;
        Ok(match right {
            Value::Set(items) => items.iter().any(|i| family.contains(i)),
            e => family.contains(e),
        })
    }

    fn to_bool(&self, s: Sym) -> B {
        match s {
            Sym::Val(Value::Bool(b)) => B::constant(b),
            Sym::Val(_) | Sym::Err => B::error(),
            Sym::Bool(b) => *b,
            Sym::Term(t) => {
                let d = match &t {
                    Term::Attr(p) => Condition::Has(p.clone()),
                    _ => Condition::Bool(true),
                };
                B {
                    t: Condition::Compare(CmpOp::Eq, t.clone(), Term::Value(Value::Bool(true))),
                    f: Condition::Compare(CmpOp::Eq, t, Term::Value(Value::Bool(false))),
                    d,
                }
            }
            Sym::Cases(cases) => {
                let mut t = Vec::new();
                let mut f = Vec::new();
                let mut d = Vec::new();
                for (guard, s) in cases {
                    let b = self.to_bool(s);
                    t.push(Condition::and([guard.clone(), b.t]));
                    f.push(Condition::and([guard.clone(), b.f]));
                    d.push(Condition::and([guard, b.d]));
                }
                B {
                    t: Condition::or(t),
                    f: Condition::or(f),
                    d: Condition::or(d),
                }
            }
        }
    }

    /// Applies `op` to each case of `s`.
    fn map1(&self, s: Sym, op: &dyn Fn(Sym) -> R<Sym>) -> R<Sym> {
        match s {
            Sym::Cases(cases) => {
                let mut out = Vec::new();
                for (guard, s) in cases {
                    push_case(&mut out, guard, self.map1(s, op)?);
                }
                Ok(Sym::Cases(out))
            }
            s => op(s),
        }
    }

    fn map2(&self, a: Sym, b: Sym, op: &dyn Fn(Sym, Sym) -> R<Sym>) -> R<Sym> {
        match (a, b) {
            (Sym::Cases(cases), b) => {
                let mut out = Vec::new();
                for (guard, s) in cases {
                    push_case(&mut out, guard, self.map2(s, b.clone(), op)?);
                }
                Ok(Sym::Cases(out))
            }
            (a, Sym::Cases(cases)) => {
                let mut out = Vec::new();
                for (guard, s) in cases {
                    push_case(&mut out, guard, self.map2(a.clone(), s, op)?);
                }
                Ok(Sym::Cases(out))
            }
            (a, b) => op(a, b),
        }
    }

    fn eval(&self, e: &pst::Expr) -> R<Sym> {
        use pst::Expr as E;
        Ok(match e {
            E::Literal(l) => Sym::Val(match l {
                pst::Literal::Bool(b) => Value::Bool(*b),
                pst::Literal::Long(n) => Value::Long(*n),
                pst::Literal::String(s) => Value::String(s.to_string()),
                pst::Literal::EntityUID(uid) => pst_uid(uid),
                _ => return self.unsupported("a literal of an unknown kind"),
            }),
            E::Var(pst::Var::Principal) => Sym::Val(Value::entity(self.principal)),
            E::Var(pst::Var::Resource) => Sym::Term(Term::Resource),
            E::Var(v) => return self.unsupported(format!("the variable {v:?} left unknown")),
            E::ResidualError => Sym::Err,
            E::UnaryOp { op, expr } => {
                let arg = self.eval(expr)?;
                match op {
                    pst::UnaryOp::Not => Sym::boolean(self.to_bool(arg).not()),
                    pst::UnaryOp::Neg => self.map1(arg, &|a| match a {
                        Sym::Val(Value::Long(n)) => Ok(n
                            .checked_neg()
                            .map_or(Sym::Err, |n| Sym::Val(Value::Long(n)))),
                        Sym::Err | Sym::Val(_) => Ok(Sym::Err),
                        _ => self.unsupported("arithmetic on the resource"),
                    })?,
                    pst::UnaryOp::IsEmpty => self.map1(arg, &|a| match a {
                        Sym::Val(Value::Set(items)) => Ok(Sym::bool(items.is_empty())),
                        Sym::Term(t) => Ok(Sym::boolean(B::atom(Condition::IsEmpty(t)))),
                        Sym::Err | Sym::Val(_) => Ok(Sym::Err),
                        Sym::Bool(_) | Sym::Cases(_) => Ok(Sym::Err),
                    })?,
                    other => return self.unsupported(format!("the extension function `{other}`")),
                }
            }
            E::BinaryOp { op, left, right } => return self.binary(*op, left, right),
            E::GetAttr { expr, attr } => {
                let base = self.eval(expr)?;
                self.map1(base, &|b| self.get_attr(b, attr))?
            }
            E::HasAttr { expr, attrs } => {
                let base = self.eval(expr)?;
                let attrs: Vec<String> = attrs.iter().map(ToString::to_string).collect();
                self.map1(base, &|b| self.has_attr(b, &attrs))?
            }
            E::Like { expr, pattern } => {
                let base = self.eval(expr)?;
                self.map1(base, &|b| match b {
                    Sym::Val(Value::String(s)) => Ok(Sym::bool(wildcard_match(pattern, &s))),
                    Sym::Term(t) => Ok(Sym::boolean(B::atom(Condition::Like(
                        t,
                        pattern_text(pattern),
                    )))),
                    _ => Ok(Sym::Err),
                })?
            }
            E::Is {
                expr,
                entity_type,
                in_expr,
            } => {
                let ty = entity_type.to_string();
                let base = self.eval(expr)?;
                let is = self.map1(base.clone(), &|b| match b {
                    Sym::Val(Value::Entity { ty: t, .. }) => Ok(Sym::bool(t == ty)),
                    Sym::Term(t) => Ok(Sym::boolean(B::atom(Condition::Is(t, ty.clone())))),
                    _ => Ok(Sym::Err),
                })?;
                match in_expr {
                    None => is,
                    Some(in_expr) => {
                        let is = self.to_bool(is);
                        if is.t.is_false() && is.d.is_true() {
                            return Ok(Sym::bool(false));
                        }
                        let right = self.eval(in_expr)?;
                        let inn = self.map2(base, right, &|a, b| self.in_op(a, b))?;
                        Sym::boolean(is.and(self.to_bool(inn)))
                    }
                }
            }
            E::IfThenElse {
                cond,
                then_expr,
                else_expr,
            } => {
                let c = self.to_bool(self.eval(cond)?);
                if c.d.is_true() && (c.t.is_true() || c.f.is_true()) {
                    return self.eval(if c.t.is_true() { then_expr } else { else_expr });
                }
                let a = self.eval(then_expr)?;
                let b = self.eval(else_expr)?;
                if is_boolean(&a) && is_boolean(&b) {
                    Sym::boolean(B::ite(c, self.to_bool(a), self.to_bool(b)))
                } else {
                    let mut out = Vec::new();
                    push_case(&mut out, c.t, a);
                    push_case(&mut out, c.f, b);
                    Sym::Cases(out)
                }
            }
            E::Set(items) => {
                let mut values = Vec::new();
                for item in items {
                    match self.eval(item)? {
                        Sym::Val(v) => values.push(v),
                        Sym::Err => return Ok(Sym::Err),
                        _ => {
                            return self
                                .unsupported("a set literal of resource-dependent elements");
                        }
                    }
                }
                Sym::Val(Value::set(values))
            }
            E::Record(fields) => {
                let mut values = BTreeMap::new();
                for (k, item) in fields {
                    match self.eval(item)? {
                        Sym::Val(v) => {
                            values.insert(k.clone(), v);
                        }
                        Sym::Err => return Ok(Sym::Err),
                        _ => {
                            return self
                                .unsupported("a record literal of resource-dependent fields");
                        }
                    }
                }
                Sym::Val(Value::Record(values))
            }
            other => return self.unsupported(format!("the expression `{other}`")),
        })
    }

    fn binary(&self, op: pst::BinaryOp, left: &Arc<pst::Expr>, right: &Arc<pst::Expr>) -> R<Sym> {
        use pst::BinaryOp as O;
        if matches!(op, O::And | O::Or) {
            let l = self.to_bool(self.eval(left)?);
            // Cedar short-circuits: the right operand is not evaluated.
            if l.d.is_true() && (l.t.is_true() || l.f.is_true()) {
                let stop = if op == O::And {
                    l.f.is_true()
                } else {
                    l.t.is_true()
                };
                if stop {
                    return Ok(Sym::bool(op == O::Or));
                }
            }
            if l.d.is_false() {
                return Ok(Sym::Err);
            }
            let r = self.to_bool(self.eval(right)?);
            return Ok(Sym::boolean(if op == O::And { l.and(r) } else { l.or(r) }));
        }
        let a = self.eval(left)?;
        let b = self.eval(right)?;
        self.map2(a, b, &|a, b| self.binary_on(op, a, b))
    }

    fn binary_on(&self, op: pst::BinaryOp, a: Sym, b: Sym) -> R<Sym> {
        use pst::BinaryOp as O;
        if matches!(a, Sym::Err) || matches!(b, Sym::Err) {
            return Ok(Sym::Err);
        }
        if matches!(a, Sym::Bool(_)) || matches!(b, Sym::Bool(_)) {
            return self.unsupported(format!("a resource-dependent boolean operand of `{op}`"));
        }
        let cmp = match op {
            O::Eq => Some(CmpOp::Eq),
            O::NotEq => Some(CmpOp::Ne),
            O::Less => Some(CmpOp::Lt),
            O::LessEq => Some(CmpOp::Le),
            O::Greater => Some(CmpOp::Gt),
            O::GreaterEq => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(cmp) = cmp {
            return self.compare(cmp, a, b);
        }
        match op {
            O::Add | O::Sub | O::Mul => match (a, b) {
                (Sym::Val(Value::Long(x)), Sym::Val(Value::Long(y))) => {
                    let r = match op {
                        O::Add => x.checked_add(y),
                        O::Sub => x.checked_sub(y),
                        _ => x.checked_mul(y),
                    };
                    Ok(r.map_or(Sym::Err, |n| Sym::Val(Value::Long(n))))
                }
                (Sym::Val(_), Sym::Val(_)) => Ok(Sym::Err),
                _ => self.unsupported("arithmetic on the resource"),
            },
            O::In => self.in_op(a, b),
            O::Contains | O::ContainsAll | O::ContainsAny => self.set_op(op, a, b),
            O::GetTag | O::HasTag => self.tag_op(op == O::GetTag, a, b),
            other => self.unsupported(format!("the extension function `{other}`")),
        }
    }

    fn compare(&self, cmp: CmpOp, a: Sym, b: Sym) -> R<Sym> {
        match (a, b) {
            (Sym::Val(x), Sym::Val(y)) => Ok(match cmp {
                CmpOp::Eq => Sym::bool(x == y),
                CmpOp::Ne => Sym::bool(x != y),
                _ => match (x, y) {
                    (Value::Long(x), Value::Long(y)) => Sym::bool(match cmp {
                        CmpOp::Lt => x < y,
                        CmpOp::Le => x <= y,
                        CmpOp::Gt => x > y,
                        _ => x >= y,
                    }),
                    _ => Sym::Err,
                },
            }),
            (a, b) => {
                let (l, r) = (self.term(a)?, self.term(b)?);
                if !matches!(cmp, CmpOp::Eq | CmpOp::Ne) {
                    for t in [&l, &r] {
                        if let Term::Value(v) = t
                            && !matches!(v, Value::Long(_))
                        {
                            return self.unsupported(format!("ordering on {}", v.to_json()));
                        }
                    }
                }
                // Terms first, literals second: `resource.x == 1`.
                let (l, r, cmp) = match (&l, cmp) {
                    (Term::Value(_), CmpOp::Lt) => (r, l, CmpOp::Gt),
                    (Term::Value(_), CmpOp::Le) => (r, l, CmpOp::Ge),
                    (Term::Value(_), CmpOp::Gt) => (r, l, CmpOp::Lt),
                    (Term::Value(_), CmpOp::Ge) => (r, l, CmpOp::Le),
                    (Term::Value(_), _) => (r, l, cmp),
                    _ => (l, r, cmp),
                };
                Ok(Sym::boolean(B::atom(Condition::Compare(cmp, l, r))))
            }
        }
    }

    fn term(&self, s: Sym) -> R<Term> {
        match s {
            Sym::Val(v) => Ok(Term::Value(v)),
            Sym::Term(t) => Ok(t),
            _ => self.unsupported("a resource-dependent boolean used as a value"),
        }
    }

    fn in_op(&self, a: Sym, b: Sym) -> R<Sym> {
        match (a, b) {
            (Sym::Err, _) | (_, Sym::Err) => Ok(Sym::Err),
            (Sym::Val(l @ Value::Entity { .. }), Sym::Val(r)) => match &r {
                Value::Entity { .. } => Ok(Sym::bool(self.entity_in(&l, &r)?)),
                Value::Set(items) if items.iter().all(|i| matches!(i, Value::Entity { .. })) => {
                    Ok(Sym::bool(self.entity_in(&l, &r)?))
                }
                _ => Ok(Sym::Err),
            },
            (Sym::Val(_), Sym::Val(_)) => Ok(Sym::Err),
            // `principal in resource.x`: resource.x is the principal or one of its ancestors.
            (Sym::Val(l @ Value::Entity { .. }), Sym::Term(t)) => {
                let family = self.self_and_ancestors(&l)?;
                Ok(Sym::boolean(B::atom(Condition::OneOf(t, family))))
            }
            (Sym::Val(_), Sym::Term(_)) => Ok(Sym::Err),
            (Sym::Term(t), Sym::Val(r)) => {
                let entities = match r {
                    e @ Value::Entity { .. } => vec![e],
                    Value::Set(items)
                        if items.iter().all(|i| matches!(i, Value::Entity { .. })) =>
                    {
                        items
                    }
                    _ => return Ok(Sym::Err),
                };
                Ok(Sym::boolean(B::atom(Condition::In(t, entities))))
            }
            _ => self.unsupported("`in` between two resource-dependent operands"),
        }
    }

    fn set_op(&self, op: pst::BinaryOp, a: Sym, b: Sym) -> R<Sym> {
        use pst::BinaryOp as O;
        match (a, b) {
            (Sym::Val(Value::Set(items)), Sym::Val(v)) => Ok(match (op, v) {
                (O::Contains, v) => Sym::bool(items.contains(&v)),
                (O::ContainsAll, Value::Set(other)) => {
                    Sym::bool(other.iter().all(|o| items.contains(o)))
                }
                (O::ContainsAny, Value::Set(other)) => {
                    Sym::bool(other.iter().any(|o| items.contains(o)))
                }
                _ => Sym::Err,
            }),
            (Sym::Val(_), Sym::Val(_)) => Ok(Sym::Err),
            // `[known].contains(resource…)`: the term is one of them.
            (Sym::Val(Value::Set(items)), Sym::Term(t)) if op == O::Contains => {
                if items.iter().any(|i| matches!(i, Value::Set(_))) {
                    return self.unsupported("a set of sets");
                }
                Ok(Sym::boolean(B::atom(one_of(t, items))))
            }
            (Sym::Val(v @ Value::Set(_)), Sym::Term(t)) => {
                let set_op = if op == O::ContainsAll {
                    SetOp::ContainsAll
                } else {
                    SetOp::ContainsAny
                };
                Ok(Sym::boolean(B::atom(Condition::Set(
                    set_op,
                    Term::Value(v),
                    t,
                ))))
            }
            (Sym::Val(_), Sym::Term(_)) => Ok(Sym::Err),
            (Sym::Term(t), b) => {
                let other = self.term(b)?;
                let set_op = match op {
                    O::Contains => SetOp::Contains,
                    O::ContainsAll => SetOp::ContainsAll,
                    _ => SetOp::ContainsAny,
                };
                if set_op != SetOp::Contains
                    && matches!(&other, Term::Value(v) if !matches!(v, Value::Set(_)))
                {
                    return Ok(Sym::Err);
                }
                Ok(Sym::boolean(B::atom(Condition::Set(set_op, t, other))))
            }
            _ => self.unsupported(format!("`{op}` on these operands")),
        }
    }

    fn tag_op(&self, get: bool, a: Sym, b: Sym) -> R<Sym> {
        let (ty, id) = match &a {
            Sym::Val(Value::Entity { ty, id }) => (ty.clone(), id.clone()),
            Sym::Val(_) => return Ok(Sym::Err),
            _ => return self.unsupported("tags of the resource"),
        };
        let entity = self.known_entity(&ty, &id)?;
        match b {
            Sym::Val(Value::String(key)) => Ok(match entity.tag(&key) {
                None if get => Sym::Err,
                None => Sym::bool(false),
                Some(_) if !get => Sym::bool(true),
                Some(v) => self.known_value(v)?,
            }),
            Sym::Val(_) => Ok(Sym::Err),
            Sym::Term(key) => {
                let mut keys: Vec<(String, Result<EvalResult, _>)> =
                    entity.tags().map(|(k, v)| (k.to_owned(), v)).collect();
                keys.sort_by(|x, y| x.0.cmp(&y.0));
                if !get {
                    let values = keys.into_iter().map(|(k, _)| Value::String(k)).collect();
                    return Ok(Sym::boolean(B::atom(one_of(key, values))));
                }
                // One case per tag key; a key the entity lacks is an error.
                let mut out = Vec::new();
                for (k, v) in keys {
                    let guard =
                        Condition::Compare(CmpOp::Eq, key.clone(), Term::Value(Value::String(k)));
                    push_case(&mut out, guard, self.known_value(v)?);
                }
                Ok(Sym::Cases(out))
            }
            _ => self.unsupported("a tag key that is a resource-dependent boolean"),
        }
    }

    fn known_value(&self, v: Result<EvalResult, cedar_policy::PartialValueToValueError>) -> R<Sym> {
        match v {
            Ok(v) => self.value(&v).map(Sym::Val),
            Err(_) => self.unsupported("an unknown attribute value"),
        }
    }

    fn value(&self, v: &EvalResult) -> R<Value> {
        Ok(match v {
            EvalResult::Bool(b) => Value::Bool(*b),
            EvalResult::Long(n) => Value::Long(*n),
            EvalResult::String(s) => Value::String(s.clone()),
            EvalResult::EntityUid(uid) => Value::entity(uid),
            EvalResult::Set(items) => {
                Value::set(items.iter().map(|i| self.value(i)).collect::<R<_>>()?)
            }
            EvalResult::Record(fields) => Value::Record(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.value(v)?)))
                    .collect::<R<_>>()?,
            ),
            EvalResult::ExtensionValue(s) => {
                return self.unsupported(format!("the extension value `{s}`"));
            }
        })
    }

    fn get_attr(&self, base: Sym, attr: &str) -> R<Sym> {
        Ok(match base {
            Sym::Val(Value::Record(fields)) => fields.get(attr).cloned().map_or(Sym::Err, Sym::Val),
            Sym::Val(Value::Entity { ty, id }) => {
                let entity = self.known_entity(&ty, &id)?;
                match entity.attr(attr) {
                    None => Sym::Err,
                    Some(v) => self.known_value(v)?,
                }
            }
            Sym::Val(_) | Sym::Err => Sym::Err,
            Sym::Term(Term::Resource) => Sym::Term(Term::Attr(vec![attr.to_owned()])),
            Sym::Term(Term::Attr(mut path)) => {
                path.push(attr.to_owned());
                Sym::Term(Term::Attr(path))
            }
            Sym::Term(Term::Value(v)) => return self.get_attr(Sym::Val(v), attr),
            Sym::Bool(_) | Sym::Cases(_) => Sym::Err,
        })
    }

    fn has_attr(&self, base: Sym, attrs: &[String]) -> R<Sym> {
        Ok(match base {
            Sym::Val(v) => {
                // `e has a.b` is `e has a && e.a has b`.
                let mut current = v;
                for attr in attrs {
                    let next = match &current {
                        Value::Record(fields) => fields.get(attr).cloned(),
                        Value::Entity { ty, id } => match self.lookup(ty, id)? {
                            Some(entity) => match entity.attr(attr) {
                                None => None,
                                Some(v) => match self.known_value(v)? {
                                    Sym::Val(v) => Some(v),
                                    _ => None,
                                },
                            },
                            // Cedar: an absent entity has no attributes; but
                            // the store may hold it, so this is unknowable.
                            None => {
                                return Err(PlanError::UnknownEntity {
                                    policy: self.policy.clone(),
                                    uid: format!("{ty}::{id:?}"),
                                });
                            }
                        },
                        _ => return Ok(Sym::Err),
                    };
                    match next {
                        Some(n) => current = n,
                        None => return Ok(Sym::bool(false)),
                    }
                }
                Sym::bool(true)
            }
            Sym::Term(Term::Resource) => Sym::boolean(has_b(&[], attrs)),
            Sym::Term(Term::Attr(path)) => Sym::boolean(has_b(&path, attrs)),
            Sym::Term(Term::Value(v)) => return self.has_attr(Sym::Val(v), attrs),
            Sym::Err | Sym::Bool(_) | Sym::Cases(_) => Sym::Err,
        })
    }
}

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::policy::{PolicySnapshot, Side, load};

    /// A snapshot of `policies` over `schema` (Cedar syntax), in a temporary directory.
    fn snapshot_of(schema: &str, policies: &str) -> PolicySnapshot {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let schema_path = dir.path().join("s.cedarschema");
        let policies_dir = dir.path().join("policies");
        std::fs::create_dir(&policies_dir).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&schema_path, schema).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(policies_dir.join("p.cedar"), policies).unwrap_or_else(|e| panic!("{e}"));
        load(&policies_dir, &schema_path).unwrap_or_else(|e| panic!("{}", e.render()))
    }

    fn uid(s: &str) -> EntityUid {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn plan_for(
        snapshot: &PolicySnapshot,
        entities: &Entities,
        principal: &str,
        action: &str,
        resource_type: &str,
        context: serde_json::Value,
    ) -> Result<FilterPlan, PlanError> {
        let principal = uid(principal);
        let residuals = snapshot
            .partially_evaluate(
                &Side::Known(principal.clone()),
                &uid(action),
                &Side::Any(resource_type.parse().unwrap_or_else(|e| panic!("{e}"))),
                &context,
                entities,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        plan(&residuals, &principal, entities)
    }

    /// Evaluates a condition on a stored resource per the documented
    /// semantics (`None`: unknown).
    fn eval(c: &Condition, resource: &EntityUid, entities: &Entities) -> Option<bool> {
        let term = |t: &Term| -> Option<Value> {
            match t {
                Term::Resource => Some(Value::entity(resource)),
                Term::Value(v) => Some(v.clone()),
                Term::Attr(path) => {
                    let mut current = EvalResult::EntityUid(resource.clone());
                    for name in path {
                        current = match &current {
                            EvalResult::EntityUid(u) => entities.get(u)?.attr(name)?.ok()?,
                            EvalResult::Record(r) => r.get(name)?.clone(),
                            _ => return None,
                        };
                    }
                    let e = Evaluator {
                        principal: resource,
                        entities,
                        policy: String::new(),
                    };
                    e.value(&current).ok()
                }
            }
        };
        let family = |v: &Value| -> Vec<Value> {
            let mut out = vec![v.clone()];
            if let Value::Entity { ty, id } = v
                && let Some(u) = uid_of(ty, id)
                && let Some(a) = entities.ancestors(&u)
            {
                out.extend(a.map(Value::entity));
            }
            out
        };
        match c {
            Condition::Bool(b) => Some(*b),
            Condition::And(items) => {
                let v: Vec<_> = items.iter().map(|i| eval(i, resource, entities)).collect();
                if v.contains(&Some(false)) {
                    Some(false)
                } else if v.iter().all(|x| *x == Some(true)) {
                    Some(true)
                } else {
                    None
                }
            }
            Condition::Or(items) => {
                let v: Vec<_> = items.iter().map(|i| eval(i, resource, entities)).collect();
                if v.contains(&Some(true)) {
                    Some(true)
                } else if v.iter().all(|x| *x == Some(false)) {
                    Some(false)
                } else {
                    None
                }
            }
            Condition::Not(inner) => eval(inner, resource, entities).map(|b| !b),
            Condition::Compare(op, l, r) => {
                let (l, r) = (term(l)?, term(r)?);
                Some(match (op, &l, &r) {
                    (CmpOp::Eq, ..) => l == r,
                    (CmpOp::Ne, ..) => l != r,
                    (op, Value::Long(a), Value::Long(b)) => match op {
                        CmpOp::Lt => a < b,
                        CmpOp::Le => a <= b,
                        CmpOp::Gt => a > b,
                        _ => a >= b,
                    },
                    _ => return None,
                })
            }
            Condition::Has(path) => Some(term(&Term::Attr(path.clone())).is_some()),
            Condition::In(t, list) => Some(family(&term(t)?).iter().any(|e| list.contains(e))),
            Condition::OneOf(t, list) => Some(match term(t)? {
                Value::Set(items) => items.iter().any(|i| list.contains(i)),
                v => list.contains(&v),
            }),
            Condition::Like(t, pattern) => {
                let Value::String(s) = term(t)? else {
                    return None;
                };
                let elems: Vec<pst::PatternElem> = {
                    let mut out = Vec::new();
                    let mut chars = pattern.chars();
                    while let Some(ch) = chars.next() {
                        out.push(match ch {
                            '*' => pst::PatternElem::Wildcard,
                            '\\' => pst::PatternElem::Char(chars.next().unwrap_or('\\')),
                            ch => pst::PatternElem::Char(ch),
                        });
                    }
                    out
                };
                Some(wildcard_match(&elems, &s))
            }
            other => panic!("not needed by these tests: {other:?}"),
        }
    }

    /// Every stored resource of `resource_type`: plan matches ⇔ decision allows.
    fn assert_exact(
        snapshot: &PolicySnapshot,
        entities: &Entities,
        principal: &str,
        action: &str,
        resource_type: &str,
        context: serde_json::Value,
    ) -> FilterPlan {
        let filter = plan_for(
            snapshot,
            entities,
            principal,
            action,
            resource_type,
            context.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut seen = 0;
        for e in entities
            .iter()
            .filter(|e| e.uid().type_name().to_string() == resource_type)
        {
            let request = snapshot
                .request(uid(principal), uid(action), e.uid(), &context)
                .unwrap_or_else(|e| panic!("{e}"));
            let allowed = snapshot.decide(&request, entities).allow;
            let matched = match &filter {
                FilterPlan::AlwaysAllowed => true,
                FilterPlan::AlwaysDenied => false,
                FilterPlan::Conditional { condition } => {
                    eval(condition, &e.uid(), entities) == Some(true)
                }
            };
            assert_eq!(
                matched,
                allowed,
                "{} for {principal} {action}: {}",
                e.uid(),
                json!(filter)
            );
            seen += 1;
        }
        assert!(seen > 0, "no stored {resource_type}");
        filter
    }

    const DOCS: &str = r#"
        entity Group in [Group];
        entity User in [Group] { big: Long, clearance: Long, tags?: Set<String> };
        entity Folder in [Folder] { readers: Group };
        entity Doc in [Folder] {
            owner: User, folder: Folder, name: String, level: Long,
            secret: Bool, label?: String, tags: Set<String>
        };
        action read appliesTo { principal: User, resource: Doc, context: {} };
    "#;

    fn docs_entities(snapshot: &PolicySnapshot) -> Entities {
        let doc = |id: &str,
                   owner: &str,
                   folder: &str,
                   name: &str,
                   level: i64,
                   secret: bool,
                   label: Option<&str>| {
            let mut attrs = json!({
                "owner": {"__entity": {"type": "User", "id": owner}},
                "folder": {"__entity": {"type": "Folder", "id": folder}},
                "name": name, "level": level, "secret": secret, "tags": ["x"]
            });
            if let Some(label) = label {
                attrs["label"] = json!(label);
            }
            json!({"uid": {"type": "Doc", "id": id}, "attrs": attrs,
                   "parents": [{"type": "Folder", "id": folder}]})
        };
        snapshot
            .entities(json!([
                {"uid": {"type": "Group", "id": "staff"}, "attrs": {}, "parents": [{"type": "Group", "id": "all"}]},
                {"uid": {"type": "Group", "id": "all"}, "attrs": {}, "parents": []},
                {"uid": {"type": "Group", "id": "board"}, "attrs": {}, "parents": []},
                {"uid": {"type": "User", "id": "alice"}, "attrs": {"big": 9_223_372_036_854_775_807i64, "clearance": 2},
                 "parents": [{"type": "Group", "id": "staff"}]},
                {"uid": {"type": "User", "id": "bob"}, "attrs": {"big": 0, "clearance": 0}, "parents": []},
                {"uid": {"type": "Folder", "id": "root"}, "attrs": {"readers": {"__entity": {"type": "Group", "id": "all"}}}, "parents": []},
                {"uid": {"type": "Folder", "id": "hr"}, "attrs": {"readers": {"__entity": {"type": "Group", "id": "board"}}},
                 "parents": [{"type": "Folder", "id": "root"}]},
                doc("d1", "alice", "root", "plan.txt", 1, false, Some("x%_'")),
                doc("d2", "bob", "hr", "pay.csv", 3, true, None),
                doc("d3", "bob", "root", "notes.txt", 2, false, Some("open")),
                // A document whose folder is missing from the store:
                // reading its folder's attributes errors (and so denies).
                doc("d4", "bob", "gone", "lost.txt", 0, false, None),
            ]))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_owner_test_becomes_a_comparison_with_the_principal() {
        let snapshot = snapshot_of(
            DOCS,
            "permit (principal, action, resource) when { resource.owner == principal };",
        );
        let entities = docs_entities(&snapshot);
        let filter = assert_exact(
            &snapshot,
            &entities,
            "User::\"alice\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        assert_eq!(
            serde_json::to_value(&filter).unwrap_or_default(),
            json!({"decision": "conditional", "condition":
                {"op": "==", "args": [{"attr": ["resource", "owner"]}, {"value": {"type": "User", "id": "alice"}}]}})
        );
    }

    #[test]
    fn principal_in_an_attribute_becomes_membership_in_the_principals_ancestors() {
        let snapshot = snapshot_of(
            DOCS,
            "permit (principal, action, resource) when { principal in resource.folder.readers };",
        );
        let entities = docs_entities(&snapshot);
        let filter = assert_exact(
            &snapshot,
            &entities,
            "User::\"alice\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        let FilterPlan::Conditional { condition } = filter else {
            panic!("{filter:?}")
        };
        let Condition::OneOf(Term::Attr(path), values) = condition else {
            panic!("{condition:?}")
        };
        assert_eq!(path, ["folder", "readers"]);
        let ids: Vec<String> = values
            .iter()
            .map(|v| v.to_json()["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        for id in ["alice", "staff", "all"] {
            assert!(ids.contains(&id.to_owned()), "{ids:?}");
        }
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn resource_in_an_entity_is_an_ancestors_test_and_forbids_negate_atoms() {
        let snapshot = snapshot_of(
            DOCS,
            r#"permit (principal, action, resource in Folder::"root");
               forbid (principal, action, resource) when { resource.secret };
               forbid (principal, action, resource) when { resource.level > principal.clearance };"#,
        );
        let entities = docs_entities(&snapshot);
        let filter = assert_exact(
            &snapshot,
            &entities,
            "User::\"alice\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        assert_eq!(
            serde_json::to_value(&filter).unwrap_or_default()["condition"],
            json!({"op": "and", "args": [
                {"op": "in", "args": [{"var": "resource"}, {"entities": [{"type": "Folder", "id": "root"}]}]},
                {"op": "==", "args": [{"attr": ["resource", "secret"]}, {"value": false}]},
                {"op": "<=", "args": [{"attr": ["resource", "level"]}, {"value": 2}]},
            ]})
        );
    }

    #[test]
    fn like_and_has_guards_keep_cedar_semantics() {
        let snapshot = snapshot_of(
            DOCS,
            r#"permit (principal, action, resource) when { resource.name like "*.txt" };
               forbid (principal, action, resource) when { resource has label && resource.label like "x%*" };"#,
        );
        let entities = docs_entities(&snapshot);
        let filter = assert_exact(
            &snapshot,
            &entities,
            "User::\"bob\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        let text = serde_json::to_string(&filter).unwrap_or_default();
        assert!(text.contains(r#""pattern":"*.txt""#), "{text}");
        assert!(
            text.contains(r#"{"op":"has","args":[{"attr":["resource","label"]}]}"#),
            "{text}"
        );
    }

    #[test]
    fn an_erroring_forbid_excludes_its_rows_even_under_negation() {
        // `principal.big + 1` overflows for alice: partial evaluation leaves
        // an error node behind `resource.level > 1`. Cedar errors there, and
        // cedargate denies: those rows must not match although the forbid's
        // condition is not true for them.
        let snapshot = snapshot_of(
            DOCS,
            r#"permit (principal, action, resource);
               forbid (principal, action, resource) when { resource.level > 1 && principal.big + 1 > 5 };"#,
        );
        let entities = docs_entities(&snapshot);
        let filter = assert_exact(
            &snapshot,
            &entities,
            "User::\"alice\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        assert_eq!(
            serde_json::to_value(&filter).unwrap_or_default()["condition"],
            json!({"op": "<=", "args": [{"attr": ["resource", "level"]}, {"value": 1}]})
        );
        // For bob nothing overflows and the forbid never holds, but Cedar
        // still reads `resource.level`: only rows that have it match.
        let filter = assert_exact(
            &snapshot,
            &entities,
            "User::\"bob\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        assert_eq!(
            serde_json::to_value(&filter).unwrap_or_default()["condition"],
            json!({"op": "has", "args": [{"attr": ["resource", "level"]}]})
        );
    }

    #[test]
    fn a_read_through_a_missing_entity_denies_and_so_does_not_match() {
        let snapshot = snapshot_of(
            DOCS,
            r#"permit (principal, action, resource);
               forbid (principal, action, resource) when { principal in resource.folder.readers };"#,
        );
        let entities = docs_entities(&snapshot);
        // d4's folder is missing: Cedar errors on the forbid, so d4 is denied.
        let filter = assert_exact(
            &snapshot,
            &entities,
            "User::\"bob\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        let FilterPlan::Conditional { condition } = filter else {
            panic!("{filter:?}")
        };
        assert_eq!(eval(&condition, &uid("Doc::\"d4\""), &entities), None);
        assert_eq!(eval(&condition, &uid("Doc::\"d3\""), &entities), Some(true));
    }

    #[test]
    fn decided_queries_are_always_allowed_or_denied() {
        let snapshot = snapshot_of(
            DOCS,
            r#"permit (principal in Group::"staff", action, resource);"#,
        );
        let entities = docs_entities(&snapshot);
        let allowed = assert_exact(
            &snapshot,
            &entities,
            "User::\"alice\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        let denied = assert_exact(
            &snapshot,
            &entities,
            "User::\"bob\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        assert_eq!(
            serde_json::to_value(&allowed).unwrap_or_default(),
            json!({"decision": "always_allowed"})
        );
        assert_eq!(
            serde_json::to_value(&denied).unwrap_or_default(),
            json!({"decision": "always_denied"})
        );
    }

    #[test]
    fn what_cannot_be_expressed_is_an_error_not_a_plan() {
        let snapshot = snapshot_of(
            DOCS,
            "permit (principal, action, resource) when { resource.level + 1 > principal.clearance };",
        );
        let entities = docs_entities(&snapshot);
        let result = plan_for(
            &snapshot,
            &entities,
            "User::\"bob\"",
            "Action::\"read\"",
            "Doc",
            json!({}),
        );
        assert!(
            matches!(&result, Err(PlanError::Unsupported { what, .. }) if what.contains("arithmetic")),
            "{result:?}"
        );
    }

    fn shipped() -> (PolicySnapshot, Entities) {
        let snapshot = load(Path::new("policies"), Path::new("schema"))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let text = std::fs::read_to_string("policies/tests/entities/orgs.json")
            .unwrap_or_else(|e| panic!("{e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let entities = snapshot.entities(json).unwrap_or_else(|e| panic!("{e}"));
        (snapshot, entities)
    }

    #[test]
    fn membership_tags_keyed_by_the_resource_become_cases_over_the_principals_organizations() {
        let (snapshot, entities) = shipped();
        let mut conditional = 0;
        for user in [
            "olivia", "uma", "adam", "rita", "mark", "nora", "gina", "gail", "pete", "ivan",
            "alex", "ulla", "rob", "ruth", "dana", "dave", "duke", "max", "gwen", "sam", "zed",
        ] {
            let principal = format!("User::\"{user}\"");
            if entities.get(&uid(&principal)).is_none() {
                continue;
            }
            for (action, ty) in [
                ("accounts.read", "Account"),
                ("accounts.manage", "Account"),
                ("transactions.read", "Transaction"),
                ("organization.read", "Organization"),
                ("billing.manage", "Organization"),
            ] {
                for context in [json!({}), json!({"mfa": true})] {
                    let action = format!("Action::\"{action}\"");
                    let filter =
                        assert_exact(&snapshot, &entities, &principal, &action, ty, context);
                    conditional += usize::from(matches!(filter, FilterPlan::Conditional { .. }));
                }
            }
        }
        assert!(conditional > 0);
    }

    #[test]
    fn the_json_form_reads_back() {
        let (snapshot, entities) = shipped();
        let filter = plan_for(
            &snapshot,
            &entities,
            "User::\"rob\"",
            "Action::\"accounts.read\"",
            "Account",
            json!({}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = serde_json::to_string(&filter).unwrap_or_default();
        let back: FilterPlan =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(back, filter);
        // The README's example: Rob (Accounts=Manage in acme, restricted to
        // the active account acme-active-1 and to no retirement account).
        let FilterPlan::Conditional { condition } = &filter else {
            panic!("{text}")
        };
        assert_eq!(
            crate::policy::to_sql(condition, &crate::policy::Columns::default())
                .unwrap_or_else(|e| panic!("{e}")),
            "(\"tenant\" = 'acme' AND (\"accountType\" <> 'Active' OR (\"accountType\" = 'Active' AND \
             \"id\" = 'acme-active-1')) AND \"accountType\" <> 'Retirement' AND NOT (\"department\" IS NOT NULL))"
        );
    }
}
