//! Invitations from e-mail to acceptance, decline, expiry or revocation (R48, R59, E6-E11, E30).

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{ORG, OWNER, acme, members_path, set_status, str_of};

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
        .delete_as(OWNER, &format!("{}/invitation", members_path(&ids[1])))
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

// ------------------------------------------------------------------ existing accounts, several organizations

on_both_backends!(a_person_with_an_account_joins_a_second_organization_by_accepting_and_nothing_leaks_between_them);
async fn a_person_with_an_account_joins_a_second_organization_by_accepting_and_nothing_leaks_between_them()
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
    let invited = app
        .invited(
            "gwen@globex.example",
            "globex",
            "Rita@Acme.example",
            json!({"permissions": {"programs": "Read"}}),
        )
        .await;
    let before_accepting = app.allowed(&rita, "programs.read", "globex").await;
    let mail = app.next_mail_to("rita@acme.example").await;
    let token = mail.token().expect("an invitation link");

    // Act: accepting with the existing account, no password
    let accepted = app
        .call(
            Method::POST,
            "/v1/invitations/accept",
            None,
            Some(&json!({"token": token})),
        )
        .await;

    // Assert
    assert_eq!(invited["outcome"], "invited", "{invited}");
    assert_eq!(invited["status"], "PENDING", "{invited}");
    assert_ne!(invited["user_id"], rita.as_str(), "{invited}");
    assert!(!before_accepting, "nothing before accepting");
    assert!(mail.subject.contains("globex"), "{mail:?}");
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["user_id"], rita.as_str(), "{}", accepted.text);
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

on_both_backends!(a_person_inactive_in_one_organization_is_invited_to_another_as_usual);
async fn a_person_inactive_in_one_organization_is_invited_to_another_as_usual() {
    // Arrange
    let (app, _) = acme().await;
    app.create_org("globex", "gwen@globex.example").await;
    let rita = app
        .member_joins(OWNER, ORG, "rita@acme.example", json!({}))
        .await;
    let off = set_status(&app, OWNER, &rita, "INACTIVE").await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);

    // Act
    let invited = app
        .invited(
            "gwen@globex.example",
            "globex",
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    let token = app.next_token_for("rita@acme.example").await;
    let accepted = app.accept(&token).await;

    // Assert
    assert_eq!(invited["outcome"], "invited", "{invited}");
    assert_eq!(invited["status"], "PENDING", "{invited}");
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["user_id"], rita.as_str(), "{}", accepted.text);
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
    let removed = app.delete_as(OWNER, &members_path(&pete)).await;
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
