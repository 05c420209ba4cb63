//! The policies on user administration and agents (E12-E17) and the daily invitation limit (E23).

use reqwest::StatusCode;
use serde_json::json;

use super::{ORG, OWNER, acme, bulk, members_path, set_status};
use crate::helpers::TestApp;
use crate::invite_helpers::{ADMIN_EMAIL, assert_forbidden_by, assert_invalid};

// ------------------------------------------------------------------ policies on user administration

on_both_backends!(a_user_admin_cannot_grant_billing_manage_which_they_do_not_hold);
async fn a_user_admin_cannot_grant_billing_manage_which_they_do_not_hold() {
    // Arrange
    let (app, _) = acme().await;
    app.member_joins(OWNER, ORG, "uma@acme.example", json!({"role": "UserAdmin"}))
        .await;

    // Act
    let beyond = app
        .invite_email(
            "uma@acme.example",
            ORG,
            "bill@acme.example",
            json!({"permissions": {"billing": "Manage"}}),
        )
        .await;
    let within = app
        .invite_email(
            "uma@acme.example",
            ORG,
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;

    // Assert
    assert_forbidden_by(&beyond, "no-grant-beyond-own");
    assert!(
        beyond.message().contains("`permissions`"),
        "{}",
        beyond.text
    );
    assert!(
        app.members_with_email(OWNER, ORG, "bill@acme.example")
            .await
            .is_empty()
    );
    assert_eq!(within.status, StatusCode::CREATED, "{}", within.text);
}

on_both_backends!(
    nobody_may_invite_an_agent_with_organization_manage_not_even_a_system_administrator
);
async fn nobody_may_invite_an_agent_with_organization_manage_not_even_a_system_administrator() {
    // Arrange
    let (app, _) = acme().await;
    let agent = json!({"agent": true, "permissions": {"organization": "Manage"}});

    for actor in [OWNER, ADMIN_EMAIL] {
        // Act
        let reply = app
            .invite_email(actor, ORG, "alex@agency.example", agent.clone())
            .await;

        // Assert
        assert_forbidden_by(&reply, "no-agent-organization-manage-grant");
        assert!(
            reply.message().contains("`permissions.organization`"),
            "{}",
            reply.text
        );
    }
    assert!(
        app.members_with_email(OWNER, ORG, "alex@agency.example")
            .await
            .is_empty()
    );
}

on_both_backends!(flagging_an_existing_manager_as_an_agent_is_refused);
async fn flagging_an_existing_manager_as_an_agent_is_refused() {
    // Arrange
    let (app, _) = acme().await;
    let uma = app
        .member_joins(OWNER, ORG, "uma@acme.example", json!({"role": "UserAdmin"}))
        .await;

    // Act
    let reply = app
        .patch(OWNER, &members_path(&uma), &json!({"agent": true}))
        .await;

    // Assert
    assert_forbidden_by(&reply, "no-agent-organization-manage-grant");
    let uma_now = app.member(OWNER, ORG, "uma@acme.example").await;
    assert_eq!(uma_now["agent"], false, "{uma_now}");
}

on_both_backends!(a_manager_cannot_edit_deactivate_or_remove_themselves);
async fn a_manager_cannot_edit_deactivate_or_remove_themselves() {
    // Arrange
    let (app, olivia) = acme().await;
    app.member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;

    // Act
    let edit = app
        .patch(
            OWNER,
            &members_path(&olivia),
            &json!({"permissions": {"billing": "None"}}),
        )
        .await;
    let status = set_status(&app, OWNER, &olivia, "INACTIVE").await;
    let remove = app.delete_as(OWNER, &members_path(&olivia)).await;

    // Assert
    assert_forbidden_by(&edit, "no-self-administration");
    assert_forbidden_by(&status, "no-self-administration");
    assert_forbidden_by(&remove, "no-self-administration");
    let olivia_now = app.member(OWNER, ORG, OWNER).await;
    assert_eq!(olivia_now["status"], "ACTIVE");
    assert_eq!(olivia_now["permissions"]["billing"], "Manage");
}

on_both_backends!(the_last_manager_can_be_neither_deactivated_removed_nor_demoted);
async fn the_last_manager_can_be_neither_deactivated_removed_nor_demoted() {
    // Arrange: a second owner who has not accepted yet does not count
    let (app, olivia) = acme().await;
    app.invited(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;

    // Act
    let deactivate = set_status(&app, ADMIN_EMAIL, &olivia, "INACTIVE").await;
    let remove = app.delete_as(ADMIN_EMAIL, &members_path(&olivia)).await;
    let demote = app
        .patch(
            ADMIN_EMAIL,
            &members_path(&olivia),
            &json!({"permissions": {"organization": "Read"}}),
        )
        .await;

    // Assert
    assert_forbidden_by(&deactivate, "keep-last-manager");
    assert!(
        deactivate.message().contains("`status`"),
        "{}",
        deactivate.text
    );
    assert_forbidden_by(&remove, "keep-last-manager");
    assert_forbidden_by(&demote, "keep-last-manager-level");
    assert!(
        demote.message().contains("`permissions.organization`"),
        "{}",
        demote.text
    );
    let olivia_now = app.member(OWNER, ORG, OWNER).await;
    assert_eq!(olivia_now["status"], "ACTIVE");
    assert_eq!(olivia_now["permissions"]["organization"], "Manage");
}

on_both_backends!(with_a_second_manager_the_first_can_be_deactivated_demoted_and_removed);
async fn with_a_second_manager_the_first_can_be_deactivated_demoted_and_removed() {
    // Arrange
    let (app, olivia) = acme().await;
    app.member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;
    let mark = "mark@acme.example";

    // Act
    let deactivate = set_status(&app, mark, &olivia, "INACTIVE").await;
    let reactivate = set_status(&app, mark, &olivia, "ACTIVE").await;
    let demote = app
        .patch(
            mark,
            &members_path(&olivia),
            &json!({"permissions": {"organization": "Read"}}),
        )
        .await;
    let remove = app.delete_as(mark, &members_path(&olivia)).await;

    // Assert
    assert_eq!(deactivate.status, StatusCode::OK, "{}", deactivate.text);
    assert_eq!(deactivate.body["status"], "INACTIVE");
    assert_eq!(reactivate.status, StatusCode::OK, "{}", reactivate.text);
    assert_eq!(demote.status, StatusCode::OK, "{}", demote.text);
    assert_eq!(demote.body["permissions"]["organization"], "Read");
    assert_eq!(remove.status, StatusCode::NO_CONTENT, "{}", remove.text);
    assert!(app.members_with_email(mark, ORG, OWNER).await.is_empty());
    assert!(!app.allowed(&olivia, "organization.read", ORG).await);
}

// ------------------------------------------------------------------ agents

on_both_backends!(an_agent_who_accepted_is_denied_everything_until_a_system_administrator_approves);
async fn an_agent_who_accepted_is_denied_everything_until_a_system_administrator_approves() {
    // Arrange
    let (app, _) = acme().await;
    let agent = app
        .member_joins(
            OWNER,
            ORG,
            "alex@agency.example",
            json!({"agent": true, "permissions": {"transactions": "Read"}}),
        )
        .await;
    let approval = format!("{}/agent-approval", members_path(&agent));
    let before = app.decide(&agent, "transactions.read", ORG).await;

    // Act
    let no_designation = app
        .put(ADMIN_EMAIL, &approval, &json!({"approved": true}))
        .await;
    let by_owner = app
        .put(
            OWNER,
            &approval,
            &json!({"approved": true, "designation": "NAD-2024-017"}),
        )
        .await;
    let still_denied = app.allowed(&agent, "transactions.read", ORG).await;
    let approved = app
        .put(
            ADMIN_EMAIL,
            &approval,
            &json!({"approved": true, "designation": "NAD-2024-017"}),
        )
        .await;

    // Assert
    assert_eq!(before["decision"], "deny", "{before}");
    assert_eq!(
        before["reasons"],
        json!(["agent-must-be-approved"]),
        "{before}"
    );
    let member = app.member(OWNER, ORG, "alex@agency.example").await;
    assert_eq!(member["agent"], true);
    assert_invalid(&no_designation, "designation");
    assert_eq!(by_owner.status, StatusCode::FORBIDDEN, "{}", by_owner.text);
    assert_eq!(by_owner.code(), "forbidden");
    assert!(
        by_owner.message().contains("agents.approve"),
        "{}",
        by_owner.text
    );
    assert!(!still_denied);
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.body["agent_approved"], true);
    assert_eq!(approved.body["agent_designation"], "NAD-2024-017");
    assert!(app.allowed(&agent, "transactions.read", ORG).await);
    assert!(!app.allowed(&agent, "transactions.manage", ORG).await);
    let approvals = app.audit(OWNER, ORG, "?action=agent.approved").await;
    assert_eq!(approvals.len(), 1, "{approvals:?}");
    assert_eq!(approvals[0]["actor"], app.admin_id());
}

// ------------------------------------------------------------------ rate limit

on_both_backends!(over_the_daily_limit_an_invitation_is_refused_with_retry_after_and_no_email);
async fn over_the_daily_limit_an_invitation_is_refused_with_retry_after_and_no_email() {
    // Arrange: the owner's invitation and one more use up a limit of 2
    let app = TestApp::spawn_with_admin_and(|c| c.invites.invite_rate_limit = 2).await;
    app.create_org(ORG, OWNER).await;
    app.invited(OWNER, ORG, "second@acme.example", json!({}))
        .await;
    let mails_before = app.mail_count().await;

    // Act
    let third = app
        .invite_email(OWNER, ORG, "third@acme.example", json!({}))
        .await;

    // Assert
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        third.text
    );
    assert_eq!(third.code(), "rate_limited");
    let retry_after: i64 = third
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a numeric Retry-After header: {:?}", third.headers));
    assert_eq!(
        retry_after,
        24 * 3600,
        "every invitation was sent this second"
    );
    assert_eq!(app.mail_count().await, mails_before);
    assert!(
        app.members_with_email(OWNER, ORG, "third@acme.example")
            .await
            .is_empty()
    );
}

on_both_backends!(the_daily_limit_is_a_rolling_window_that_reopens_after_retry_after);
async fn the_daily_limit_is_a_rolling_window_that_reopens_after_retry_after() {
    // Arrange
    let app = TestApp::spawn_with_admin_and(|c| c.invites.invite_rate_limit = 2).await;
    app.create_org(ORG, OWNER).await;
    app.advance(3600);
    app.invited(OWNER, ORG, "second@acme.example", json!({}))
        .await;
    let refused = app
        .invite_email(OWNER, ORG, "third@acme.example", json!({}))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text
    );
    let retry_after: i64 = refused
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After header");

    // Act
    app.advance(retry_after);
    let third = app
        .invite_email(OWNER, ORG, "third@acme.example", json!({}))
        .await;
    let fourth = app
        .invite_email(OWNER, ORG, "fourth@acme.example", json!({}))
        .await;

    // Assert
    assert_eq!(
        retry_after,
        23 * 3600,
        "the owner's invitation leaves the window first"
    );
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.text);
    assert!(app.next_token_for("third@acme.example").await.len() == 43);
    assert_eq!(
        fourth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        fourth.text
    );
}

on_both_backends!(a_bulk_invitation_that_would_cross_the_daily_limit_is_refused_up_front);
async fn a_bulk_invitation_that_would_cross_the_daily_limit_is_refused_up_front() {
    // Arrange: the owner's invitation uses 1 of 2
    let app = TestApp::spawn_with_admin_and(|c| c.invites.invite_rate_limit = 2).await;
    app.create_org(ORG, OWNER).await;
    let mails_before = app.mail_count().await;
    let csv = "first_name,last_name,email\nAnn,Able,ann@acme.example\nBen,Baker,ben@acme.example\n";

    // Act
    let reply = bulk(&app, OWNER, "", csv).await;

    // Assert
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        reply.text
    );
    assert!(
        reply.headers.contains_key("retry-after"),
        "{:?}",
        reply.headers
    );
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
    assert_eq!(app.mail_count().await, mails_before);
}
