//! The evaluator of residual expressions (PST) into conditions.

use super::*;

impl Evaluator<'_> {
    fn unsupported<T>(&self, what: impl Into<String>) -> R<T> {
        Err(PlanError::Unsupported {
            policy: self.policy.clone(),
            what: what.into(),
        })
    }

    pub(super) fn policy(&self, policy: &pst::Policy) -> R<B> {
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

    pub(super) fn value(&self, v: &EvalResult) -> R<Value> {
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
