//! Input rules: e-mail addresses, permission values, restrictions, the acting user (E3, E19-E22).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ORG, OWNER, acme, members_path, set_status};
use crate::invite_helpers::{assert_invalid, person};

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

// ------------------------------------------------------------------ restrictions

on_both_backends!(restrictions_naming_a_foreign_unknown_or_repeated_account_are_refused);
async fn restrictions_naming_a_foreign_unknown_or_repeated_account_are_refused() {
    // Arrange
    let (app, _) = acme().await;
    let accounts = json!([
        {"uid": {"type": "Account", "id": "acme-active-1"}, "attrs": {"tenant": ORG, "accountType": "Active"}, "parents": []},
        {"uid": {"type": "Account", "id": "other-active-1"}, "attrs": {"tenant": "other", "accountType": "Active"}, "parents": []},
    ]);
    let (status, body) = app.put_json("/v1/entities", &accounts).await;
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
    // Another organization's account is refused as a missing one is: the
    // inviter learns nothing about other organizations' accounts.
    assert!(
        foreign
            .message()
            .contains("no account `other-active-1` in `acme`"),
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
    let (status, body) = app.put_json("/v1/entities", &foreign).await;
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

on_both_backends!(an_owner_cannot_be_restricted_to_accounts_that_are_not_the_organization_s);
async fn an_owner_cannot_be_restricted_to_accounts_that_are_not_the_organization_s() {
    // Arrange: the restriction rule (E19) holds for an organization's
    // owner as for every invitee.
    let app = crate::helpers::TestApp::spawn_with_admin().await;
    let body = serde_json::json!({
        "id": "globex",
        "name": "Globex",
        "owner": {"first_name": "Gus", "last_name": "Owner", "email": "gus@globex.example",
                  "restrictions": {"active": ["no-such-account"]}},
    });

    // Act
    let reply = app
        .post(crate::invite_helpers::ADMIN_EMAIL, "/v1/orgs", &body)
        .await;

    // Assert
    crate::invite_helpers::assert_invalid(&reply, "restrictions.active");
}
