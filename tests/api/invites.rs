//! The invitation service through HTTP, against the real server and a real
//! SQLite file: invitations and their links, decisions that follow every
//! change, input rules (E3, E19-E22), the policies on user administration
//! (E12-E17), rate limits (E23), link hygiene (R59, E6-E11), concurrency
//! (E10), existing accounts (R48, E30), agents, bulk CSV and the audit trail.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::invite_helpers::{
    ADMIN_EMAIL, InviteApp, Reply, assert_forbidden_by, assert_invalid, person,
};

const ORG: &str = "acme";
const OWNER: &str = "olivia@acme.example";

/// An app with the organization `acme` whose owner Olivia has accepted.
async fn acme() -> (InviteApp, String) {
    let app = InviteApp::spawn().await;
    let owner_id = app.create_org(ORG, OWNER).await;
    (app, owner_id)
}

fn members_path(user_id: &str) -> String {
    format!("/v1/orgs/{ORG}/members/{user_id}")
}

async fn set_status(app: &InviteApp, actor: &str, user_id: &str, status: &str) -> Reply {
    app.put(
        actor,
        &format!("{}/status", members_path(user_id)),
        &json!({"status": status}),
    )
    .await
}

async fn bulk(app: &InviteApp, actor: &str, query: &str, csv: &str) -> Reply {
    let request = app
        .app
        .request(
            Method::POST,
            &format!("/v1/orgs/{ORG}/invitations/bulk{query}"),
        )
        .header("X-Cedargate-Actor", actor)
        .header("Content-Type", "text/csv")
        .body(csv.to_owned());
    InviteApp::reply(request).await
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

// ------------------------------------------------------------------ happy path

on_both_backends!(
    an_invited_person_is_pending_until_accepting_and_every_change_moves_the_next_decision
);
async fn an_invited_person_is_pending_until_accepting_and_every_change_moves_the_next_decision() {
    // Arrange
    let (app, olivia) = acme().await;
    let outcome = app
        .invited(
            OWNER,
            ORG,
            "rita@acme.example",
            json!({"role": "GeneralUser", "permissions": {"billing": "Read"}}),
        )
        .await;
    let rita = str_of(&outcome["user_id"]).to_owned();
    let pending = app.member(OWNER, ORG, "rita@acme.example").await;
    let before = app.decide(&rita, "billing.read", ORG).await;
    let token = app.next_token_for("rita@acme.example").await;

    // Act
    let accepted = app.accept(&token).await;

    // Assert
    assert_eq!(outcome["outcome"], "invited", "{outcome}");
    assert_eq!(outcome["status"], "PENDING", "{outcome}");
    assert_eq!(pending["status"], "PENDING", "{pending}");
    assert_eq!(pending["invitation"], "PENDING", "{pending}");
    assert_eq!(before["decision"], "deny", "{before}");
    assert_eq!(
        before["reasons"],
        json!(["member-must-be-active"]),
        "{before}"
    );
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "ACTIVE");
    assert_eq!(accepted.body["user_id"], rita.as_str());
    let active = app.member(OWNER, ORG, "rita@acme.example").await;
    assert_eq!(active["status"], "ACTIVE", "{active}");
    assert_eq!(active["invitation"], "ACCEPTED", "{active}");
    let after = app.decide(&rita, "billing.read", ORG).await;
    assert_eq!(after["decision"], "allow", "{after}");
    assert_eq!(after["reasons"], json!(["billing-read"]), "{after}");
    assert!(!app.allowed(&rita, "billing.manage", ORG).await);
    assert!(!app.allowed(&rita, "transactions.read", ORG).await);

    // Act: permissions down (the actor named by user id), then up again
    let edited = app
        .patch(
            &olivia,
            &members_path(&rita),
            &json!({"permissions": {"billing": "None"}}),
        )
        .await;
    // Assert
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    assert_eq!(edited.body["permissions"]["billing"], "None");
    assert!(!app.allowed(&rita, "billing.read", ORG).await);
    let edited = app
        .patch(
            OWNER,
            &members_path(&rita),
            &json!({"permissions": {"billing": "Read", "transactions": "Read"}}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    assert!(app.allowed(&rita, "billing.read", ORG).await);
    assert!(app.allowed(&rita, "transactions.read", ORG).await);

    // Act: deactivate, then reactivate
    let inactive = set_status(&app, OWNER, &rita, "INACTIVE").await;
    // Assert
    assert_eq!(inactive.status, StatusCode::OK, "{}", inactive.text);
    assert_eq!(inactive.body["status"], "INACTIVE");
    let denied = app.decide(&rita, "billing.read", ORG).await;
    assert_eq!(denied["decision"], "deny", "{denied}");
    assert_eq!(
        denied["reasons"],
        json!(["member-must-be-active"]),
        "{denied}"
    );
    let reactivated = set_status(&app, OWNER, &rita, "ACTIVE").await;
    assert_eq!(reactivated.status, StatusCode::OK, "{}", reactivated.text);
    assert_eq!(reactivated.body["status"], "ACTIVE");
    assert!(app.allowed(&rita, "billing.read", ORG).await);
}

// ------------------------------------------------------------------ e-mail rules

on_both_backends!(malformed_email_addresses_are_refused_naming_the_email_field);
async fn malformed_email_addresses_are_refused_naming_the_email_field() {
    // Arrange
    let (app, _) = acme().await;
    let too_long = format!("{}@acme.example", "a".repeat(250));
    let malformed = [
        "bob.acme.example",
        "bob smith@acme.example",
        "bob@@acme.example",
        "bob@x@acme.example",
        "bob@acme.example.",
        "\"Bob\" <bob@acme.example>",
        too_long.as_str(),
    ];

    for email in malformed {
        // Act
        let reply = app.invite_email(OWNER, ORG, email, json!({})).await;

        // Assert
        assert_invalid(&reply, "email");
    }
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
}

on_both_backends!(
    generic_mailboxes_are_refused_but_personal_addresses_that_merely_contain_a_role_word_are_not
);
async fn generic_mailboxes_are_refused_but_personal_addresses_that_merely_contain_a_role_word_are_not()
 {
    // Arrange
    let (app, _) = acme().await;

    for email in [
        "info@acme.example",
        "Admin@acme.example",
        "sales+eu@acme.example",
        "no-reply@acme.example",
    ] {
        // Act
        let reply = app.invite_email(OWNER, ORG, email, json!({})).await;

        // Assert
        assert_invalid(&reply, "email");
        assert!(reply.message().contains("generic"), "{}", reply.text);
    }
    for email in ["adminson@acme.example", "jane.sales@acme.example"] {
        // Act
        let reply = app.invite_email(OWNER, ORG, email, json!({})).await;

        // Assert
        assert_eq!(reply.status, StatusCode::CREATED, "{email}: {}", reply.text);
        assert_eq!(reply.body["outcome"], "invited");
    }
}

on_both_backends!(
    the_same_address_in_another_case_with_spaces_is_the_same_person_and_inviting_again_resends
);
async fn the_same_address_in_another_case_with_spaces_is_the_same_person_and_inviting_again_resends()
 {
    // Arrange
    let (app, _) = acme().await;
    let first = app.invited(OWNER, ORG, "Bob@X.com ", json!({})).await;
    let old_token = app.next_token_for("bob@x.com").await;

    // Act
    let second = app.invited(OWNER, ORG, "bob@x.com", json!({})).await;
    let new_token = app.next_token_for("bob@x.com").await;

    // Assert
    assert_eq!(first["outcome"], "invited", "{first}");
    assert_eq!(second["outcome"], "resent", "{second}");
    assert_eq!(first["user_id"], second["user_id"]);
    assert_ne!(first["invitation_id"], second["invitation_id"]);
    assert_ne!(old_token, new_token);
    let bobs = app.members_with_email(OWNER, ORG, "bob@x.com").await;
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    let old = app.accept(&old_token).await;
    assert_eq!(old.status, StatusCode::NOT_FOUND, "{}", old.text);
    assert_eq!(old.code(), "link_unavailable");
    let new = app.accept(&new_token).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);
    assert_eq!(new.body["status"], "ACTIVE");
}

on_both_backends!(inviting_an_active_member_is_a_conflict_and_sends_no_email);
async fn inviting_an_active_member_is_a_conflict_and_sends_no_email() {
    // Arrange
    let (app, _) = acme().await;
    app.member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let mails_before = app.mail_count().await;

    // Act
    let reply = app
        .invite_email(OWNER, ORG, " RITA@acme.example", json!({}))
        .await;

    // Assert
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert_eq!(reply.code(), "conflict");
    assert!(
        reply.message().contains("already a member"),
        "{}",
        reply.text
    );
    assert_eq!(app.mail_count().await, mails_before);
    assert_eq!(
        app.members_with_email(OWNER, ORG, "rita@acme.example")
            .await
            .len(),
        1
    );
}

on_both_backends!(inviting_an_inactive_member_is_a_conflict_that_says_to_reactivate);
async fn inviting_an_inactive_member_is_a_conflict_that_says_to_reactivate() {
    // Arrange
    let (app, _) = acme().await;
    let rita = app
        .member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let off = set_status(&app, OWNER, &rita, "INACTIVE").await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    let mails_before = app.mail_count().await;

    // Act
    let reply = app
        .invite_email(OWNER, ORG, "rita@acme.example", json!({}))
        .await;

    // Assert
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert!(reply.message().contains("reactivate"), "{}", reply.text);
    assert_eq!(app.mail_count().await, mails_before);
    let rita_now = app.member(OWNER, ORG, "rita@acme.example").await;
    assert_eq!(rita_now["status"], "INACTIVE");
}

// ------------------------------------------------------------------ permission values

on_both_backends!(
    unknown_modules_levels_and_roles_are_refused_naming_the_field_and_the_allowed_values
);
async fn unknown_modules_levels_and_roles_are_refused_naming_the_field_and_the_allowed_values() {
    // Arrange
    let (app, _) = acme().await;

    // Act
    let module = app
        .invite_email(
            OWNER,
            ORG,
            "a@acme.example",
            json!({"permissions": {"payroll": "Read"}}),
        )
        .await;
    let level = app
        .invite_email(
            OWNER,
            ORG,
            "b@acme.example",
            json!({"permissions": {"billing": "Write"}}),
        )
        .await;
    let role = app
        .invite_email(OWNER, ORG, "c@acme.example", json!({"role": "Boss"}))
        .await;
    let upload = app
        .invite_email(
            OWNER,
            ORG,
            "d@acme.example",
            json!({"permissions": {"uploadGenerations": "Maybe"}}),
        )
        .await;

    // Assert
    assert_invalid(&module, "permissions.payroll");
    assert!(
        module
            .message()
            .contains("organization, transactions, accounts, generators, billing, programs, api"),
        "{}",
        module.text
    );
    assert_invalid(&level, "permissions.billing");
    assert!(
        level.message().contains("None, Read, Manage"),
        "{}",
        level.text
    );
    assert_invalid(&role, "role");
    assert!(
        role.message()
            .contains("Owner, AccountAdmin, UserAdmin, Admin, GeneralUser"),
        "{}",
        role.text
    );
    assert_invalid(&upload, "permissions.uploadGenerations");
    assert!(upload.message().contains("Yes, No"), "{}", upload.text);
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
}

on_both_backends!(levels_and_module_names_are_accepted_in_any_case);
async fn levels_and_module_names_are_accepted_in_any_case() {
    // Arrange
    let (app, _) = acme().await;

    // Act
    let outcome = app
        .invited(
            OWNER,
            ORG,
            "casey@acme.example",
            json!({"role": "general user", "permissions": {"BILLING": "manage"}}),
        )
        .await;

    // Assert
    assert_eq!(outcome["outcome"], "invited");
    let casey = app.member(OWNER, ORG, "casey@acme.example").await;
    assert_eq!(casey["permissions"]["billing"], "Manage", "{casey}");
    assert_eq!(casey["role"], "GeneralUser", "{casey}");
}

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
    let remove = app.delete(OWNER, &members_path(&olivia)).await;

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
    let remove = app.delete(ADMIN_EMAIL, &members_path(&olivia)).await;
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
    let remove = app.delete(mark, &members_path(&olivia)).await;

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

// ------------------------------------------------------------------ restrictions

on_both_backends!(restrictions_naming_a_foreign_unknown_or_repeated_account_are_refused);
async fn restrictions_naming_a_foreign_unknown_or_repeated_account_are_refused() {
    // Arrange
    let (app, _) = acme().await;
    let accounts = json!([
        {"uid": {"type": "Account", "id": "acme-active-1"}, "attrs": {"tenant": ORG, "accountType": "Active"}, "parents": []},
        {"uid": {"type": "Account", "id": "other-active-1"}, "attrs": {"tenant": "other", "accountType": "Active"}, "parents": []},
    ]);
    let (status, body) = app.app.put_json("/v1/entities", &accounts).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let restricted =
        |ids: Value| json!({"permissions": {"accounts": "Read"}, "restrictions": {"active": ids}});

    // Act
    let foreign = app
        .invite_email(
            OWNER,
            ORG,
            "a@acme.example",
            restricted(json!(["other-active-1"])),
        )
        .await;
    let unknown = app
        .invite_email(OWNER, ORG, "b@acme.example", restricted(json!(["nope-1"])))
        .await;
    let repeated = app
        .invite_email(
            OWNER,
            ORG,
            "c@acme.example",
            restricted(json!(["acme-active-1", "acme-active-1"])),
        )
        .await;
    let own = app
        .invite_email(
            OWNER,
            ORG,
            "d@acme.example",
            restricted(json!(["acme-active-1"])),
        )
        .await;

    // Assert
    assert_invalid(&foreign, "restrictions.active");
    assert!(
        foreign.message().contains("another organization"),
        "{}",
        foreign.text
    );
    assert_invalid(&unknown, "restrictions.active");
    assert!(
        unknown.message().contains("no account `nope-1`"),
        "{}",
        unknown.text
    );
    assert_invalid(&repeated, "restrictions.active");
    assert!(
        repeated.message().contains("listed twice"),
        "{}",
        repeated.text
    );
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.text);
    assert_eq!(app.members(OWNER, ORG).await.len(), 2);
}

on_both_backends!(editing_restrictions_to_a_foreign_account_is_refused_naming_the_field);
async fn editing_restrictions_to_a_foreign_account_is_refused_naming_the_field() {
    // Arrange
    let (app, _) = acme().await;
    let foreign = json!([{"uid": {"type": "Account", "id": "other-active-1"}, "attrs": {"tenant": "other", "accountType": "Active"}, "parents": []}]);
    let (status, body) = app.app.put_json("/v1/entities", &foreign).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rita = app
        .member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;

    // Act
    let reply = app
        .patch(
            OWNER,
            &members_path(&rita),
            &json!({"restrictions": {"active": ["other-active-1"]}}),
        )
        .await;

    // Assert
    assert_invalid(&reply, "restrictions.active");
}

// ------------------------------------------------------------------ rate limit

on_both_backends!(over_the_daily_limit_an_invitation_is_refused_with_retry_after_and_no_email);
async fn over_the_daily_limit_an_invitation_is_refused_with_retry_after_and_no_email() {
    // Arrange: the owner's invitation and one more use up a limit of 2
    let app = InviteApp::spawn_with(|c| c.invites.invite_rate_limit = 2).await;
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
    let app = InviteApp::spawn_with(|c| c.invites.invite_rate_limit = 2).await;
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
    let app = InviteApp::spawn_with(|c| c.invites.invite_rate_limit = 2).await;
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

// ------------------------------------------------------------------ link hygiene

on_both_backends!(expired_revoked_declined_used_and_unknown_links_all_get_the_same_answer);
async fn expired_revoked_declined_used_and_unknown_links_all_get_the_same_answer() {
    // Arrange
    let (app, _) = acme().await;
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for who in ["used", "revoked", "declined", "expired"] {
        let email = format!("{who}@acme.example");
        let outcome = app.invited(OWNER, ORG, &email, json!({})).await;
        ids.push(str_of(&outcome["user_id"]).to_owned());
        tokens.push(app.next_token_for(&email).await);
    }
    let used = app.accept(&tokens[0]).await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.text);
    let revoked = app
        .delete(OWNER, &format!("{}/invitation", members_path(&ids[1])))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    let declined = app.decline(&tokens[2]).await;
    assert_eq!(declined.status, StatusCode::NO_CONTENT, "{}", declined.text);
    app.advance(8 * 24 * 3600);
    let unknown = "A".repeat(43);

    // Act
    let mut answers = Vec::new();
    for token in tokens.iter().chain([&unknown]) {
        answers.push(app.accept(token).await);
    }

    // Assert
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
        assert_eq!(answer.code(), "link_unavailable", "{}", answer.text);
        assert_eq!(
            answer.text, answers[0].text,
            "the same body for every dead link"
        );
    }
    let expired = app.member(OWNER, ORG, "expired@acme.example").await;
    assert_eq!(expired["status"], "PENDING", "{expired}");
    assert_eq!(expired["invitation"], "EXPIRED", "{expired}");
    let declined = app.member(OWNER, ORG, "declined@acme.example").await;
    assert_eq!(declined["invitation"], "DECLINED", "{declined}");
    let revoked = app.member(OWNER, ORG, "revoked@acme.example").await;
    assert_eq!(revoked["invitation"], "REVOKED", "{revoked}");
    assert!(!app.allowed(&ids[3], "organization.read", ORG).await);
    for token in tokens.iter().chain([&unknown]) {
        let decline = app.decline(token).await;
        assert_eq!(decline.status, StatusCode::NOT_FOUND, "{}", decline.text);
        assert_eq!(decline.text, answers[0].text);
    }
}

on_both_backends!(a_link_works_until_just_before_it_expires_after_seven_days);
async fn a_link_works_until_just_before_it_expires_after_seven_days() {
    // Arrange
    let (app, _) = acme().await;
    app.invited(OWNER, ORG, "late@acme.example", json!({}))
        .await;
    let token = app.next_token_for("late@acme.example").await;
    app.advance(7 * 24 * 3600 - 60);

    // Act
    let accepted = app.accept(&token).await;

    // Assert
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "ACTIVE");
}

on_both_backends!(after_declining_a_new_invitation_gives_a_working_link);
async fn after_declining_a_new_invitation_gives_a_working_link() {
    // Arrange
    let (app, _) = acme().await;
    app.invited(OWNER, ORG, "dora@acme.example", json!({}))
        .await;
    let first = app.next_token_for("dora@acme.example").await;
    let declined = app.decline(&first).await;
    assert_eq!(declined.status, StatusCode::NO_CONTENT, "{}", declined.text);

    // Act
    let again = app
        .invited(OWNER, ORG, "dora@acme.example", json!({}))
        .await;
    let second = app.next_token_for("dora@acme.example").await;
    let accepted = app.accept(&second).await;

    // Assert
    assert_eq!(again["outcome"], "resent", "{again}");
    assert_ne!(first, second);
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "ACTIVE");
    assert_eq!(app.accept(&first).await.status, StatusCode::NOT_FOUND);
}

on_both_backends!(
    two_simultaneous_accepts_of_one_link_make_exactly_one_membership_and_one_audit_event
);
async fn two_simultaneous_accepts_of_one_link_make_exactly_one_membership_and_one_audit_event() {
    // Arrange
    let (app, _) = acme().await;
    let outcome = app
        .invited(OWNER, ORG, "twin@acme.example", json!({}))
        .await;
    let twin = str_of(&outcome["user_id"]).to_owned();
    let token = app.next_token_for("twin@acme.example").await;

    // Act
    let (a, b) = tokio::join!(app.accept(&token), app.accept(&token));

    // Assert
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::NOT_FOUND],
        "{} / {}",
        a.text,
        b.text
    );
    let loser = if a.status == StatusCode::OK { &b } else { &a };
    assert_eq!(loser.code(), "link_unavailable", "{}", loser.text);
    let accepted: Vec<Value> = app
        .audit(OWNER, ORG, "?action=invitation.accepted")
        .await
        .into_iter()
        .filter(|e| e["actor"] == twin.as_str())
        .collect();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(
        app.members_with_email(OWNER, ORG, "twin@acme.example")
            .await
            .len(),
        1
    );
}

on_both_backends!(
    two_simultaneous_invitations_of_one_address_make_one_membership_and_one_live_link
);
async fn two_simultaneous_invitations_of_one_address_make_one_membership_and_one_live_link() {
    // Arrange
    let (app, _) = acme().await;
    let body = person(
        "dup@acme.example",
        json!({"permissions": {"billing": "Read"}}),
    );

    // Act
    let (a, b) = tokio::join!(app.invite(OWNER, ORG, &body), app.invite(OWNER, ORG, &body));

    // Assert
    for reply in [&a, &b] {
        assert!(
            reply.status == StatusCode::CREATED || reply.status == StatusCode::CONFLICT,
            "a resend or a conflict, never an error: {}",
            reply.text
        );
    }
    let mut outcomes: Vec<&str> = [&a, &b]
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .map(|r| str_of(&r.body["outcome"]))
        .collect();
    outcomes.sort_unstable();
    assert!(
        outcomes == ["invited", "resent"] || outcomes == ["invited"],
        "{outcomes:?}"
    );
    let dups = app.members_with_email(OWNER, ORG, "dup@acme.example").await;
    assert_eq!(dups.len(), 1, "{dups:?}");
    let db = app.db().await;
    let (memberships,): (i64,) = sqlx::query_as(
        "select count(*) from membership m join app_user u on u.user_id = m.user_id
         where m.org_id = $1 and u.email = $2",
    )
    .bind(ORG)
    .bind("dup@acme.example")
    .fetch_one(&db)
    .await
    .expect("count memberships");
    let (live,): (i64,) = sqlx::query_as(
        "select count(*) from invitation where org_id = $1 and email = $2 and state = 'PENDING'",
    )
    .bind(ORG)
    .bind("dup@acme.example")
    .fetch_one(&db)
    .await
    .expect("count invitations");
    let (users,): (i64,) = sqlx::query_as("select count(*) from app_user where email = $1")
        .bind("dup@acme.example")
        .fetch_one(&db)
        .await
        .expect("count users");
    assert_eq!((memberships, live, users), (1, 1, 1));
}

// ------------------------------------------------------------------ existing accounts, several organizations

on_both_backends!(a_person_with_an_account_is_added_to_a_second_organization_at_once_and_nothing_leaks_between_them);
async fn a_person_with_an_account_is_added_to_a_second_organization_at_once_and_nothing_leaks_between_them()
 {
    // Arrange
    let (app, _) = acme().await;
    app.create_org("globex", "gwen@globex.example").await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;

    // Act
    let added = app
        .invited(
            "gwen@globex.example",
            "globex",
            "Rita@Acme.example",
            json!({"permissions": {"programs": "Read"}}),
        )
        .await;

    // Assert
    assert_eq!(added["outcome"], "added", "{added}");
    assert_eq!(added["status"], "ACTIVE", "{added}");
    assert_eq!(added["user_id"], rita.as_str());
    assert!(added["invitation_id"].is_null(), "{added}");
    let notice = app.next_mail_to("rita@acme.example").await;
    assert!(notice.subject.contains("globex"), "{notice:?}");
    assert!(notice.token().is_none(), "no link in: {}", notice.body);
    assert!(!notice.body.contains("/invite/"), "{}", notice.body);
    assert!(app.allowed(&rita, "programs.read", "globex").await);
    assert!(!app.allowed(&rita, "billing.read", "globex").await);
    assert!(app.allowed(&rita, "billing.read", ORG).await);
    assert!(!app.allowed(&rita, "programs.read", ORG).await);

    // Act: inactive in one organization, still working in the other
    let off = set_status(&app, OWNER, &rita, "INACTIVE").await;

    // Assert
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    assert!(!app.allowed(&rita, "billing.read", ORG).await);
    assert!(app.allowed(&rita, "programs.read", "globex").await);
}

on_both_backends!(a_person_inactive_in_one_organization_is_added_to_another_as_usual);
async fn a_person_inactive_in_one_organization_is_added_to_another_as_usual() {
    // Arrange
    let (app, _) = acme().await;
    app.create_org("globex", "gwen@globex.example").await;
    let rita = app
        .member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let off = set_status(&app, OWNER, &rita, "INACTIVE").await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);

    // Act
    let added = app
        .invited(
            "gwen@globex.example",
            "globex",
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;

    // Assert
    assert_eq!(added["outcome"], "added", "{added}");
    assert_eq!(added["status"], "ACTIVE", "{added}");
    assert!(app.allowed(&rita, "billing.read", "globex").await);
    assert!(!app.allowed(&rita, "billing.read", ORG).await);
    let in_acme = app.member(OWNER, ORG, "rita@acme.example").await;
    assert_eq!(in_acme["status"], "INACTIVE", "{in_acme}");
}

// ------------------------------------------------------------------ links die with the inviter and the member

on_both_backends!(deactivating_an_inviter_revokes_the_invitations_they_sent);
async fn deactivating_an_inviter_revokes_the_invitations_they_sent() {
    // Arrange
    let (app, _) = acme().await;
    let mark = app
        .member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;
    app.invited("mark@acme.example", ORG, "nina@acme.example", json!({}))
        .await;
    let token = app.next_token_for("nina@acme.example").await;

    // Act
    let off = set_status(&app, OWNER, &mark, "INACTIVE").await;

    // Assert
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    let nina = app.member(OWNER, ORG, "nina@acme.example").await;
    assert_eq!(nina["invitation"], "REVOKED", "{nina}");
    let accepted = app.accept(&token).await;
    assert_eq!(accepted.status, StatusCode::NOT_FOUND, "{}", accepted.text);
    assert_eq!(accepted.code(), "link_unavailable");
    let revoked = app.audit(OWNER, ORG, "?action=invitation.revoked").await;
    assert!(
        revoked
            .iter()
            .any(|e| str_of(&e["target"]).contains(str_of(&nina["user_id"]))),
        "{revoked:?}"
    );
}

on_both_backends!(deactivating_a_pending_member_kills_their_link);
async fn deactivating_a_pending_member_kills_their_link() {
    // Arrange
    let (app, _) = acme().await;
    let outcome = app
        .invited(OWNER, ORG, "pete@acme.example", json!({}))
        .await;
    let pete = str_of(&outcome["user_id"]).to_owned();
    let token = app.next_token_for("pete@acme.example").await;

    // Act
    let off = set_status(&app, OWNER, &pete, "INACTIVE").await;
    let accepted = app.accept(&token).await;

    // Assert
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    assert_eq!(off.body["status"], "INACTIVE");
    assert_eq!(off.body["invitation"], "REVOKED", "{}", off.text);
    assert_eq!(accepted.status, StatusCode::NOT_FOUND, "{}", accepted.text);
    assert_eq!(accepted.code(), "link_unavailable");
    assert!(!app.allowed(&pete, "organization.read", ORG).await);
}

on_both_backends!(removing_a_pending_member_kills_their_link);
async fn removing_a_pending_member_kills_their_link() {
    // Arrange
    let (app, _) = acme().await;
    let outcome = app
        .invited(OWNER, ORG, "pete@acme.example", json!({}))
        .await;
    let pete = str_of(&outcome["user_id"]).to_owned();
    let token = app.next_token_for("pete@acme.example").await;

    // Act
    let removed = app.delete(OWNER, &members_path(&pete)).await;
    let accepted = app.accept(&token).await;

    // Assert
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert_eq!(accepted.status, StatusCode::NOT_FOUND, "{}", accepted.text);
    assert_eq!(accepted.code(), "link_unavailable");
    assert!(
        app.members_with_email(OWNER, ORG, "pete@acme.example")
            .await
            .is_empty()
    );
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
    assert_eq!(approvals[0]["actor"], app.admin_id.as_str());
}

// ------------------------------------------------------------------ bulk CSV

const MIXED_CSV: &str = "first_name,last_name,email,role,billing\n\
                         Ann,Able,ann@acme.example,GeneralUser,Read\n\
                         Ben,Baker,ben@acme.example,,\n\
                         Cat,Cole,info@acme.example,,\n";

on_both_backends!(a_bulk_dry_run_reports_every_row_and_writes_nothing);
async fn a_bulk_dry_run_reports_every_row_and_writes_nothing() {
    // Arrange
    let (app, _) = acme().await;
    let mails_before = app.mail_count().await;

    // Act
    let reply = bulk(&app, OWNER, "?dry_run=true", MIXED_CSV).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["valid"], 2, "{}", reply.text);
    assert_eq!(reply.body["invalid"], 1, "{}", reply.text);
    assert_eq!(reply.body["written"], 0, "{}", reply.text);
    let rows = reply.body["rows"].as_array().cloned().unwrap_or_default();
    let outcomes: Vec<&str> = rows.iter().map(|r| str_of(&r["outcome"])).collect();
    assert_eq!(outcomes, ["valid", "valid", "invalid"]);
    assert_eq!(rows[2]["row"], 3);
    assert!(str_of(&rows[2]["error"]).contains("`email`"), "{}", rows[2]);
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
    assert_eq!(app.mail_count().await, mails_before);
}

on_both_backends!(
    a_bulk_file_with_one_invalid_row_writes_nothing_unless_asked_to_import_the_valid_rows
);
async fn a_bulk_file_with_one_invalid_row_writes_nothing_unless_asked_to_import_the_valid_rows() {
    // Arrange
    let (app, _) = acme().await;
    let mails_before = app.mail_count().await;

    // Act
    let refused = bulk(&app, OWNER, "", MIXED_CSV).await;
    let members_after_refusal = app.members(OWNER, ORG).await.len();
    let mails_after_refusal = app.mail_count().await;
    let imported = bulk(&app, OWNER, "?import_valid=true", MIXED_CSV).await;

    // Assert
    assert_eq!(refused.status, StatusCode::OK, "{}", refused.text);
    assert_eq!(refused.body["invalid"], 1, "{}", refused.text);
    assert_eq!(refused.body["written"], 0, "{}", refused.text);
    assert_eq!(members_after_refusal, 1);
    assert_eq!(mails_after_refusal, mails_before);
    assert_eq!(imported.status, StatusCode::OK, "{}", imported.text);
    assert_eq!(imported.body["written"], 2, "{}", imported.text);
    let outcomes: Vec<&str> = imported.body["rows"]
        .as_array()
        .map(|rows| rows.iter().map(|r| str_of(&r["outcome"])).collect())
        .unwrap_or_default();
    assert_eq!(outcomes, ["invited", "invited", "invalid"]);
    let ann = app.member(OWNER, ORG, "ann@acme.example").await;
    assert_eq!(ann["status"], "PENDING");
    assert_eq!(ann["permissions"]["billing"], "Read");
    app.member(OWNER, ORG, "ben@acme.example").await;
    assert!(
        app.members_with_email(OWNER, ORG, "info@acme.example")
            .await
            .is_empty()
    );
    assert!(app.next_mail_to("ann@acme.example").await.token().is_some());
    assert!(app.next_mail_to("ben@acme.example").await.token().is_some());
}

on_both_backends!(bulk_files_without_rows_or_with_an_unknown_column_are_refused_naming_the_file);
async fn bulk_files_without_rows_or_with_an_unknown_column_are_refused_naming_the_file() {
    // Arrange
    let (app, _) = acme().await;

    // Act
    let header_only = bulk(&app, OWNER, "", "first_name,last_name,email\n").await;
    let unknown_column = bulk(
        &app,
        OWNER,
        "",
        "first_name,last_name,email,phone\nAnn,Able,ann@acme.example,555\n",
    )
    .await;
    let missing_column = bulk(&app, OWNER, "", "first_name,email\nAnn,ann@acme.example\n").await;
    let empty = bulk(&app, OWNER, "", "").await;

    // Assert
    assert_invalid(&header_only, "file");
    assert!(
        header_only.message().contains("no rows"),
        "{}",
        header_only.text
    );
    assert_invalid(&unknown_column, "file");
    assert!(
        unknown_column.message().contains("unknown column `phone`"),
        "{}",
        unknown_column.text
    );
    assert_invalid(&missing_column, "file");
    assert!(
        missing_column.message().contains("last_name"),
        "{}",
        missing_column.text
    );
    assert_invalid(&empty, "file");
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
}

on_both_backends!(bulk_rows_repeating_an_address_or_naming_an_existing_member_are_reported);
async fn bulk_rows_repeating_an_address_or_naming_an_existing_member_are_reported() {
    // Arrange
    let (app, _) = acme().await;
    let csv = "first_name,last_name,email\n\
               Bob,One,Bob@X.com\n\
               Bob,Two, bob@x.com \n\
               Olivia,Again,OLIVIA@acme.example\n";

    // Act
    let reply = bulk(&app, OWNER, "?dry_run=true", csv).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let rows = reply.body["rows"].as_array().cloned().unwrap_or_default();
    let outcomes: Vec<&str> = rows.iter().map(|r| str_of(&r["outcome"])).collect();
    assert_eq!(outcomes, ["valid", "invalid", "invalid"], "{}", reply.text);
    assert!(
        str_of(&rows[1]["error"]).contains("earlier row"),
        "{}",
        rows[1]
    );
    assert!(
        str_of(&rows[2]["error"]).contains("already a member"),
        "{}",
        rows[2]
    );
    assert_eq!(app.members(OWNER, ORG).await.len(), 1);
}

// ------------------------------------------------------------------ audit

on_both_backends!(the_audit_trail_lists_invitation_events_with_actor_target_and_time);
async fn the_audit_trail_lists_invitation_events_with_actor_target_and_time() {
    // Arrange
    let (app, olivia) = acme().await;
    let rita = app
        .member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let nina = app
        .invited(OWNER, ORG, "nina@acme.example", json!({}))
        .await;
    let nina = str_of(&nina["user_id"]).to_owned();
    let revoked = app
        .delete(OWNER, &format!("{}/invitation", members_path(&nina)))
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);

    // Act
    let events = app.audit(OWNER, ORG, "?action=invitation.").await;

    // Assert
    assert!(
        events
            .iter()
            .all(|e| str_of(&e["action"]).starts_with("invitation.")),
        "{events:?}"
    );
    let find = |action: &str, user: &str| {
        events
            .iter()
            .find(|e| {
                e["action"] == action
                    && e["target"] == format!("Membership::\"{ORG}/{user}\"").as_str()
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {action} for {user}: {events:?}"))
    };
    let created = find("invitation.created", &rita);
    assert_eq!(created["actor"], olivia.as_str());
    assert_eq!(created["at"], app.now());
    assert_eq!(created["outcome"], "ok");
    assert_eq!(created["org"], ORG);
    let accepted = find("invitation.accepted", &rita);
    assert_eq!(accepted["actor"], rita.as_str());
    assert_eq!(accepted["before"]["status"], "PENDING");
    assert_eq!(accepted["after"]["status"], "ACTIVE");
    find("invitation.created", &nina);
    let revoked = find("invitation.revoked", &nina);
    assert_eq!(revoked["actor"], olivia.as_str());
    assert_eq!(revoked["at"], app.now());
}

on_both_backends!(a_refused_action_is_audited_as_denied_and_a_general_user_cannot_read_the_audit);
async fn a_refused_action_is_audited_as_denied_and_a_general_user_cannot_read_the_audit() {
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

    // Act
    let invite = app
        .invite_email("rita@acme.example", ORG, "friend@acme.example", json!({}))
        .await;
    let read = app
        .get("rita@acme.example", &format!("/v1/orgs/{ORG}/audit"))
        .await;

    // Assert
    assert_eq!(invite.status, StatusCode::FORBIDDEN, "{}", invite.text);
    assert!(invite.message().contains("users.invite"), "{}", invite.text);
    assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.text);
    assert!(read.message().contains("audit.read"), "{}", read.text);
    let denied: Vec<Value> = app
        .audit(OWNER, ORG, &format!("?user={rita}"))
        .await
        .into_iter()
        .filter(|e| str_of(&e["outcome"]).starts_with("denied: "))
        .collect();
    let actions: Vec<&str> = denied.iter().map(|e| str_of(&e["action"])).collect();
    assert!(actions.contains(&"users.invite"), "{denied:?}");
    assert!(actions.contains(&"audit.read"), "{denied:?}");
    assert!(denied.iter().all(|e| e["actor"] == rita.as_str()));
}

on_both_backends!(the_audit_table_refuses_updates_and_deletes);
async fn the_audit_table_refuses_updates_and_deletes() {
    // Arrange
    let (app, _) = acme().await;
    let db = app.db().await;
    let (before,): (i64,) = sqlx::query_as("select count(*) from audit_event")
        .fetch_one(&db)
        .await
        .expect("count audit events");

    // Act
    let update = sqlx::query("update audit_event set outcome = 'tampered'")
        .execute(&db)
        .await;
    let delete = sqlx::query("delete from audit_event").execute(&db).await;

    // Assert
    let update = update.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(update.contains("append-only"), "{update}");
    let delete = delete.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(delete.contains("append-only"), "{delete}");
    let (after,): (i64,) = sqlx::query_as("select count(*) from audit_event")
        .fetch_one(&db)
        .await
        .expect("count audit events");
    let (tampered,): (i64,) =
        sqlx::query_as("select count(*) from audit_event where outcome = 'tampered'")
            .fetch_one(&db)
            .await
            .expect("count tampered events");
    assert!(before > 0);
    assert_eq!((after, tampered), (before, 0));
}

// ------------------------------------------------------------------ the acting user

on_both_backends!(a_call_without_an_acting_user_is_a_bad_request_and_an_unknown_one_is_refused);
async fn a_call_without_an_acting_user_is_a_bad_request_and_an_unknown_one_is_refused() {
    // Arrange
    let (app, _) = acme().await;
    let body = person("rita@acme.example", json!({}));

    // Act
    let missing = app
        .call(
            Method::POST,
            &format!("/v1/orgs/{ORG}/invitations"),
            None,
            Some(&body),
        )
        .await;
    let unknown = app.invite("nobody@acme.example", ORG, &body).await;

    // Assert
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.text);
    assert_eq!(missing.code(), "bad_request");
    assert!(
        missing.message().contains("X-Cedargate-Actor"),
        "{}",
        missing.text
    );
    assert_eq!(unknown.status, StatusCode::FORBIDDEN, "{}", unknown.text);
    assert_eq!(unknown.code(), "unknown_actor");
    assert!(
        app.members_with_email(OWNER, ORG, "rita@acme.example")
            .await
            .is_empty()
    );
}

// ------------------------------------------------------------------ token hygiene

on_both_backends!(the_link_secret_never_appears_in_api_answers_or_the_audit_trail);
async fn the_link_secret_never_appears_in_api_answers_or_the_audit_trail() {
    // Arrange
    let (app, _) = acme().await;
    let invited = app
        .invite_email(OWNER, ORG, "sid@acme.example", json!({}))
        .await;
    let token = app.next_token_for("sid@acme.example").await;
    let members_pending = app.get(OWNER, &format!("/v1/orgs/{ORG}/members")).await;
    let accepted = app.accept(&token).await;

    // Act
    let members = app.get(OWNER, &format!("/v1/orgs/{ORG}/members")).await;
    let audit = app.get(OWNER, &format!("/v1/orgs/{ORG}/audit")).await;

    // Assert
    assert_eq!(token.len(), 43, "256 bits, base64url");
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    for (what, reply) in [
        ("invite", &invited),
        ("members while pending", &members_pending),
        ("accept", &accepted),
        ("members", &members),
        ("audit", &audit),
    ] {
        assert!(reply.status.is_success(), "{what}: {}", reply.text);
        assert!(
            !reply.text.contains(&token),
            "the secret appears in the {what} answer"
        );
    }
    let db = app.db().await;
    let rows: Vec<(String,)> = sqlx::query_as(
        "select coalesce(target, '') || ' ' || outcome || ' ' || coalesce(before_state, '') || ' '
                || coalesce(after_state, '') || ' ' || coalesce(request_id, '') from audit_event",
    )
    .fetch_all(&db)
    .await
    .expect("read the audit table");
    assert!(rows.iter().all(|(row,)| !row.contains(&token)));
    let (stored,): (i64,) = sqlx::query_as("select count(*) from invitation where token_hash = $1")
        .bind(&token)
        .fetch_one(&db)
        .await
        .expect("look the secret up");
    assert_eq!(stored, 0, "only the hash of the secret is stored");
}

// ------------------------------------------------------------------ found by these tests (fixed in src/)

on_both_backends!(after_a_link_expired_the_administrator_resends_and_the_new_link_works);
async fn after_a_link_expired_the_administrator_resends_and_the_new_link_works() {
    // Arrange
    let (app, _) = acme().await;
    let outcome = app
        .invited(OWNER, ORG, "slow@acme.example", json!({}))
        .await;
    let slow = str_of(&outcome["user_id"]).to_owned();
    let expired = app.next_token_for("slow@acme.example").await;
    app.advance(8 * 24 * 3600);

    // Act
    let resent = app
        .post(
            OWNER,
            &format!("{}/invitation", members_path(&slow)),
            &json!({}),
        )
        .await;
    let fresh = app.next_token_for("slow@acme.example").await;
    let accepted = app.accept(&fresh).await;

    // Assert
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.text);
    assert_eq!(resent.body["outcome"], "resent", "{}", resent.text);
    assert_eq!(
        resent.body["expires_at"],
        app.now() + 7 * 24 * 3600,
        "a new expiry"
    );
    assert_eq!(app.accept(&expired).await.status, StatusCode::NOT_FOUND);
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "ACTIVE");
}

on_both_backends!(two_managers_deactivating_each_other_at_the_same_moment_leave_one_active_manager);
async fn two_managers_deactivating_each_other_at_the_same_moment_leave_one_active_manager() {
    // Arrange
    let (app, olivia) = acme().await;
    let mark = app
        .member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;

    // Act
    let (a, b) = tokio::join!(
        set_status(&app, OWNER, &mark, "INACTIVE"),
        set_status(&app, "mark@acme.example", &olivia, "INACTIVE"),
    );

    // Assert
    let ok = [&a, &b]
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one succeeds: {} / {}", a.text, b.text);
    let refused = if a.status == StatusCode::OK { &b } else { &a };
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let survivor = if a.status == StatusCode::OK {
        OWNER
    } else {
        "mark@acme.example"
    };
    let active_managers = app
        .members(survivor, ORG)
        .await
        .into_iter()
        .filter(|m| m["status"] == "ACTIVE" && m["permissions"]["organization"] == "Manage")
        .count();
    assert_eq!(active_managers, 1);
}

on_both_backends!(two_managers_demoting_each_other_at_the_same_moment_leave_one_manager);
async fn two_managers_demoting_each_other_at_the_same_moment_leave_one_manager() {
    // Arrange
    let (app, olivia) = acme().await;
    let mark = app
        .member_joins(OWNER, ORG, "mark@acme.example", json!({"role": "Owner"}))
        .await;
    let demote = json!({"permissions": {"organization": "Read"}});
    let (mark_path, olivia_path) = (members_path(&mark), members_path(&olivia));

    // Act
    let (a, b) = tokio::join!(
        app.patch(OWNER, &mark_path, &demote),
        app.patch("mark@acme.example", &olivia_path, &demote),
    );

    // Assert
    let ok = [&a, &b]
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "exactly one succeeds: {} / {}", a.text, b.text);
    let survivor = if a.status == StatusCode::OK {
        OWNER
    } else {
        "mark@acme.example"
    };
    let active_managers = app
        .members(survivor, ORG)
        .await
        .into_iter()
        .filter(|m| m["status"] == "ACTIVE" && m["permissions"]["organization"] == "Manage")
        .count();
    assert_eq!(active_managers, 1);
}

on_both_backends!(once_the_email_is_delivered_the_database_keeps_no_copy_of_the_link_secret);
async fn once_the_email_is_delivered_the_database_keeps_no_copy_of_the_link_secret() {
    // Arrange
    let (app, _) = acme().await;
    app.invited(OWNER, ORG, "sid@acme.example", json!({})).await;
    let token = app.next_token_for("sid@acme.example").await;

    // Act
    app.settle_mail().await;

    // Assert
    let db = app.db().await;
    let postgres = app.app.config.database_url.is_postgres();
    let columns: Vec<(String, String)> = sqlx::query_as(if postgres {
        "select table_name::text, column_name::text from information_schema.columns
         where table_schema = 'public'"
    } else {
        "select m.name, c.name from sqlite_master m, pragma_table_info(m.name) c
         where m.type = 'table' and m.name not like 'sqlite_%'"
    })
    .fetch_all(&db)
    .await
    .expect("list the columns");
    assert!(
        columns.iter().any(|(t, _)| t == "invitation"),
        "{columns:?}"
    );
    let mut holding = Vec::new();
    for (table, column) in columns {
        // `like` treats `_` in the secret as any character: a stricter search.
        let (hits,): (i64,) = sqlx::query_as(&format!(
            "select count(*) from \"{table}\" where cast(\"{column}\" as text) like '%' || $1 || '%'"
        ))
        .bind(&token)
        .fetch_one(&db)
        .await
        .expect("search a column");
        if hits > 0 {
            holding.push(format!("{table}.{column}"));
        }
    }
    assert!(
        holding.is_empty(),
        "the link secret is stored in {holding:?}"
    );
    let accepted = app.accept(&token).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
}
