//! An organization's settings after creation (`GET`/`PATCH /v1/orgs/{org}`):
//! the owner's "Security Policies" page turning on two-step verification.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ORG, OWNER, acme};
use crate::helpers::{TestApp, uid};
use crate::invite_helpers::{Reply, assert_invalid};

fn settings_path(org: &str) -> String {
    format!("/v1/orgs/{org}")
}

/// `PATCH /v1/orgs/{org}` as `actor`, whose session passed MFA or not.
async fn patch_settings(app: &TestApp, actor: &str, org: &str, mfa: bool, body: &Value) -> Reply {
    let request = app
        .request(Method::PATCH, &settings_path(org))
        .header("X-Cedargate-Actor", actor)
        .header("X-Cedargate-Actor-Mfa", if mfa { "true" } else { "false" })
        .json(body);
    TestApp::reply(request).await
}

/// The decision for `user_id` reading billing in `acme`, with or without MFA.
async fn reads_billing(app: &TestApp, user_id: &str, mfa: bool) -> Value {
    app.is_authorized(
        uid("User", user_id),
        crate::helpers::action("billing.read"),
        uid("Organization", ORG),
        json!({"mfa": mfa}),
    )
    .await
}

on_both_backends!(the_owner_requires_two_step_verification_effective_on_the_next_decision);
async fn the_owner_requires_two_step_verification_effective_on_the_next_decision() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    let before = reads_billing(&app, &rita, false).await;

    // Act
    let read = app.get(OWNER, &settings_path(ORG)).await;
    let changed = patch_settings(&app, OWNER, ORG, false, &json!({"requireMfa": true})).await;
    let without_mfa = reads_billing(&app, &rita, false).await;
    let with_mfa = reads_billing(&app, &rita, true).await;
    let reread = app.get(OWNER, &settings_path(ORG)).await;

    // Assert
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["requireMfa"], json!(false), "{}", read.text);
    assert_eq!(read.body["orgId"], json!(ORG), "{}", read.text);
    assert_eq!(before["decision"], "allow", "{before}");
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["requireMfa"], json!(true), "{}", changed.text);
    assert!(changed.body["revision"].is_u64(), "{}", changed.text);
    assert_eq!(without_mfa["decision"], "deny", "{without_mfa}");
    assert_eq!(
        without_mfa["reasons"],
        json!(["organization-requires-mfa"]),
        "{without_mfa}"
    );
    assert_eq!(with_mfa["decision"], "allow", "{with_mfa}");
    // The owner's own session without MFA is now refused too.
    assert_eq!(reread.status, StatusCode::FORBIDDEN, "{}", reread.text);
}

on_both_backends!(turning_two_step_verification_off_needs_a_verified_session_and_is_audited);
async fn turning_two_step_verification_off_needs_a_verified_session_and_is_audited() {
    // Arrange
    let (app, _) = acme().await;
    let on = patch_settings(&app, OWNER, ORG, false, &json!({"requireMfa": true})).await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.text);

    // Act
    let unverified = patch_settings(&app, OWNER, ORG, false, &json!({"requireMfa": false})).await;
    let verified = patch_settings(
        &app,
        OWNER,
        ORG,
        true,
        &json!({"requireMfa": false, "name": "Acme Registry"}),
    )
    .await;

    // Assert
    assert_eq!(
        unverified.status,
        StatusCode::FORBIDDEN,
        "{}",
        unverified.text
    );
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text);
    assert_eq!(verified.body["name"], "Acme Registry", "{}", verified.text);
    assert_eq!(
        verified.body["requireMfa"],
        json!(false),
        "{}",
        verified.text
    );
    let records = app
        .audit(OWNER, ORG, "?action=organization.settingsChanged")
        .await;
    let changes: Vec<(Value, Value)> = records
        .iter()
        .map(|r| {
            (
                r["before"]["requireMfa"].clone(),
                r["after"]["requireMfa"].clone(),
            )
        })
        .collect();
    assert!(
        changes.contains(&(json!(false), json!(true))),
        "{records:?}"
    );
    assert!(
        changes.contains(&(json!(true), json!(false))),
        "{records:?}"
    );
    let refused = app.audit(OWNER, ORG, "?action=organization.manage").await;
    assert!(
        refused.iter().any(|r| r["outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("denied"))),
        "the refused change is audited: {refused:?}"
    );
}

on_both_backends!(only_managers_change_settings_and_outsiders_learn_nothing);
async fn only_managers_change_settings_and_outsiders_learn_nothing() {
    // Arrange: a reader of the organization, and a stranger without any
    // membership.
    let (app, _) = acme().await;
    app.member_joins(
        OWNER,
        ORG,
        "rita@acme.example",
        json!({"permissions": {"organization": "Read"}}),
    )
    .await;
    app.create_org("globex", "gwen@globex.example").await;
    let body = json!({"requireMfa": true});

    // Act
    let reader_reads = app.get("rita@acme.example", &settings_path(ORG)).await;
    let reader_changes = patch_settings(&app, "rita@acme.example", ORG, true, &body).await;
    let outsider_existing = patch_settings(&app, "gwen@globex.example", ORG, true, &body).await;
    let outsider_missing =
        patch_settings(&app, "gwen@globex.example", "nowhere", true, &body).await;
    let owner_missing = app.get(OWNER, &settings_path("nowhere")).await;

    // Assert
    assert_eq!(reader_reads.status, StatusCode::OK, "{}", reader_reads.text);
    assert_eq!(
        reader_changes.status,
        StatusCode::FORBIDDEN,
        "{}",
        reader_changes.text
    );
    assert_eq!(
        outsider_existing.status,
        StatusCode::FORBIDDEN,
        "{}",
        outsider_existing.text
    );
    assert_eq!(
        (outsider_missing.status, outsider_missing.code()),
        (outsider_existing.status, outsider_existing.code()),
        "{} / {}",
        outsider_missing.text,
        outsider_existing.text
    );
    // The owner of another organization is an outsider to `nowhere` too.
    assert_eq!(
        owner_missing.status,
        StatusCode::FORBIDDEN,
        "{}",
        owner_missing.text
    );
    let settings = app.get(OWNER, &settings_path(ORG)).await;
    assert_eq!(
        settings.body["requireMfa"],
        json!(false),
        "{}",
        settings.text
    );
}

on_both_backends!(settings_changes_are_validated);
async fn settings_changes_are_validated() {
    // Arrange
    let (app, _) = acme().await;

    // Act
    let blank = patch_settings(&app, OWNER, ORG, false, &json!({"name": "  "})).await;
    let unknown = patch_settings(&app, OWNER, ORG, false, &json!({"mfa": true})).await;

    // Assert
    assert_invalid(&blank, "name");
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
}
