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

use cedar_policy::EntityUid;
use serde::{Deserialize, Serialize};

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

mod build;

pub use build::plan;
