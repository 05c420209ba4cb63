//! Policy reloads: refused when invalid, atomic under load, and triggered
//! by the file watcher.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, action, repo_dir, uid};

const BROKEN_POLICY: &str = "// Broken on purpose: the condition is cut short.\n\
@id(\"broken\")\n\
permit (principal, action, resource) when { principal. };\n";

const FREEZE_BILLING: &str = "@id(\"freeze-billing\")\n\
forbid (principal, action == Action::\"billing.read\", resource);\n";

/// These tests change what the policies decide on purpose, which the
/// shipped test suites would refuse.
fn without_test_gate(cfg: &mut cedargate::config::ServeConfig) {
    cfg.reload_test_gate = false;
}

fn olivia_reads_billing() -> Value {
    json!({"principal": uid("User", "olivia"), "action": action("billing.read"), "resource": uid("Organization", "acme")})
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn remove_policy(policies: &Path, file: &str, id: &str) {
    let path = policies.join(file);
    let text = std::fs::read_to_string(&path).expect("read the policy file");
    let marker = format!("@id(\"{id}\")");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in {file}"));
    let end = start + text[start..].find(";\n").expect("the end of the policy") + 2;
    write(&path, &format!("{}{}", &text[..start], &text[end..]));
}

on_both_backends!(
    an_invalid_policy_file_is_refused_with_its_file_and_line_and_the_previous_set_keeps_serving
);
async fn an_invalid_policy_file_is_refused_with_its_file_and_line_and_the_previous_set_keeps_serving()
 {
    // Arrange
    let app = TestApp::spawn_with_policy_copy().await;
    app.load_example().await;
    let before = app.is_authorized_body(&olivia_reads_billing()).await;
    write(&app.policies_dir().join("broken.cedar"), BROKEN_POLICY);

    // Act
    let (status, answer) = app.post_json("/v1/policies/reload", &json!(null)).await;

    // Assert
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_policies");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("broken.cedar:3:"),
        "the message names the file and line: {message}"
    );
    let after = app.is_authorized_body(&olivia_reads_billing()).await;
    assert_eq!(before["decision"], "allow", "{before}");
    assert_eq!(after["decision"], "allow", "{after}");
    assert_eq!(after["policy_revision"], 1);
    let status = app.policy_status().await;
    assert_eq!(status["revision"], 1);
    let error = status["last_reload_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("broken.cedar"),
        "GET /v1/policies shows the refused reload: {status}"
    );
    assert!(status["last_reload_attempt_at"].is_i64(), "{status}");
}

on_both_backends!(an_invalid_schema_is_refused_with_its_file_and_the_previous_set_keeps_serving);
async fn an_invalid_schema_is_refused_with_its_file_and_the_previous_set_keeps_serving() {
    // Arrange
    let app = TestApp::spawn_with_policy_copy().await;
    app.load_example().await;
    let schema = app.schema_dir().join("cedargate.cedarschema");
    let text = std::fs::read_to_string(&schema).expect("read the schema");
    write(
        &schema,
        &text.replacen("billing: Long,", "billing: Lung,", 1),
    );

    // Act
    let (status, answer) = app.post_json("/v1/policies/reload", &json!(null)).await;

    // Assert
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cedargate.cedarschema"),
        "the message names the schema file: {message}"
    );
    let after = app.is_authorized_body(&olivia_reads_billing()).await;
    assert_eq!(after["decision"], "allow", "{after}");
    assert_eq!(after["policy_revision"], 1);
    assert!(
        app.policy_status().await["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("cedargate.cedarschema"))
    );
}

on_both_backends!(a_stored_entity_a_new_schema_refuses_denies_with_the_reason);
async fn a_stored_entity_a_new_schema_refuses_denies_with_the_reason() {
    // Arrange: the organization was stored, and read into the caches,
    // under a schema without `region`; the new one requires it.
    let app = TestApp::spawn_with_policy_copy_and(without_test_gate).await;
    app.load_example().await;
    let before = app.is_authorized_body(&olivia_reads_billing()).await;
    assert_eq!(before["decision"], "allow", "{before}");
    let schema = app.schema_dir().join("cedargate.cedarschema");
    let text = std::fs::read_to_string(&schema).expect("read the schema");
    let required = text.replacen(
        "entity Organization {\n",
        "entity Organization {\n  region: String,\n",
        1,
    );
    assert_ne!(required, text, "the schema declares Organization");
    write(&schema, &required);

    // Act
    let (status, answer) = app.post_json("/v1/policies/reload", &json!(null)).await;
    let after = app.is_authorized_body(&olivia_reads_billing()).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(after["decision"], "deny", "{after}");
    assert_eq!(after["policy_revision"], 2, "{after}");
    let errors = after["errors"].to_string();
    assert!(
        errors.contains("Organization::\\\"acme\\\"") && errors.contains("region"),
        "the error names the entity and the attribute: {after}"
    );
}

on_both_backends!(a_valid_change_is_reloaded_as_revision_2_and_replaces_cached_decisions);
async fn a_valid_change_is_reloaded_as_revision_2_and_replaces_cached_decisions() {
    // Arrange
    let app = TestApp::spawn_with_policy_copy_and(without_test_gate).await;
    app.load_example().await;
    for _ in 0..2 {
        app.is_authorized_body(&olivia_reads_billing()).await;
    }
    let cached = app.is_authorized_body(&olivia_reads_billing()).await;
    assert_eq!(cached["decision"], "allow", "{cached}");
    assert_eq!(cached["cached"], true, "{cached}");
    write(&app.policies_dir().join("broken.cedar"), BROKEN_POLICY);
    let (refused, _) = app.post_json("/v1/policies/reload", &json!(null)).await;
    assert_eq!(refused, StatusCode::UNPROCESSABLE_ENTITY);
    std::fs::remove_file(app.policies_dir().join("broken.cedar")).expect("remove broken.cedar");
    remove_policy(&app.policies_dir(), "modules.cedar", "billing-read");

    // Act
    let (status, answer) = app.post_json("/v1/policies/reload", &json!(null)).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["revision"], 2);
    let after = app.is_authorized_body(&olivia_reads_billing()).await;
    assert_eq!(
        after["decision"], "deny",
        "a decision of revision 1 was served: {after}"
    );
    assert_eq!(after["policy_revision"], 2);
    assert_eq!(after["cached"], false);
    let status = app.policy_status().await;
    assert_eq!(status["revision"], 2);
    assert!(status["last_reload_error"].is_null(), "{status}");
    let ids: Vec<&str> = status["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(!ids.contains(&"billing-read"), "{ids:?}");
    assert!(ids.contains(&"billing-manage"), "{ids:?}");
}

on_both_backends!(the_policy_status_lists_every_policy_with_its_file_and_line);
async fn the_policy_status_lists_every_policy_with_its_file_and_line() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let status = app.policy_status().await;

    // Assert
    assert_eq!(status["revision"], 1);
    assert!(status["last_reload_error"].is_null());
    let policies = status["policies"].as_array().expect("policies");
    let shipped = std::fs::read_dir(repo_dir().join("policies"))
        .expect("the policies directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect::<Vec<_>>();
    let ids = shipped
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .expect("a policy file")
                .matches("@id(")
                .count()
        })
        .sum::<usize>();
    assert_eq!(policies.len(), ids, "{status}");
    let billing_read = policies
        .iter()
        .find(|p| p["id"] == "billing-read")
        .expect("billing-read is listed");
    assert_eq!(billing_read["effect"], "permit");
    assert!(
        billing_read["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("modules.cedar")),
        "{billing_read}"
    );
    assert!(
        billing_read["line"].as_u64().is_some_and(|l| l > 1),
        "{billing_read}"
    );
    assert_eq!(
        status["files"].as_array().map(Vec::len),
        Some(shipped.len())
    );
}

/// The answer policy set A (as shipped) or B (with `freeze-billing`) gives
/// olivia reading acme's billing.
fn expected_for_revision(revision: u64) -> (&'static str, Value) {
    // Revision 1 is A; each reload toggles.
    if revision % 2 == 1 {
        ("allow", json!(["billing-read"]))
    } else {
        ("deny", json!(["freeze-billing"]))
    }
}

/// Counts client tasks that ended, normally or by a panic.
struct ClientExited(Arc<AtomicUsize>);

impl Drop for ClientExited {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

on_both_backends!(
    reloads_under_load_never_fail_a_request_nor_mix_two_policy_sets,
    multi_thread
);
async fn reloads_under_load_never_fail_a_request_nor_mix_two_policy_sets() {
    // Arrange
    const CLIENTS: usize = 8;
    const REQUESTS: usize = 200;
    const RELOADS: u64 = 10;
    let app = TestApp::spawn_with_policy_copy_and(without_test_gate).await;
    app.load_example().await;
    let freeze = app.policies_dir().join("freeze.cedar");
    let answered = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let client = app.client.clone();
        let url = app.url("/v1/is_authorized");
        let token = app.token.clone();
        let answered = answered.clone();
        let exited = ClientExited(finished.clone());
        clients.spawn(async move {
            let _exited = exited;
            let mut answers = Vec::with_capacity(REQUESTS);
            for _ in 0..REQUESTS {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&olivia_reads_billing())
                    .send()
                    .await
                    .expect("the request is sent");
                let status = response.status();
                let text = response.text().await.expect("the body is read");
                answers.push((status, text));
                answered.fetch_add(1, Ordering::Relaxed);
            }
            answers
        });
    }

    // Act: spread the reloads over the load (waiting on progress, not time).
    for reload in 1..=RELOADS {
        let progress = CLIENTS * REQUESTS * (reload as usize - 1) / (2 * RELOADS as usize);
        while answered.load(Ordering::Relaxed) < progress
            && finished.load(Ordering::Relaxed) < CLIENTS
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if reload % 2 == 1 {
            write(&freeze, FREEZE_BILLING);
        } else {
            std::fs::remove_file(&freeze).expect("remove freeze.cedar");
        }
        let (status, answer) = app.post_json("/v1/policies/reload", &json!(null)).await;
        assert_eq!(status, StatusCode::OK, "reload {reload}: {answer}");
        assert_eq!(answer["revision"], reload + 1);
    }
    let answers: Vec<(StatusCode, String)> =
        clients.join_all().await.into_iter().flatten().collect();

    // Assert
    assert_eq!(answers.len(), CLIENTS * REQUESTS);
    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
        .collect();
    assert!(
        failed.is_empty(),
        "{} requests failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    let mut revisions = BTreeSet::new();
    for (_, text) in &answers {
        let answer: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let revision = answer["policy_revision"].as_u64().expect("a revision");
        let (decision, reasons) = expected_for_revision(revision);
        assert_eq!(
            answer["decision"], decision,
            "revision {revision}: {answer}"
        );
        assert_eq!(answer["reasons"], reasons, "revision {revision}: {answer}");
        assert_eq!(answer["errors"], json!([]), "{answer}");
        revisions.insert(revision);
    }
    assert!(
        revisions.iter().all(|r| (1..=RELOADS + 1).contains(r)),
        "{revisions:?}"
    );
    println!(
        "{} answers came from revisions {revisions:?}",
        answers.len()
    );
}

on_both_backends!(the_file_watcher_reloads_a_changed_policy_file);
async fn the_file_watcher_reloads_a_changed_policy_file() {
    // Arrange
    let app = TestApp::spawn_with_policy_copy_and(|cfg| {
        cfg.watch = true;
        without_test_gate(cfg);
    })
    .await;
    app.load_example().await;
    assert_eq!(app.policy_status().await["revision"], 1);

    // Act
    write(&app.policies_dir().join("freeze.cedar"), FREEZE_BILLING);

    // Assert: wait for the watcher (an external event), bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = app.policy_status().await;
        let reloaded = status["revision"].as_u64().is_some_and(|r| r >= 2);
        let listed = status["policies"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["id"] == "freeze-billing"));
        if reloaded && listed {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher did not reload within 30 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status["last_reload_error"].is_null(), "{status}");
    let answer = app.is_authorized_body(&olivia_reads_billing()).await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["reasons"], json!(["freeze-billing"]));
}

/// Waits until the server has attempted `n` reloads (an event of the
/// watcher, bounded generously) and returns the policy status.
async fn after_reload_attempts(app: &TestApp, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = app.policy_status().await;
        if status["reload_attempts"].as_u64().is_some_and(|a| a >= n) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no reload attempt {n} within 60 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests that a forbid of `membership.cedar` denies.
fn denied_by_membership_rules() -> [Value; 2] {
    [
        // pete is a PENDING member of acme.
        json!({"principal": uid("User", "pete"), "action": action("organization.read"),
               "resource": uid("Organization", "acme")}),
        // globex requires two-step verification; gwen has not passed it.
        json!({"principal": uid("User", "gwen"), "action": action("billing.read"),
               "resource": uid("Organization", "globex"), "context": {"mfa": false}}),
    ]
}

on_both_backends!(
    a_truncated_or_cut_policy_file_is_never_taken_and_no_wrong_allow_is_served,
    multi_thread
);
async fn a_truncated_or_cut_policy_file_is_never_taken_and_no_wrong_allow_is_served() {
    // Arrange: the watcher on, and readers deciding requests that only the
    // forbids of membership.cedar deny.
    let app = TestApp::spawn_with_policy_copy_and(|cfg| cfg.watch = true).await;
    app.load_example().await;
    let file = app.policies_dir().join("membership.cedar");
    let original = std::fs::read_to_string(&file).expect("read membership.cedar");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (api, stop) = (app.api(), stop.clone());
        readers.spawn(async move {
            let (mut decisions, mut wrong) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for request in denied_by_membership_rules() {
                    let answer = api.is_authorized_body(&request).await;
                    decisions += 1;
                    if answer["decision"] != "deny" {
                        wrong.push(answer);
                    }
                }
            }
            (decisions, wrong)
        });
    }

    // Act: an editor truncates the file, then the file is cut at a policy
    // boundary (the last two forbids gone), then restored.
    write(&file, "");
    let truncated = after_reload_attempts(&app, 1).await;
    let cut = original
        .find("@id(\"agent-never-manages-organization\")")
        .expect("a policy boundary");
    write(&file, &original[..cut]);
    let cut_status = after_reload_attempts(&app, 2).await;
    write(&file, &original);
    let restored = after_reload_attempts(&app, 3).await;
    stop.store(true, Ordering::Relaxed);
    let (mut decisions, mut wrong) = (0, Vec::new());
    for (n, w) in readers.join_all().await {
        decisions += n;
        wrong.extend(w);
    }

    // Assert
    eprintln!(
        "garbled policy files: {decisions} decisions, {} wrong allows",
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {decisions} answers were not a deny, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );
    for status in [&truncated, &cut_status] {
        assert_eq!(status["revision"], 1, "{status}");
        let error = status["last_reload_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("of their test suites") && error.contains("expected: deny"),
            "the refusal lists the failing cases: {status}"
        );
    }
    assert_eq!(restored["revision"], 2, "{restored}");
    assert!(restored["last_reload_error"].is_null(), "{restored}");
}

/// A policy that decides nothing: taking it changes no answer, so the test
/// suites pass and the revision shows the reload.
const MARKER: &str =
    "@id(\"watch-marker\")\nforbid (principal, action, resource) when { false };\n";

/// Waits until the policy set in force lists the marker policy.
async fn until_marker_listed(app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = app.policy_status().await;
        let listed = status["policies"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["id"] == "watch-marker"));
        if listed {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the marker policy was not loaded within 60 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both_backends!(the_watcher_survives_the_policy_directory_being_deleted_and_recreated);
async fn the_watcher_survives_the_policy_directory_being_deleted_and_recreated() {
    // Arrange
    let app = TestApp::spawn_with_policy_copy_and(|cfg| cfg.watch = true).await;
    app.load_example().await;
    let policies = app.policies_dir();
    let saved = app.dir().join("saved-policies");
    crate::helpers::copy_dir(&policies, &saved);

    // Act
    std::fs::remove_dir_all(&policies).expect("delete policies/");
    let missing = after_reload_attempts(&app, 1).await;
    crate::helpers::copy_dir(&saved, &policies);
    write(&policies.join("marker.cedar"), MARKER);

    // Assert
    assert_eq!(missing["revision"], 1, "{missing}");
    let status = until_marker_listed(&app).await;
    assert!(
        status["revision"].as_u64().is_some_and(|r| r >= 2),
        "{status}"
    );
    let answer = app.is_authorized_body(&olivia_reads_billing()).await;
    assert_eq!(answer["decision"], "allow", "{answer}");
}

on_both_backends!(the_watcher_follows_a_policy_directory_swapped_by_symlink);
async fn the_watcher_follows_a_policy_directory_swapped_by_symlink() {
    // Arrange: policies -> releases/v1, the atomic deploy pattern.
    let releases = tempfile::tempdir().expect("a temporary directory");
    let (v1, v2) = (releases.path().join("v1"), releases.path().join("v2"));
    crate::helpers::copy_dir(&repo_dir().join("policies"), &v1);
    crate::helpers::copy_dir(&repo_dir().join("policies"), &v2);
    write(&v2.join("marker.cedar"), MARKER);
    let link = releases.path().join("policies");
    std::os::unix::fs::symlink(&v1, &link).expect("link policies to v1");
    let watched = link.clone();
    let app = TestApp::spawn_with(|cfg| {
        cfg.watch = true;
        cfg.policy.policies = watched;
    })
    .await;
    app.load_example().await;

    // Act: point a new link at v2 and rename it over the old one.
    let next = releases.path().join("policies.next");
    std::os::unix::fs::symlink(&v2, &next).expect("link to v2");
    std::fs::rename(&next, &link).expect("swap the link");

    // Assert
    let status = until_marker_listed(&app).await;
    assert!(
        status["revision"].as_u64().is_some_and(|r| r >= 2),
        "{status}"
    );
}
