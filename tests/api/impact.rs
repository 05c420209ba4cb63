//! Impact analysis of a policy change: `cedargate diff` proves two policy
//! directories equivalent or shows a request they decide differently, and
//! `cedargate replay` re-decides a sidecar's logged requests under a
//! candidate set. Both are shown a deliberately changed copy of the
//! shipped policies: Billing=Read no longer reads billing (or, for diff,
//! Billing=None does).

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::Workspace;
use crate::helpers::{Api, TestApp, action, uid};
use crate::prove::cvc5;

const BILLING_READ: &str = "perms.billing >= 1";

/// A workspace whose `policies/modules.cedar` reads billing at `level`.
fn changed_copy(level: &str) -> Workspace {
    let workspace = Workspace::new();
    workspace.replace(
        "policies/modules.cedar",
        BILLING_READ,
        &format!("perms.billing >= {level}"),
    );
    workspace
}

#[test]
#[ignore = "needs cvc5 1.3.1: run `bash tests/run.sh` (or set CVC5)"]
fn diff_proves_a_copy_equivalent_and_shows_the_environment_a_change_touches() {
    // Arrange: Billing=None would read billing.
    let workspace = changed_copy("0");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let cvc5 = cvc5();
    let diff = |old: &std::path::Path| {
        let output = workspace
            .cedargate_with_solver(Some(&cvc5))
            .args(["diff", "--json"])
            .arg(old)
            .arg("policies")
            .output()
            .expect("cedargate runs");
        let report: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
        (output.status.success(), report)
    };

    // Act
    let (same_ok, same) = diff(&workspace.path("policies"));
    let (changed_ok, changed) = diff(&shipped);

    // Assert
    assert!(same_ok, "{same}");
    assert_eq!(same["differences"], json!([]), "{same}");
    assert_eq!(same["equivalent"], same["environments"], "{same}");
    assert!(!changed_ok, "{changed}");
    let differences = changed["differences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(differences.len(), 1, "{changed}");
    let found = &differences[0];
    assert_eq!(
        found["env"], r#"User, Action::"billing.read", Organization"#,
        "{changed}"
    );
    // The solver's request, re-decided by the ordinary authorizer.
    assert_eq!(found["request"]["old"]["allow"], json!(false), "{changed}");
    assert_eq!(found["request"]["new"]["allow"], json!(true), "{changed}");
    assert_eq!(found["request"]["new"]["reasons"], json!(["billing-read"]));
}

on_both_backends!(replay_counts_the_logged_decisions_a_candidate_changes);
async fn replay_counts_the_logged_decisions_a_candidate_changes() {
    // Arrange: a sidecar logging whole requests decides three of them.
    let logs = tempfile::tempdir().expect("a temporary directory");
    let log_path = logs.path().join("decisions.jsonl");
    let log_spec = log_path.display().to_string();
    let mut app = TestApp::spawn_with(move |cfg| {
        cfg.decision_log = log_spec;
        cfg.decision_log_requests = true;
    })
    .await;
    app.load_example().await;
    for user in ["rita", "olivia", "pete"] {
        let body = json!({"principal": uid("User", user), "action": action("billing.read"),
                          "resource": uid("Organization", "acme"), "context": {"mfa": true}});
        let (status, answer) =
            Api::send(app.request(Method::POST, "/v1/is_authorized").json(&body)).await;
        assert!(status.is_success(), "{answer}");
    }
    // A line from a sidecar that logged without its requests.
    let mut log = std::fs::read_to_string(&log_path).expect("the decision log exists");
    log.push_str(r#"{"principal":"User::\"rita\"","action":"Action::\"billing.read\"","resource":"Organization::\"acme\"","decision":"allow"}"#);
    log.push('\n');
    std::fs::write(&log_path, log).expect("the log is written");
    let database_url = app.config.database_url.to_string();
    app.stop().await;
    // The candidate: Billing=Read no longer reads billing.
    let candidate = changed_copy("2");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));

    // Act
    let mut command = candidate.cedargate();
    command
        .args([
            "replay",
            "--json",
            "--fail-on-change",
            "--policies",
            "policies",
        ])
        .arg("--current-policies")
        .arg(repo.join("policies"))
        .arg("--log")
        .arg(&log_path)
        .args(["--database-url", &database_url]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the command ran")
        .expect("cedargate runs");

    // Assert
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    assert!(!output.status.success(), "--fail-on-change: {report}");
    assert_eq!(report["lines"], 4, "{report}");
    assert_eq!(report["replayed"], 3, "{report}");
    assert_eq!(report["skipped"], 1, "{report}");
    assert_eq!(report["changed"], 1, "{report}");
    let group = &report["groups"][0];
    assert_eq!(group["action"], action("billing.read"), "{report}");
    assert_eq!(group["change"], "allow → deny", "{report}");
    assert_eq!(group["policies"], "billing-read → -", "{report}");
    assert_eq!(
        group["examples"],
        json!([format!(
            "{} on {}",
            uid("User", "rita"),
            uid("Organization", "acme")
        )]),
        "{report}"
    );
}

on_both_backends!(logged_requests_carry_their_context_without_the_redacted_keys);
async fn logged_requests_carry_their_context_without_the_redacted_keys() {
    // Arrange
    let logs = tempfile::tempdir().expect("a temporary directory");
    let log_path = logs.path().join("decisions.jsonl");
    let log_spec = log_path.display().to_string();
    let app = TestApp::spawn_with(move |cfg| {
        cfg.decision_log = log_spec;
        cfg.decision_log_requests = true;
        cfg.decision_log_redact = vec!["mfa".to_owned()];
    })
    .await;
    app.load_example().await;
    let body = json!({"principal": uid("User", "rita"), "action": action("billing.read"),
                      "resource": uid("Organization", "acme"), "context": {"mfa": true}});

    // Act
    let (status, answer) =
        Api::send(app.request(Method::POST, "/v1/is_authorized").json(&body)).await;

    // Assert
    assert!(status.is_success(), "{answer}");
    let text = std::fs::read_to_string(&log_path).expect("the decision log exists");
    let record: Value = serde_json::from_str(text.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(record["context"], json!({"mfa": "<redacted>"}), "{text}");
    assert_eq!(record["redacted"], json!(["mfa"]), "{text}");
    assert!(!text.contains("test-token"), "{text}");
}
