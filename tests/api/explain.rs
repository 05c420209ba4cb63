//! Decisions explained at the level of conditions: `explain: true` on the
//! native API, `options.explain` on AuthZEN, and `cedargate check
//! --explain`. A Deny names the permit that would have applied and the
//! first of its conditions that did not hold, with the values.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{Value, json};

use crate::cli::Workspace;
use crate::helpers::{TestApp, action, uid};

/// The condition Rita (Billing=Read in acme) lacks to manage billing.
const BILLING_MANAGE: &str = "principal.getTag(resource.tenant).perms.billing == 2";

fn rita_manages_billing(explain: bool) -> Value {
    json!({
        "principal": uid("User", "rita"),
        "action": action("billing.manage"),
        "resource": uid("Organization", "acme"),
        "explain": explain,
    })
}

fn unsatisfied<'a>(explanation: &'a Value, policy: &str) -> &'a Value {
    explanation["unsatisfied"]
        .as_array()
        .and_then(|all| all.iter().find(|u| u["policy"] == policy))
        .unwrap_or_else(|| panic!("no unsatisfied `{policy}` in {explanation}"))
}

on_both_backends!(a_native_deny_names_the_missing_condition_and_its_values);
async fn a_native_deny_names_the_missing_condition_and_its_values() {
    // Arrange: the plain decision is cached first.
    let app = TestApp::spawn().await;
    app.load_example().await;
    app.is_authorized_body(&rita_manages_billing(false)).await;
    let cached = app.is_authorized_body(&rita_manages_billing(false)).await;

    // Act
    let explained = app.is_authorized_body(&rita_manages_billing(true)).await;

    // Assert
    assert_eq!(cached["cached"], json!(true), "{cached}");
    assert!(cached.get("explanation").is_none(), "{cached}");
    assert_eq!(explained["decision"], "deny", "{explained}");
    assert_eq!(explained["cached"], json!(false), "{explained}");
    let billing = unsatisfied(&explained["explanation"], "billing-manage");
    assert_eq!(billing["condition"], BILLING_MANAGE, "{explained}");
    assert_eq!(billing["evaluated"], "1 == 2", "{explained}");
    assert!(
        billing["at"]
            .as_str()
            .is_some_and(|at| at.contains("modules.cedar:")),
        "{explained}"
    );
}

on_both_backends!(a_forbid_that_fired_is_explained_with_its_message_and_an_allow_by_its_permits);
async fn a_forbid_that_fired_is_explained_with_its_message_and_an_allow_by_its_permits() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let request = |user: &str| {
        json!({
            "principal": uid("User", user),
            "action": action("billing.read"),
            "resource": uid("Organization", "acme"),
        })
    };

    // Act
    let (status, batch) = app
        .post_json(
            "/v1/is_authorized/batch",
            &json!({"requests": [request("pete"), request("olivia")], "explain": true}),
        )
        .await;

    // Assert
    assert!(status.is_success(), "{batch}");
    let pete = &batch["results"][0]["explanation"]["determining"][0];
    assert_eq!(pete["policy"], "member-must-be-active", "{batch}");
    assert_eq!(pete["effect"], "forbid", "{batch}");
    assert_eq!(
        pete["message"], "only ACTIVE members may act in an organization",
        "{batch}"
    );
    let olivia = &batch["results"][1]["explanation"];
    assert_eq!(
        olivia["determining"][0]["policy"], "billing-read",
        "{batch}"
    );
    assert!(olivia.get("unsatisfied").is_none(), "{batch}");
}

on_both_backends!(an_authzen_deny_explains_itself_in_reason_admin);
async fn an_authzen_deny_explains_itself_in_reason_admin() {
    // Arrange
    let app = TestApp::spawn().await;
    app.load_example().await;
    let evaluation = json!({
        "subject": {"type": "User", "id": "rita"},
        "action": {"name": "billing.manage"},
        "resource": {"type": "Organization", "id": "acme"},
        "options": {"explain": true},
    });

    // Act
    let (status, answer) = app.post_json("/access/v1/evaluation", &evaluation).await;

    // Assert
    assert!(status.is_success(), "{answer}");
    assert_eq!(answer["decision"], json!(false), "{answer}");
    let reason = &answer["context"]["reason_admin"];
    let billing = unsatisfied(&reason["explanation"], "billing-manage");
    assert_eq!(billing["evaluated"], "1 == 2", "{answer}");
    let en = reason["en"].as_str().unwrap_or_default();
    assert!(
        en.contains(&format!(
            "billing-manage needs `{BILLING_MANAGE}` (was `1 == 2`)"
        )),
        "{answer}"
    );
}

#[test]
fn check_explain_prints_the_condition_that_did_not_hold() {
    // Arrange
    let workspace = Workspace::new();
    let mut command: Command = workspace.cedargate();
    command.args([
        "check",
        "--principal",
        r#"User::"rita""#,
        "--action",
        "billing.manage",
        "--resource",
        r#"Organization::"acme""#,
        "--entities",
        "policies/tests/entities/orgs.json",
        "--explain",
    ]);

    // Act
    let assert = command.assert();

    // Assert
    assert
        .success()
        .stdout(predicate::str::contains("decision: DENY"))
        .stdout(predicate::str::contains("permit billing-manage"))
        .stdout(predicate::str::contains(format!("needs {BILLING_MANAGE}")))
        .stdout(predicate::str::contains("was   1 == 2"));
}

/// The organization-level condition a member without Organization=Manage
/// lacks to administer users.
const ORGANIZATION_MANAGE: &str = "principal.getTag(resource.tenant).perms.organization == 2";

on_both_backends!(an_invitation_service_refusal_names_the_missing_permission_first);
async fn an_invitation_service_refusal_names_the_missing_permission_first() {
    let app = TestApp::spawn_with_admin().await;
    app.create_org("acme", "olivia@acme.example").await;
    app.member_joins(
        "olivia@acme.example",
        "acme",
        "rita@acme.example",
        json!({"permissions": {"billing": "Read"}}),
    )
    .await;

    let refused = app
        .invite_email("rita@acme.example", "acme", "sam@acme.example", json!({}))
        .await;

    assert_eq!(
        refused.status,
        reqwest::StatusCode::FORBIDDEN,
        "{}",
        refused.text
    );
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with("`users.invite` not allowed: "),
        "{message}"
    );
    let first = message.split("; ").next().unwrap_or_default();
    assert!(
        first.contains(ORGANIZATION_MANAGE) && first.contains("`0 == 2`"),
        "the first reason should be the missing Organization=Manage with its values: {message}"
    );
    assert!(
        message.contains("principal.systemAdmin"),
        "the other permit in scope is named too: {message}"
    );
}
