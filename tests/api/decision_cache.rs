//! A decision cache that survives writes: a write retires the cached
//! decisions that read what it wrote, including entities they looked for
//! and did not find, and no other.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, action, uid};

async fn olivia_reads_billing(app: &TestApp) -> Value {
    app.is_authorized(
        uid("User", "olivia"),
        action("billing.read"),
        uid("Organization", "acme"),
        json!({}),
    )
    .await
}

on_both_backends!(a_write_to_an_entity_the_decision_did_not_read_leaves_it_cached);
async fn a_write_to_an_entity_the_decision_did_not_read_leaves_it_cached() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let first = olivia_reads_billing(&app).await;
    let unrelated = json!([{"uid": {"type": "Account", "id": "globex-new"},
                            "attrs": {"tenant": "globex", "accountType": "Active"}, "parents": []}]);

    // Act
    let (status, body) = app.put_json("/v1/entities", &unrelated).await;
    let after = olivia_reads_billing(&app).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(first["cached"], false, "{first}");
    assert_eq!(after["decision"], "allow", "{after}");
    assert_eq!(
        after["cached"], true,
        "a write elsewhere must not empty the cache: {after}"
    );
}

/// A model where folders nest and a policy reads an attribute's ancestors,
/// so that a decision depends on entities it looked for and did not find.
async fn folders() -> (TestApp, tempfile::TempDir) {
    let model = tempfile::tempdir().expect("a temporary directory");
    let schema = model.path().join("folders.cedarschema");
    let policies = model.path().join("folders.cedar");
    std::fs::write(
        &schema,
        r#"entity User in [Team]; entity Team; entity Folder in [Folder] { owner: User };
           action "read" appliesTo { principal: [User], resource: [Folder] };
           action "audit" appliesTo { principal: [User], resource: [Folder] };"#,
    )
    .expect("the schema is written");
    std::fs::write(
        &policies,
        r#"@id("read-under-root") permit (principal, action == Action::"read", resource in Folder::"root");
           @id("audit-owned-by-auditors") permit (principal, action == Action::"audit", resource)
             when { resource.owner in Team::"auditors" };"#,
    )
    .expect("the policies are written");
    let app = TestApp::spawn_with(|cfg| {
        cfg.policy.policies = policies.clone();
        cfg.policy.schema = schema.clone();
    })
    .await;
    (app, model)
}

async fn ann_may(app: &TestApp, what: &str, folder: &str) -> Value {
    app.is_authorized(
        uid("User", "ann"),
        action(what),
        uid("Folder", folder),
        json!({}),
    )
    .await
}

async fn put(app: &TestApp, entities: Value) {
    let (status, body) = app.put_json("/v1/entities", &entities).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

on_both_backends!(a_missing_ancestor_that_appears_changes_a_cached_decision);
async fn a_missing_ancestor_that_appears_changes_a_cached_decision() {
    // Arrange: folder `a` sits in `b`, which nobody stored yet.
    let (app, _model) = folders().await;
    put(
        &app,
        json!([
            {"uid": {"type": "User", "id": "ann"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Folder", "id": "a"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "ann"}}},
             "parents": [{"type": "Folder", "id": "b"}]},
        ]),
    )
    .await;
    ann_may(&app, "read", "a").await;
    let cached = ann_may(&app, "read", "a").await;

    // Act: `b` appears, under `root`.
    put(
        &app,
        json!([{"uid": {"type": "Folder", "id": "b"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "ann"}}},
                "parents": [{"type": "Folder", "id": "root"}]}]),
    )
    .await;
    let after = ann_may(&app, "read", "a").await;

    // Assert
    assert_eq!(cached["decision"], "deny", "{cached}");
    assert_eq!(cached["cached"], true, "{cached}");
    assert_eq!(
        after["decision"], "allow",
        "a stale deny was served: {after}"
    );
}

on_both_backends!(a_missing_referenced_entity_that_appears_changes_a_cached_decision);
async fn a_missing_referenced_entity_that_appears_changes_a_cached_decision() {
    // Arrange: folder `f` is owned by `bob`, who is not stored yet, so
    // `resource.owner in Team::"auditors"` is false.
    let (app, _model) = folders().await;
    put(
        &app,
        json!([
            {"uid": {"type": "User", "id": "ann"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Folder", "id": "f"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "bob"}}},
             "parents": []},
        ]),
    )
    .await;
    ann_may(&app, "audit", "f").await;
    let cached = ann_may(&app, "audit", "f").await;

    // Act: bob appears, an auditor.
    put(
        &app,
        json!([{"uid": {"type": "User", "id": "bob"}, "attrs": {},
                "parents": [{"type": "Team", "id": "auditors"}]}]),
    )
    .await;
    let after = ann_may(&app, "audit", "f").await;

    // Assert
    assert_eq!(cached["decision"], "deny", "{cached}");
    assert_eq!(cached["errors"], json!([]), "{cached}");
    assert_eq!(cached["cached"], true, "{cached}");
    assert_eq!(
        after["decision"], "allow",
        "a stale deny was served: {after}"
    );
}
