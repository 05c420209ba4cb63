//! Filter plans (`POST /v1/plan`, `cedargate plan --sql`): on the standard
//! workload, the resources a plan's condition tree matches are exactly the
//! ones single decisions allow. The tree is checked as emitted (its JSON),
//! by an evaluator of the documented format written here, not through the
//! residual policies it was built from.

use std::collections::HashSet;

use cedar_policy::{Entities, EntityUid, EvalResult};
use cedargate::policy::{FilterPlan, Side, plan};
use serde_json::{Value, json};

use crate::workload::{generate, read, workload_dir};

/// How many (principal, action) pairs are planned.
const PAIRS: usize = 200;

/// A value in the tree's JSON form, sets sorted, so that equal Cedar values
/// are equal JSON.
fn normalize(v: Value) -> Value {
    match v {
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(normalize).collect();
            items.sort_by_key(|i| i.to_string());
            items.dedup();
            Value::Array(items)
        }
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        other => other,
    }
}

fn uid_json(uid: &EntityUid) -> Value {
    json!({"type": uid.type_name().to_string(), "id": uid.id().unescaped()})
}

fn to_json(v: &EvalResult) -> Value {
    match v {
        EvalResult::Bool(b) => json!(b),
        EvalResult::Long(n) => json!(n),
        EvalResult::String(s) => json!(s),
        EvalResult::EntityUid(uid) => uid_json(uid),
        EvalResult::Set(items) => normalize(items.iter().map(to_json).collect()),
        EvalResult::Record(fields) => {
            json!({"record": fields.iter().map(|(k, v)| (k.clone(), to_json(v))).collect::<serde_json::Map<_, _>>()})
        }
        EvalResult::ExtensionValue(s) => panic!("the workload has no extension values: {s}"),
    }
}

fn json_uid(v: &Value) -> Option<EntityUid> {
    let (ty, id) = (v.get("type")?.as_str()?, v.get("id")?.as_str()?);
    Some(EntityUid::from_type_name_and_id(
        ty.parse().ok()?,
        cedar_policy::EntityId::new(id),
    ))
}

/// Evaluates the documented tree for one resource: `Some(true)`,
/// `Some(false)`, or `None` when unknown (a missing attribute or entity).
struct Eval<'a> {
    entities: &'a Entities,
    resource: &'a EntityUid,
}

impl Eval<'_> {
    /// A term's value in JSON value form; `None` when it cannot be read.
    fn term(&self, t: &Value) -> Option<Value> {
        if t.get("var").is_some() {
            assert_eq!(t["var"], "resource", "only the resource is left: {t}");
            return Some(uid_json(self.resource));
        }
        if let Some(v) = t.get("value") {
            return Some(normalize(v.clone()));
        }
        let path = t["attr"]
            .as_array()
            .unwrap_or_else(|| panic!("a term: {t}"));
        assert_eq!(path[0], "resource", "{t}");
        let mut current = EvalResult::EntityUid(self.resource.clone());
        for name in &path[1..] {
            let name = name.as_str().expect("attribute names are strings");
            current = match &current {
                EvalResult::EntityUid(uid) => self.entities.get(uid)?.attr(name)?.ok()?,
                EvalResult::Record(fields) => fields.get(name)?.clone(),
                _ => return None,
            };
        }
        Some(to_json(&current))
    }

    fn family(&self, entity: &Value) -> Vec<Value> {
        let mut out = vec![entity.clone()];
        if let Some(uid) = json_uid(entity)
            && let Some(ancestors) = self.entities.ancestors(&uid)
        {
            out.extend(ancestors.map(uid_json));
        }
        out
    }

    fn condition(&self, c: &Value) -> Option<bool> {
        if let Some(v) = c.get("value") {
            return Some(
                v.as_bool()
                    .unwrap_or_else(|| panic!("a literal condition: {c}")),
            );
        }
        let op = c["op"]
            .as_str()
            .unwrap_or_else(|| panic!("a node has an op: {c}"));
        let args = c["args"]
            .as_array()
            .unwrap_or_else(|| panic!("a node has args: {c}"));
        let list = |key: &str| -> Vec<Value> {
            args[1][key]
                .as_array()
                .unwrap_or_else(|| panic!("{op} lists {key}: {c}"))
                .iter()
                .cloned()
                .map(normalize)
                .collect()
        };
        match op {
            "and" => {
                let values: Vec<_> = args.iter().map(|a| self.condition(a)).collect();
                if values.contains(&Some(false)) {
                    Some(false)
                } else if values.iter().all(|v| *v == Some(true)) {
                    Some(true)
                } else {
                    None
                }
            }
            "or" => {
                let values: Vec<_> = args.iter().map(|a| self.condition(a)).collect();
                if values.contains(&Some(true)) {
                    Some(true)
                } else if values.iter().all(|v| *v == Some(false)) {
                    Some(false)
                } else {
                    None
                }
            }
            "not" => {
                let inner = &args[0];
                let atomic = !matches!(inner["op"].as_str(), Some("and" | "or" | "not"));
                assert!(atomic, "`not` only wraps atomic tests: {c}");
                self.condition(inner).map(|b| !b)
            }
            "has" => Some(self.term(&args[0]).is_some()),
            "==" | "!=" | "<" | "<=" | ">" | ">=" => {
                let (l, r) = (self.term(&args[0])?, self.term(&args[1])?);
                Some(match op {
                    "==" => l == r,
                    "!=" => l != r,
                    _ => {
                        let (l, r) = (l.as_i64()?, r.as_i64()?);
                        match op {
                            "<" => l < r,
                            "<=" => l <= r,
                            ">" => l > r,
                            _ => l >= r,
                        }
                    }
                })
            }
            "in" => {
                let entity = self.term(&args[0])?;
                let listed = list("entities");
                Some(self.family(&entity).iter().any(|e| listed.contains(e)))
            }
            "one_of" => {
                let v = self.term(&args[0])?;
                let values = list("values");
                Some(match &v {
                    Value::Array(items) => items.iter().any(|i| values.contains(i)),
                    v => values.contains(v),
                })
            }
            "contains" | "contains_all" | "contains_any" => {
                let (a, b) = (self.term(&args[0])?, self.term(&args[1])?);
                let a = a.as_array()?.clone();
                Some(match op {
                    "contains" => a.contains(&b),
                    "contains_all" => b.as_array()?.iter().all(|x| a.contains(x)),
                    _ => b.as_array()?.iter().any(|x| a.contains(x)),
                })
            }
            "is_empty" => Some(self.term(&args[0])?.as_array()?.is_empty()),
            "is" => {
                let v = self.term(&args[0])?;
                Some(v["type"] == c["entity_type"])
            }
            "like" => {
                let s = self.term(&args[0])?;
                Some(like(c["pattern"].as_str()?, s.as_str()?))
            }
            other => panic!("an op the format does not document: {other} in {c}"),
        }
    }
}

/// The documented pattern syntax: `*` any run, `\*` and `\\` literal.
fn like(pattern: &str, text: &str) -> bool {
    let mut elems: Vec<Option<char>> = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => elems.push(None),
            '\\' => elems.push(Some(chars.next().unwrap_or('\\'))),
            c => elems.push(Some(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    let mut m = vec![false; text.len() + 1];
    m[0] = true;
    for e in elems {
        match e {
            None => {
                for j in 1..=text.len() {
                    m[j] = m[j] || m[j - 1];
                }
            }
            Some(c) => {
                for j in (1..=text.len()).rev() {
                    m[j] = m[j - 1] && text[j - 1] == c;
                }
                m[0] = false;
            }
        }
    }
    m[text.len()]
}

#[test]
fn plans_match_exactly_the_resources_single_decisions_allow_on_the_standard_workload() {
    // Arrange
    let workload = workload_dir();
    let generated = tempfile::tempdir().expect("a temporary directory");
    generate(&workload, generated.path());
    let snapshot = cedargate::policy::load(
        &workload.join("policies.cedar"),
        &workload.join("schema.cedarschema.json"),
    )
    .unwrap_or_else(|e| panic!("{}", e.render()));
    let entities = Entities::from_json_str(
        &read(&generated.path().join("entities.json")),
        Some(snapshot.schema()),
    )
    .expect("entities.json is valid");
    let requests: Vec<Value> = read(&generated.path().join("requests.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON request line"))
        .collect();
    // Deterministic sample: distinct (principal, action) pairs, picked at a
    // stride through the requests so that all parts of the file are used.
    let stride = requests.len() / PAIRS;
    let mut seen = HashSet::new();
    let mut sample = Vec::new();
    for offset in 0..stride {
        for r in requests.iter().skip(offset).step_by(stride) {
            if sample.len() < PAIRS && seen.insert(format!("{} {}", r["principal"], r["action"])) {
                sample.push(r.clone());
            }
        }
        if sample.len() == PAIRS {
            break;
        }
    }
    assert_eq!(
        sample.len(),
        PAIRS,
        "the workload has {PAIRS} distinct pairs"
    );
    // Act, Assert: each pair on one of the cores (Cedar in a debug build
    // takes a while for the ~900,000 decisions).
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (snapshot, entities, sample) = (&snapshot, &entities, &sample);
                scope.spawn(move || {
                    sample
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|r| check_pair(snapshot, entities, r))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });

    let count = |d: &str| outcomes.iter().filter(|o| o.decision == d).count();
    let compared: usize = outcomes.iter().map(|o| o.compared).sum();
    let allowed: usize = outcomes.iter().map(|o| o.allowed).sum();
    let everything = outcomes
        .iter()
        .filter(|o| o.decision == "conditional" && o.allowed == o.compared)
        .count();
    let mismatches: Vec<&String> = outcomes.iter().flat_map(|o| &o.mismatches).collect();
    let summary = format!(
        "{PAIRS} (principal, action) pairs, {compared} resources compared ({allowed} allowed): \
         {} always_allowed, {} always_denied, {} conditional ({everything} of which match every stored resource)",
        count("always_allowed"),
        count("always_denied"),
        count("conditional"),
    );
    println!("{summary}");
    assert!(
        mismatches.is_empty(),
        "{summary}; {} mismatches, first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(10)
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // No action of the workload is decided by the principal alone: each has
    // a permit that reads the resource (`principal in resource.org.perms…`),
    // and even where another permit holds outright (platform support) that
    // one must evaluate without error, so `always_allowed` cannot occur.
    assert!(
        count("always_denied") > 0 && count("conditional") > 0 && allowed > 0 && allowed < compared,
        "{summary}"
    );
}

/// What one (principal, action) pair gave.
struct Outcome {
    decision: String,
    compared: usize,
    allowed: usize,
    mismatches: Vec<String>,
}

fn check_pair(
    snapshot: &cedargate::policy::PolicySnapshot,
    entities: &Entities,
    r: &Value,
) -> Outcome {
    let uid =
        |v: &Value| EntityUid::from_json(v.clone()).unwrap_or_else(|e| panic!("a uid: {e}: {v}"));
    let (principal, action) = (uid(&r["principal"]), uid(&r["action"]));
    // The type the action applies to: the sampled request's resource type.
    let resource_type = uid(&r["resource"]).type_name().clone();

    let residuals = snapshot
        .partially_evaluate(
            &Side::Known(principal.clone()),
            &action,
            &Side::Any(resource_type.clone()),
            &r["context"],
            entities,
        )
        .unwrap_or_else(|e| panic!("partial evaluation of {r}: {e}"));
    let filter =
        plan(&residuals, &principal, entities).unwrap_or_else(|e| panic!("a plan for {r}: {e}"));
    let emitted = serde_json::to_value(&filter).expect("a plan serializes");

    let decision = emitted["decision"].as_str().expect("a decision").to_owned();
    assert!(
        ["always_allowed", "always_denied", "conditional"].contains(&decision.as_str()),
        "{emitted}"
    );
    assert_eq!(
        emitted.get("condition").is_some(),
        decision == "conditional",
        "a condition exactly for conditional plans: {emitted}"
    );
    let back: FilterPlan = serde_json::from_value(emitted.clone()).expect("the plan reads back");
    assert_eq!(back, filter, "the JSON form reads back to the same plan");
    let mut outcome = Outcome {
        decision,
        compared: 0,
        allowed: 0,
        mismatches: Vec::new(),
    };
    for entity in entities
        .iter()
        .filter(|e| e.uid().type_name() == &resource_type)
    {
        let resource = entity.uid();
        let request = snapshot
            .request(
                principal.clone(),
                action.clone(),
                resource.clone(),
                &r["context"],
            )
            .unwrap_or_else(|e| panic!("a request: {e}"));
        let allowed = snapshot.decide(&request, entities).allow;
        let matched = match outcome.decision.as_str() {
            "always_allowed" => true,
            "always_denied" => false,
            _ => {
                Eval {
                    entities,
                    resource: &resource,
                }
                .condition(&emitted["condition"])
                    == Some(true)
            }
        };
        outcome.compared += 1;
        outcome.allowed += usize::from(allowed);
        if matched != allowed {
            outcome.mismatches.push(format!(
                "{principal} {action} {resource}: decision allow={allowed}, plan matches={matched}; plan {emitted}"
            ));
        }
    }
    outcome
}

/// `cedargate plan --sql` reads the answer of `POST /v1/plan` (extra
/// fields such as the revisions included) and prints the `WHERE` expression.
#[test]
fn the_plan_command_prints_the_where_clause() {
    use assert_cmd::Command;
    let run = |args: &[&str], stdin: Value| {
        let output = Command::cargo_bin("cedargate")
            .expect("the cedargate binary is built")
            .arg("plan")
            .args(args)
            .write_stdin(stdin.to_string())
            .output()
            .expect("cedargate runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    };
    let conditional = json!({
        "decision": "conditional",
        "condition": {"op": "and", "args": [
            {"op": "==", "args": [{"attr": ["resource", "tenant"]}, {"value": "acme"}]},
            {"op": "one_of", "args": [{"attr": ["resource", "org", "id"]}, {"values": ["o'1", "o2"]}]},
        ]},
        "policy_revision": 3,
        "store_revision": 17,
    });
    assert_eq!(
        run(
            &["--sql", "--column", "org.id=orgs.id"],
            conditional.clone()
        ),
        (
            true,
            r#"("tenant" = 'acme' AND orgs.id IN ('o''1', 'o2'))"#.to_owned(),
            String::new()
        )
    );
    assert_eq!(
        run(
            &["--sql"],
            json!({"decision": "always_allowed", "policy_revision": 1})
        )
        .1,
        "TRUE"
    );
    assert_eq!(
        run(&["--sql"], json!({"decision": "always_denied"})).1,
        "FALSE"
    );
    let (ok, _, stderr) = run(
        &["--sql"],
        json!({"decision": "conditional", "condition": {"op": "is", "args": [{"var": "resource"}], "entity_type": "Doc"}}),
    );
    assert!(
        !ok && stderr.contains("no SQL translation for `is Doc`"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["--sql"], json!({"decision": "maybe"}));
    assert!(!ok && stderr.contains("not a filter plan"), "{stderr}");
}

on_both_backends!(plans_through_the_api_match_single_decisions_on_the_example);
/// Every (user, action, resource type) of the example organizations
/// through `POST /v1/plan`: the engine gathers the principal's entities
/// from the store, and the plan selects exactly the stored resources that
/// single decisions allow.
async fn plans_through_the_api_match_single_decisions_on_the_example() {
    // Arrange
    let app = crate::helpers::TestApp::spawn().await;
    app.load_example().await;
    let root = crate::helpers::repo_dir();
    let snapshot = cedargate::policy::load(&root.join("policies"), &root.join("schema"))
        .unwrap_or_else(|e| panic!("{}", e.render()));
    let schema = snapshot.schema();
    let entities = Entities::from_json_value(crate::helpers::example_entities(), Some(schema))
        .expect("the example entities");
    let users: Vec<EntityUid> = entities
        .iter()
        .map(cedar_policy::Entity::uid)
        .filter(|u| u.type_name().to_string() == "User")
        .collect();
    let context = json!({"mfa": true});
    let mut counts = std::collections::BTreeMap::<String, usize>::new();

    for action in schema.actions() {
        let Some(types) = schema.resources_for_action(action) else {
            continue;
        };
        for ty in types {
            let resources: Vec<EntityUid> = entities
                .iter()
                .map(cedar_policy::Entity::uid)
                .filter(|u| u.type_name() == ty)
                .collect();
            for user in &users {
                // Act
                let (status, answer) = app
                    .post_json(
                        "/v1/plan",
                        &json!({"principal": uid_json(user), "action": uid_json(action),
                                "resource_type": ty.to_string(), "context": context}),
                    )
                    .await;
                assert_eq!(
                    status,
                    reqwest::StatusCode::OK,
                    "{user} {action} {ty}: {answer}"
                );
                let decision = answer["decision"].as_str().expect("a decision").to_owned();
                *counts.entry(decision.clone()).or_default() += 1;
                if resources.is_empty() {
                    continue;
                }
                let requests: Vec<Value> = resources
                    .iter()
                    .map(|r| {
                        json!({"principal": uid_json(user), "action": uid_json(action),
                                    "resource": uid_json(r), "context": context})
                    })
                    .collect();
                let (_, decided) = app
                    .post_json("/v1/is_authorized/batch", &json!({"requests": requests}))
                    .await;

                // Assert
                for (resource, single) in resources
                    .iter()
                    .zip(decided["results"].as_array().expect("results"))
                {
                    let allowed = single["decision"] == "allow";
                    let matched = match decision.as_str() {
                        "always_allowed" => true,
                        "always_denied" => false,
                        _ => {
                            Eval {
                                entities: &entities,
                                resource,
                            }
                            .condition(&answer["condition"])
                                == Some(true)
                        }
                    };
                    assert_eq!(
                        matched, allowed,
                        "{user} {action} {resource}: decision {single}, plan {answer}"
                    );
                }
            }
        }
    }
    assert!(
        counts.len() >= 2,
        "the example yields more than one kind of plan: {counts:?}"
    );
}
