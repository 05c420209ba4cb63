//! The standard workload: the sidecar, deciding on per-request entity slices
//! from its store, answers exactly what plain `cedar-policy` answers with the
//! whole entity set in memory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request, Schema};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// How many of the workload's requests are compared: all of them.
const REQUESTS: usize = 50_000;
/// Requests per batch call.
const BATCH: usize = 500;

pub(crate) fn workload_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/workload"));
    assert!(
        dir.join("gen_workload.py").is_file(),
        "the standard workload is missing: expected gen_workload.py in {} (bench/workload in the repository)",
        dir.display()
    );
    dir
}

/// Runs `gen_workload.py` (default size) into `out`.
pub(crate) fn generate(workload: &Path, out: &Path) {
    let output = Command::new("python3")
        .arg(workload.join("gen_workload.py"))
        .arg("--out")
        .arg(out)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 (needed to generate the standard workload): {e}")
        });
    assert!(
        output.status.success(),
        "gen_workload.py failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// What plain Cedar answers: the decision and the `@id`s of the
/// determining policies, sorted.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    decision: String,
    reasons: Vec<String>,
}

/// Decides every request with plain `cedar-policy` over the whole entity set.
fn reference_answers(workload: &Path, generated: &Path, requests: &[Value]) -> Vec<Answer> {
    let policies = PolicySet::from_str(&read(&workload.join("policies.cedar")))
        .expect("policies.cedar parses");
    let schema = Schema::from_json_str(&read(&workload.join("schema.cedarschema.json")))
        .expect("the schema parses");
    let entities = Entities::from_json_str(&read(&generated.join("entities.json")), Some(&schema))
        .expect("entities.json is valid");
    let authorizer = Authorizer::new();
    let uid =
        |v: &Value| EntityUid::from_json(v.clone()).unwrap_or_else(|e| panic!("a uid: {e}: {v}"));
    requests
        .iter()
        .map(|r| {
            let action = uid(&r["action"]);
            let context = Context::from_json_value(r["context"].clone(), Some((&schema, &action)))
                .unwrap_or_else(|e| panic!("a context: {e}: {r}"));
            let request = Request::new(
                uid(&r["principal"]),
                action,
                uid(&r["resource"]),
                context,
                Some(&schema),
            )
            .unwrap_or_else(|e| panic!("a valid request: {e}: {r}"));
            let response = authorizer.is_authorized(&request, &policies, &entities);
            let errors: Vec<String> = response
                .diagnostics()
                .errors()
                .map(ToString::to_string)
                .collect();
            assert!(
                errors.is_empty(),
                "plain Cedar met errors on {r}: {errors:?}"
            );
            let mut reasons: Vec<String> = response
                .diagnostics()
                .reason()
                .map(|id| {
                    policies
                        .policy(id)
                        .and_then(|p| p.annotation("id"))
                        .unwrap_or_else(|| panic!("policy {id} has no @id"))
                        .to_owned()
                })
                .collect();
            reasons.sort();
            let decision = match response.decision() {
                cedar_policy::Decision::Allow => "allow",
                cedar_policy::Decision::Deny => "deny",
            };
            Answer {
                decision: decision.to_owned(),
                reasons,
            }
        })
        .collect()
}

on_both_backends!(
    the_sidecar_decides_the_standard_workload_exactly_like_plain_cedar,
    multi_thread
);
async fn the_sidecar_decides_the_standard_workload_exactly_like_plain_cedar() {
    // Arrange
    let workload = workload_dir();
    let generated = tempfile::tempdir().expect("a temporary directory");
    generate(&workload, generated.path());
    let requests: Vec<Value> = read(&generated.path().join("requests.jsonl"))
        .lines()
        .take(REQUESTS)
        .map(|line| serde_json::from_str(line).expect("a JSON request line"))
        .collect();
    assert_eq!(
        requests.len(),
        REQUESTS,
        "requests.jsonl holds fewer requests than compared"
    );
    let expected = {
        let (workload, generated, requests) = (
            workload.clone(),
            generated.path().to_owned(),
            requests.clone(),
        );
        tokio::task::spawn_blocking(move || reference_answers(&workload, &generated, &requests))
            .await
            .expect("the reference decisions")
    };
    let entities = generated.path().join("entities.json");
    let app = TestApp::spawn_with(|cfg| {
        cfg.policy.policies = workload.join("policies.cedar");
        cfg.policy.schema = workload.join("schema.cedarschema.json");
        cfg.entities = Some(entities);
    })
    .await;

    // Act
    let mut actual = Vec::with_capacity(REQUESTS);
    for chunk in requests.chunks(BATCH) {
        let (status, body) = app
            .post_json("/v1/is_authorized/batch", &json!({"requests": chunk}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let results = body["results"].as_array().expect("results").clone();
        assert_eq!(results.len(), chunk.len());
        actual.extend(results);
    }

    // Assert
    let mut mismatches = Vec::new();
    for (i, (result, want)) in actual.iter().zip(&expected).enumerate() {
        let got = Answer {
            decision: result["decision"].as_str().unwrap_or_default().to_owned(),
            reasons: serde_json::from_value(result["reasons"].clone()).unwrap_or_default(),
        };
        if &got != want || result["errors"] != json!([]) {
            mismatches.push(format!(
                "request {i} {}: sidecar {result}, plain Cedar {want:?}",
                requests[i]
            ));
        }
    }
    let allows = expected.iter().filter(|a| a.decision == "allow").count();
    println!(
        "standard workload: {} requests compared, {allows} allow, {} deny, {} mismatches",
        expected.len(),
        expected.len() - allows,
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {REQUESTS} decisions differ from plain Cedar; first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        allows > 0 && allows < REQUESTS,
        "the workload mixes allows and denies"
    );
}

/// Narrowing the policy set by request shape (action, principal type,
/// resource type) is sound: on every request of the workload the narrowed
/// decision, reasons and errors equal those of the whole policy set.
#[test]
fn narrowed_policy_sets_decide_the_whole_workload_like_the_full_set() {
    // Arrange
    let workload = workload_dir();
    let generated = tempfile::tempdir().unwrap();
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
    .unwrap();
    let full = Authorizer::new();
    let requests: Vec<Value> = read(&generated.path().join("requests.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        requests.len(),
        50_000,
        "the default workload has 50,000 requests"
    );

    let mut allowed = 0;
    for (i, r) in requests.iter().enumerate() {
        let uid = |k: &str| EntityUid::from_json(r[k].clone()).unwrap();
        let request = snapshot
            .request(
                uid("principal"),
                uid("action"),
                uid("resource"),
                &r["context"],
            )
            .unwrap();

        // Act
        let narrowed = snapshot.decide(&request, &entities);
        let whole = full.is_authorized(&request, snapshot.policies(), &entities);

        // Assert
        let mut reasons: Vec<String> = whole
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        reasons.sort();
        assert_eq!(
            narrowed.allow,
            whole.decision() == cedar_policy::Decision::Allow,
            "request {i}: {r}"
        );
        assert_eq!(narrowed.reasons, reasons, "request {i}: {r}");
        assert_eq!(
            narrowed.errors.len(),
            whole.diagnostics().errors().count(),
            "request {i}: {r}"
        );
        allowed += usize::from(narrowed.allow);
    }
    println!(
        "{allowed} of {} requests allowed, all equal to the whole policy set",
        requests.len()
    );
}
