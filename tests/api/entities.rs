//! Entity writes, persistence, and caches that never serve a decision made
//! before a write.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, action, example_entity, uid};

async fn olivia_reads_billing(app: &TestApp) -> Value {
    app.is_authorized(
        uid("User", "olivia"),
        action("billing.read"),
        uid("Organization", "acme"),
        json!({}),
    )
    .await
}

async fn olivia_reads_account(app: &TestApp, account: &str) -> Value {
    app.is_authorized(
        uid("User", "olivia"),
        action("accounts.read"),
        uid("Account", account),
        json!({}),
    )
    .await
}

on_both_backends!(a_put_with_one_invalid_entity_is_a_400_naming_it_and_writes_nothing);
async fn a_put_with_one_invalid_entity_is_a_400_naming_it_and_writes_nothing() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let valid = json!({"uid": {"type": "Account", "id": "acme-new"}, "attrs": {"tenant": "acme", "accountType": "Active"}, "parents": []});
    let invalid = json!({"uid": {"type": "Account", "id": "acme-broken"}, "attrs": {"tenant": "acme", "accountType": 5}, "parents": []});
    let before = olivia_reads_account(&app, "acme-new").await;

    // Act
    let (status, answer) = app.put_json("/v1/entities", &json!([valid, invalid])).await;

    // Assert
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_entities", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("acme-broken"),
        "the message names the invalid entity: {message}"
    );
    let after = olivia_reads_account(&app, "acme-new").await;
    assert_eq!(before["decision"], "deny", "{before}");
    assert_eq!(
        after["decision"], "deny",
        "the valid entity must not have been written: {after}"
    );
    assert_eq!(after["errors"], before["errors"], "{after}");
    // The same entity alone is accepted and then decides.
    let (status, answer) = app.put_json("/v1/entities", &json!([valid])).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["upserted"], 1);
    assert_eq!(
        olivia_reads_account(&app, "acme-new").await["decision"],
        "allow"
    );
}

on_both_backends!(a_put_that_is_not_an_array_of_entities_is_a_400);
async fn a_put_that_is_not_an_array_of_entities_is_a_400() {
    // Arrange
    let app = TestApp::spawn().await;
    let bodies = [
        json!({"uid": {"type": "Organization", "id": "x"}}),
        json!([{"attrs": {}}]),
        json!([{"uid": {"type": "Robot", "id": "x"}, "attrs": {}, "parents": []}]),
        json!([
            example_entity("Organization", "acme"),
            example_entity("Organization", "acme")
        ]),
    ];

    for body in bodies {
        // Act
        let (status, answer) = app.put_json("/v1/entities", &body).await;

        // Assert
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_entities", "{answer}");
    }
}

on_both_backends!(deleting_an_entity_is_204_and_deleting_it_again_is_404);
async fn deleting_an_entity_is_204_and_deleting_it_again_is_404() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;

    // Act
    let (first, _) = app.delete("/v1/entities/Account/acme-active-2").await;
    let (second, answer) = app.delete("/v1/entities/Account/acme-active-2").await;

    // Assert
    assert_eq!(first, StatusCode::NO_CONTENT);
    assert_eq!(second, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["code"], "not_found");
}

on_both_backends!(ids_with_slashes_and_quotes_are_deleted_when_percent_encoded);
async fn ids_with_slashes_and_quotes_are_deleted_when_percent_encoded() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let odd = json!([{"uid": {"type": "Department", "id": "acme/r&d \"labs\""}, "attrs": {"tenant": "acme", "name": "R&D"}, "parents": []}]);
    let (status, answer) = app.put_json("/v1/entities", &odd).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Act
    let (deleted, _) = app.delete("/v1/entities/Membership/acme%2Folivia").await;
    let (odd_deleted, answer) = app
        .delete("/v1/entities/Department/acme%2Fr%26d%20%22labs%22")
        .await;

    // Assert
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    assert_eq!(odd_deleted, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(olivia_reads_billing(&app).await["decision"], "deny");
}

on_both_backends!(entities_persist_across_a_restart_on_the_same_database_file);
async fn entities_persist_across_a_restart_on_the_same_database_file() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let (status, _) = app.delete("/v1/entities/Membership/acme%2Fpete").await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Act
    let app = app.restart().await;

    // Assert
    let olivia = olivia_reads_billing(&app).await;
    assert_eq!(olivia["decision"], "allow", "{olivia}");
    assert_eq!(olivia["cached"], false, "a new process has an empty cache");
    let (status, _) = app.delete("/v1/entities/Membership/acme%2Fpete").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the deletion persisted too");
}

on_both_backends!(a_membership_change_changes_the_next_decision_even_after_it_was_cached);
async fn a_membership_change_changes_the_next_decision_even_after_it_was_cached() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let first = olivia_reads_billing(&app).await;
    let second = olivia_reads_billing(&app).await;
    let third = olivia_reads_billing(&app).await;
    assert_eq!(first["decision"], "allow", "{first}");
    assert_eq!(first["cached"], false);
    assert_eq!(second["cached"], true, "{second}");
    assert_eq!(third["cached"], true, "{third}");
    let mut membership = example_entity("Membership", "acme/olivia");
    membership["attrs"]["perms"]["billing"] = json!(0);

    // Act
    let (status, answer) = app.put_json("/v1/entities", &json!([membership])).await;
    let after = olivia_reads_billing(&app).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        after["decision"], "deny",
        "a cached allow was served after the write: {after}"
    );
    assert_eq!(after["cached"], false);
    assert_eq!(after["reasons"], json!([]));
}

on_both_backends!(a_deletion_changes_the_next_decision_even_after_it_was_cached);
async fn a_deletion_changes_the_next_decision_even_after_it_was_cached() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    for _ in 0..3 {
        olivia_reads_billing(&app).await;
    }
    let cached = olivia_reads_billing(&app).await;
    assert_eq!(cached["decision"], "allow");
    assert_eq!(cached["cached"], true);

    // Act
    let (status, _) = app.delete("/v1/entities/User/olivia").await;
    let after = olivia_reads_billing(&app).await;

    // Assert
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        after["decision"], "deny",
        "a cached allow was served after the deletion: {after}"
    );
    assert_eq!(after["cached"], false);
}

on_both_backends!(a_change_to_an_entity_two_hops_away_changes_the_next_decision);
async fn a_change_to_an_entity_two_hops_away_changes_the_next_decision() {
    // Arrange: globex requires MFA; gwen's decision goes through her
    // membership to the organization.
    let app = TestApp::spawn().await;
    app.load_example().await;
    let ask = || {
        app.is_authorized(
            uid("User", "gwen"),
            action("billing.read"),
            uid("Organization", "globex"),
            json!({}),
        )
    };
    ask().await;
    let cached = ask().await;
    assert_eq!(cached["decision"], "deny");
    assert_eq!(cached["reasons"], json!(["organization-requires-mfa"]));
    assert_eq!(cached["cached"], true);
    let mut globex = example_entity("Organization", "globex");
    globex["attrs"]["requireMfa"] = json!(false);

    // Act
    let (status, answer) = app.put_json("/v1/entities", &json!([globex])).await;
    let after = ask().await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(after["decision"], "allow", "{after}");
    assert_eq!(after["reasons"], json!(["billing-read"]));
}

on_both_backends!(a_hierarchy_cycle_closed_by_two_writes_is_a_deny_with_the_error);
async fn a_hierarchy_cycle_closed_by_two_writes_is_a_deny_with_the_error() {
    // Arrange: a model where folders nest, so two separate writes can close
    // a cycle that neither write alone contains.
    let model = tempfile::tempdir().expect("a temporary directory");
    let schema = model.path().join("folders.cedarschema");
    let policies = model.path().join("folders.cedar");
    std::fs::write(
        &schema,
        r#"entity User; entity Folder in [Folder];
           action "read" appliesTo { principal: [User], resource: [Folder] };"#,
    )
    .expect("the schema is written");
    std::fs::write(
        &policies,
        r#"@id("read-under-root") permit (principal, action, resource in Folder::"root");"#,
    )
    .expect("the policies are written");
    let app = TestApp::spawn_with(|cfg| {
        cfg.policy.policies = policies.clone();
        cfg.policy.schema = schema.clone();
    })
    .await;
    let folder = |id: &str, parent: &str| json!({"uid": {"type": "Folder", "id": id}, "attrs": {}, "parents": [{"type": "Folder", "id": parent}]});
    let user = json!({"uid": {"type": "User", "id": "ann"}, "attrs": {}, "parents": []});
    let (status, body) = app
        .put_json(
            "/v1/entities",
            &json!([user, folder("a", "b"), folder("b", "root")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let read_a = || {
        app.is_authorized(
            uid("User", "ann"),
            action("read"),
            uid("Folder", "a"),
            json!({}),
        )
    };
    let before = read_a().await;

    // Act
    let (status, body) = app
        .put_json(
            "/v1/entities",
            // Still under root, so without the cycle the answer would stay allow.
            &json!([{"uid": {"type": "Folder", "id": "b"}, "attrs": {},
                     "parents": [{"type": "Folder", "id": "a"}, {"type": "Folder", "id": "root"}]}]),
        )
        .await;
    let after = read_a().await;

    // Assert
    assert_eq!(before["decision"], "allow", "{before}");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(after["decision"], "deny", "{after}");
    let errors = after["errors"].to_string();
    assert!(
        errors.contains("cycle"),
        "the error names the cycle: {after}"
    );
}
