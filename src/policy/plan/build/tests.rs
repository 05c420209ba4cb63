//! Unit tests of filter plans: tree building, JSON form, fail-closed semantics.

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
        "olivia", "uma", "adam", "rita", "mark", "nora", "gina", "gail", "pete", "ivan", "alex",
        "ulla", "rob", "ruth", "dana", "dave", "duke", "max", "gwen", "sam", "zed",
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
                let filter = assert_exact(&snapshot, &entities, &principal, &action, ty, context);
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
    let back: FilterPlan = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
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
