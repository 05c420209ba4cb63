//! Inviting an address that already has an account (R48 with consent, R58,
//! R60): the inviter learns nothing the answer for an unknown address would
//! not tell (not the account's user id, not that it exists); the person
//! joins by accepting with their existing account, which keeps its
//! password; until then the pending member, held under an id of its own,
//! is allowed nothing and the account gains nothing in the organization.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use super::{ORG, OWNER, acme, str_of};
use crate::helpers::TestApp;
use crate::invite_helpers::Reply;

const GLOBEX: &str = "globex";
const GWEN: &str = "gwen@globex.example";
const INITECH: &str = "initech";
const IAN: &str = "ian@initech.example";
/// A member of `acme` with an account (and a password).
const RITA: &str = "rita@acme.example";
/// An address nobody has.
const NOBODY: &str = "nobody@elsewhere.example";

/// `acme` with Rita an ACTIVE member (billing: Read) with her own
/// password, and `globex`, whose owner Gwen belongs to nothing else.
/// Returns the app and Rita's user id.
async fn rita_and_globex() -> (TestApp, String) {
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            RITA,
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    app.create_org(GLOBEX, GWEN).await;
    (app, rita)
}

/// `value` as text with each `(from, to)` replaced, parsed again: the
/// parts that must differ between two people (ids, addresses) masked, and
/// the store revision of a write's answer (which only counts writes) left
/// out.
fn masked(value: &Value, masks: &[(&str, &str)]) -> Value {
    let mut text = value.to_string();
    for (from, to) in masks {
        if !from.is_empty() {
            text = text.replace(from, to);
        }
    }
    let mut value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("revision");
    }
    value
}

/// An answer to an inviter as it could be compared with another person's:
/// the status and the body, the person's id, address and invitation id
/// masked.
fn answer_shape(reply: &Reply, email: &str) -> Value {
    let body = &reply.body;
    let id = str_of(&reply.body["user_id"]).to_owned();
    let invitation = str_of(&reply.body["invitation_id"]).to_owned();
    json!({
        "status": reply.status.as_u16(),
        "body": masked(body, &[(&id, "<id>"), (email, "<email>"), (&invitation, "<invitation>")]),
    })
}

/// Gwen sets the member `user_id` of `globex` INACTIVE.
async fn deactivate_in_globex(app: &TestApp, user_id: &str) -> Reply {
    let path = format!("/v1/orgs/{GLOBEX}/members/{user_id}/status");
    app.put(GWEN, &path, &json!({"status": "INACTIVE"})).await
}

/// The password hash of `user_id` as stored.
async fn password_hash(app: &TestApp, user_id: &str) -> Option<String> {
    let db = app.db().await;
    let (hash,): (Option<String>,) =
        sqlx::query_as("select password_hash from app_user where user_id = $1")
            .bind(user_id)
            .fetch_one(&db)
            .await
            .expect("the user's row");
    db.close().await;
    hash
}

/// The audit records of `org` that concern `id` or `email`, in order, as
/// an inviter could compare them with another person's.
async fn audit_of(app: &TestApp, actor: &str, org: &str, id: &str, email: &str) -> Vec<Value> {
    app.audit(actor, org, "")
        .await
        .into_iter()
        .filter(|e| e.to_string().contains(id) || e.to_string().contains(email))
        .map(|mut e| {
            if let Some(map) = e.as_object_mut() {
                for varying in ["id", "at", "request_id"] {
                    map.remove(varying);
                }
            }
            let invitation = str_of(&e["after"]["invitation"]).to_owned();
            masked(
                &e,
                &[
                    (id, "<id>"),
                    (email, "<email>"),
                    (&invitation, "<invitation>"),
                ],
            )
        })
        .collect()
}

// ------------------------------------------------------------------ what the inviter learns

on_both_backends!(
    inviting_an_address_with_an_account_elsewhere_answers_as_for_an_address_nobody_has
);
async fn inviting_an_address_with_an_account_elsewhere_answers_as_for_an_address_nobody_has() {
    // Arrange
    let (app, rita) = rita_and_globex().await;
    let grant = json!({"permissions": {"programs": "Read"}});

    // Act
    let existing = app.invite_email(GWEN, GLOBEX, RITA, grant.clone()).await;
    let nobody = app.invite_email(GWEN, GLOBEX, NOBODY, grant).await;

    // Assert: the answers
    let pending_id = str_of(&existing.body["user_id"]).to_owned();
    let nobody_id = str_of(&nobody.body["user_id"]).to_owned();
    assert_eq!(
        answer_shape(&existing, RITA),
        answer_shape(&nobody, NOBODY),
        "an account elsewhere: {}\nnobody: {}",
        existing.text,
        nobody.text
    );
    assert_eq!(existing.status, StatusCode::CREATED, "{}", existing.text);
    assert_eq!(existing.body["outcome"], "invited", "{}", existing.text);
    assert_eq!(existing.body["status"], "PENDING", "{}", existing.text);
    assert_ne!(
        pending_id, rita,
        "the answer names the account's own user id"
    );
    assert!(!pending_id.is_empty() && pending_id != nobody_id);

    // Assert: the member list
    let members = app.members(GWEN, GLOBEX).await;
    let row = |email: &str| {
        members
            .iter()
            .find(|m| m["email"] == email)
            .cloned()
            .unwrap_or_else(|| panic!("no member `{email}` in {members:?}"))
    };
    let (rita_row, nobody_row) = (row(RITA), row(NOBODY));
    assert_eq!(
        masked(&rita_row, &[(&pending_id, "<id>"), (RITA, "<email>")]),
        masked(&nobody_row, &[(&nobody_id, "<id>"), (NOBODY, "<email>")]),
    );
    assert_eq!(rita_row["user_id"], pending_id.as_str(), "{rita_row}");
    assert_eq!(
        (&rita_row["first_name"], &rita_row["last_name"]),
        (&json!("Pat"), &json!("Person")),
        "the names the inviter typed, not the account's: {rita_row}"
    );

    // Assert: the audit trail the inviter reads
    let rita_audit = audit_of(&app, GWEN, GLOBEX, &pending_id, RITA).await;
    let nobody_audit = audit_of(&app, GWEN, GLOBEX, &nobody_id, NOBODY).await;
    assert!(!rita_audit.is_empty());
    assert_eq!(rita_audit, nobody_audit);

    // Assert: decisions about the two pending members give the same reasons
    for action in ["programs.read", "users.invite"] {
        let (a, b) = (
            app.decide(&pending_id, action, GLOBEX).await,
            app.decide(&nobody_id, action, GLOBEX).await,
        );
        assert_eq!(
            (&a["decision"], &a["reasons"]),
            (&b["decision"], &b["reasons"])
        );
        assert_eq!(a["decision"], "deny", "{a}");
    }

    // Assert: no trace of the account's id anywhere the inviter reads
    let members_text = app
        .get(GWEN, &format!("/v1/orgs/{GLOBEX}/members"))
        .await
        .text;
    let audit_text = app
        .get(GWEN, &format!("/v1/orgs/{GLOBEX}/audit"))
        .await
        .text;
    assert!(!existing.text.contains(&rita), "{}", existing.text);
    assert!(!members_text.contains(&rita), "{members_text}");
    assert!(!audit_text.contains(&rita), "{audit_text}");
}

on_both_backends!(
    saving_resending_inviting_again_and_deactivating_answer_as_for_an_address_nobody_has
);
async fn saving_resending_inviting_again_and_deactivating_answer_as_for_an_address_nobody_has() {
    // Arrange
    let (app, rita) = rita_and_globex().await;
    let saved_only = json!({"send": false});

    // Act
    let mut answers: Vec<(Reply, Reply)> = Vec::new();
    let saved = (
        app.invite_email(GWEN, GLOBEX, RITA, saved_only.clone())
            .await,
        app.invite_email(GWEN, GLOBEX, NOBODY, saved_only).await,
    );
    let ids = (
        str_of(&saved.0.body["user_id"]).to_owned(),
        str_of(&saved.1.body["user_id"]).to_owned(),
    );
    answers.push(saved);
    let resend = |id: &str| format!("/v1/orgs/{GLOBEX}/members/{id}/invitation");
    answers.push((
        app.post(GWEN, &resend(&ids.0), &json!({})).await,
        app.post(GWEN, &resend(&ids.1), &json!({})).await,
    ));
    answers.push((
        app.invite_email(GWEN, GLOBEX, RITA, json!({})).await,
        app.invite_email(GWEN, GLOBEX, NOBODY, json!({})).await,
    ));
    let mails = (app.next_mail_to(RITA).await, app.next_mail_to(NOBODY).await);
    let deactivated = (
        deactivate_in_globex(&app, &ids.0).await,
        deactivate_in_globex(&app, &ids.1).await,
    );
    answers.push((
        app.invite_email(GWEN, GLOBEX, RITA, json!({})).await,
        app.invite_email(GWEN, GLOBEX, NOBODY, json!({})).await,
    ));

    // Assert
    let outcomes: Vec<&str> = answers
        .iter()
        .map(|(a, _)| str_of(&a.body["outcome"]))
        .collect();
    assert_eq!(outcomes, ["saved", "resent", "resent", ""]);
    for (existing, nobody) in &answers {
        let (a, b) = (answer_shape(existing, RITA), answer_shape(nobody, NOBODY));
        assert_eq!(a, b, "{}\n{}", existing.text, nobody.text);
        assert!(!existing.text.contains(&rita), "{}", existing.text);
    }
    assert_eq!(
        answers[3].0.status,
        StatusCode::CONFLICT,
        "{}",
        answers[3].0.text
    );
    assert!(mails.0.token().is_some() && mails.1.token().is_some());
    assert_eq!(
        deactivated.0.status,
        StatusCode::OK,
        "{}",
        deactivated.0.text
    );
    assert_eq!(
        masked(&deactivated.0.body, &[(&ids.0, "<id>"), (RITA, "<email>")]),
        masked(
            &deactivated.1.body,
            &[(&ids.1, "<id>"), (NOBODY, "<email>")]
        ),
    );
    assert_eq!(
        audit_of(&app, GWEN, GLOBEX, &ids.0, RITA).await,
        audit_of(&app, GWEN, GLOBEX, &ids.1, NOBODY).await
    );
    assert!(!app.allowed(&rita, "programs.read", GLOBEX).await);
}

on_both_backends!(a_bulk_import_reports_an_address_with_an_account_as_one_nobody_has);
async fn a_bulk_import_reports_an_address_with_an_account_as_one_nobody_has() {
    // Arrange
    let (app, rita) = rita_and_globex().await;
    let csv = format!(
        "first_name,last_name,email,programs\nPat,Person,{RITA},Read\nPat,Person,{NOBODY},Read\n"
    );
    let request = |query: &str| {
        app.request(
            reqwest::Method::POST,
            &format!("/v1/orgs/{GLOBEX}/invitations/bulk{query}"),
        )
        .header("X-Cedargate-Actor", GWEN)
        .header("Content-Type", "text/csv")
        .body(csv.clone())
    };

    // Act
    let dry = TestApp::reply(request("?dry_run=true")).await;
    let imported = TestApp::reply(request("")).await;
    let again = TestApp::reply(request("?dry_run=true")).await;

    // Assert
    for report in [&dry, &imported, &again] {
        assert_eq!(report.status, StatusCode::OK, "{}", report.text);
        let rows = report.body["rows"].as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), 2, "{}", report.text);
        assert_eq!(
            masked(&rows[0], &[(RITA, "<email>"), ("\"row\":1", "\"row\":0")]),
            masked(&rows[1], &[(NOBODY, "<email>"), ("\"row\":2", "\"row\":0")]),
            "{}",
            report.text
        );
        assert!(!report.text.contains(&rita), "{}", report.text);
    }
    assert_eq!(
        imported.body["rows"][0]["outcome"], "invited",
        "{}",
        imported.text
    );
    assert_eq!(
        again.body["rows"][0]["outcome"], "invalid",
        "{}",
        again.text
    );
    assert!(!app.allowed(&rita, "programs.read", GLOBEX).await);
}

// ------------------------------------------------------------------ accepting with the account

/// The acceptance page of `token`: its text, and the cookie and CSRF field
/// its forms post with.
async fn open_page(app: &TestApp, token: &str) -> (String, String, String) {
    let response = app
        .client
        .get(app.url(&format!("/invite/{token}")))
        .send()
        .await
        .expect("GET the page");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cedargate_csrf="))
        .and_then(|c| c.split(';').next())
        .expect("the CSRF cookie")
        .to_owned();
    let page = response.text().await.expect("the page");
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a CSRF field") + marker.len();
    let csrf = page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned();
    (page, cookie, csrf)
}

on_both_backends!(
    the_account_holder_joins_by_accepting_without_a_password_and_keeps_everything_else
);
async fn the_account_holder_joins_by_accepting_without_a_password_and_keeps_everything_else() {
    // Arrange
    let (app, rita) = rita_and_globex().await;
    let hash_before = password_hash(&app, &rita).await;
    let in_acme_before = app.member(OWNER, ORG, RITA).await;
    let outcome = app
        .invited(
            GWEN,
            GLOBEX,
            RITA,
            json!({"permissions": {"programs": "Read"}}),
        )
        .await;
    let pending = str_of(&outcome["user_id"]).to_owned();
    let mail = app.next_mail_to(RITA).await;
    let token = mail.token().expect("an invitation link");
    let before_accepting = (
        app.allowed(&rita, "programs.read", GLOBEX).await,
        app.allowed(&pending, "programs.read", GLOBEX).await,
    );
    let (page, cookie, csrf) = open_page(&app, &token).await;

    // Act
    let response = app
        .client
        .post(app.url("/invite/accept"))
        .header(COOKIE, &cookie)
        .form(&[("token", token.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("POST the accept form");
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();

    // Assert: the e-mail and the page
    assert!(mail.subject.contains("globex"), "{mail:?}");
    assert!(mail.body.contains("existing account"), "{}", mail.body);
    assert!(!mail.body.contains("set your password"), "{}", mail.body);
    assert!(page.contains("with your existing account"), "{page}");
    assert!(!page.contains("name=\"password\""), "{page}");
    assert_eq!(before_accepting, (false, false));

    // Assert: joined with the real id, the password untouched
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer.contains("Welcome to globex"), "{answer}");
    assert_eq!(password_hash(&app, &rita).await, hash_before);
    let in_globex = app.member(GWEN, GLOBEX, RITA).await;
    assert_eq!(in_globex["user_id"], rita.as_str(), "{in_globex}");
    assert_eq!(in_globex["status"], "ACTIVE", "{in_globex}");
    assert_eq!(in_globex["permissions"]["programs"], "Read", "{in_globex}");
    let members = app.members(GWEN, GLOBEX).await;
    assert!(
        members.iter().all(|m| m["user_id"] != pending.as_str()),
        "the pending id is retired: {members:?}"
    );
    assert!(app.allowed(&rita, "programs.read", GLOBEX).await);
    assert!(!app.allowed(&rita, "billing.read", GLOBEX).await);
    let accepted = app.audit(GWEN, GLOBEX, "?action=invitation.accepted").await;
    assert!(
        accepted.iter().any(|e| e["actor"] == rita.as_str()),
        "{accepted:?}"
    );

    // Assert: the other membership untouched
    assert_eq!(app.member(OWNER, ORG, RITA).await, in_acme_before);
    assert!(app.allowed(&rita, "billing.read", ORG).await);
    assert!(!app.allowed(&rita, "programs.read", ORG).await);

    // Assert: the retired pending id is allowed nothing anywhere
    for (action, org) in [("programs.read", GLOBEX), ("billing.read", ORG)] {
        assert!(
            !app.allowed(&pending, action, org).await,
            "{action} in {org}"
        );
    }
    assert!(app.accept(&token).await.status == StatusCode::NOT_FOUND);
}

on_both_backends!(
    the_pending_member_of_an_existing_account_is_allowed_nothing_and_the_account_gains_nothing
);
async fn the_pending_member_of_an_existing_account_is_allowed_nothing_and_the_account_gains_nothing()
 {
    // Arrange
    let (app, rita) = rita_and_globex().await;
    let everything = json!({"role": "Owner"});

    // Act
    let outcome = app.invited(GWEN, GLOBEX, RITA, everything).await;
    let pending = str_of(&outcome["user_id"]).to_owned();

    // Assert
    for action in [
        "programs.read",
        "billing.read",
        "organization.manage",
        "users.invite",
    ] {
        for org in [GLOBEX, ORG] {
            let pending_decision = app.decide(&pending, action, org).await;
            assert_eq!(
                pending_decision["decision"], "deny",
                "{action} in {org}: {pending_decision}"
            );
        }
        let rita_decision = app.decide(&rita, action, GLOBEX).await;
        assert_eq!(
            rita_decision["decision"], "deny",
            "{action}: {rita_decision}"
        );
    }
    assert!(app.allowed(&rita, "billing.read", ORG).await);
    let by_pending = app.invite_email(&pending, GLOBEX, NOBODY, json!({})).await;
    assert_ne!(
        by_pending.status,
        StatusCode::CREATED,
        "{}",
        by_pending.text
    );

    // Act: deactivated, then reactivated by an administrator (if allowed)
    let off = deactivate_in_globex(&app, &pending).await;
    let path = format!("/v1/orgs/{GLOBEX}/members/{pending}/status");
    let on = app
        .put(
            GWEN,
            &path,
            &json!({"status": "ACTIVE", "reactivate": "restore"}),
        )
        .await;

    // Assert: whatever its row says, Cedar never sees the placeholder ACTIVE
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    assert!(
        [StatusCode::OK, StatusCode::CONFLICT].contains(&on.status),
        "{}",
        on.text
    );
    for org in [GLOBEX, ORG] {
        assert!(!app.allowed(&pending, "programs.read", org).await, "{org}");
    }
    assert!(!app.allowed(&rita, "programs.read", GLOBEX).await);
}

on_both_backends!(a_password_sent_with_the_acceptance_of_an_existing_account_is_ignored);
async fn a_password_sent_with_the_acceptance_of_an_existing_account_is_ignored() {
    // Arrange
    let (app, rita) = rita_and_globex().await;
    app.create_org(INITECH, IAN).await;
    let hash_before = password_hash(&app, &rita).await;
    app.invited(GWEN, GLOBEX, RITA, json!({})).await;
    let globex_link = app.next_token_for(RITA).await;
    app.invited(IAN, INITECH, RITA, json!({})).await;
    let initech_link = app.next_token_for(RITA).await;

    // Act
    let another = app
        .call(
            reqwest::Method::POST,
            "/v1/invitations/accept",
            None,
            Some(&json!({"token": globex_link, "password": "an attacker's new password"})),
        )
        .await;
    let too_short = app
        .call(
            reqwest::Method::POST,
            "/v1/invitations/accept",
            None,
            Some(&json!({"token": initech_link, "password": "x"})),
        )
        .await;

    // Assert
    assert_eq!(another.status, StatusCode::OK, "{}", another.text);
    assert_eq!(too_short.status, StatusCode::OK, "{}", too_short.text);
    assert_eq!(another.body["user_id"], rita.as_str(), "{}", another.text);
    assert_eq!(
        too_short.body["user_id"],
        rita.as_str(),
        "{}",
        too_short.text
    );
    assert_eq!(password_hash(&app, &rita).await, hash_before);
    assert!(app.allowed(&rita, "billing.read", ORG).await);
    for (actor, org) in [(GWEN, GLOBEX), (IAN, INITECH)] {
        let member = app.member(actor, org, RITA).await;
        assert_eq!(member["user_id"], rita.as_str(), "{member}");
        assert_eq!(member["status"], "ACTIVE", "{member}");
    }
}

on_both_backends!(the_account_holder_declines_as_anyone_does);
async fn the_account_holder_declines_as_anyone_does() {
    // Arrange
    let (app, rita) = rita_and_globex().await;
    let in_acme_before = app.member(OWNER, ORG, RITA).await;
    let existing = app.invited(GWEN, GLOBEX, RITA, json!({})).await;
    let nobody = app.invited(GWEN, GLOBEX, NOBODY, json!({})).await;
    let links = (
        app.next_token_for(RITA).await,
        app.next_token_for(NOBODY).await,
    );

    // Act
    let declined = (app.decline(&links.0).await, app.decline(&links.1).await);

    // Assert
    assert_eq!(
        declined.0.status,
        StatusCode::NO_CONTENT,
        "{}",
        declined.0.text
    );
    assert_eq!(
        declined.1.status,
        StatusCode::NO_CONTENT,
        "{}",
        declined.1.text
    );
    let (pending, nobody_id) = (str_of(&existing["user_id"]), str_of(&nobody["user_id"]));
    let rows = (
        app.member(GWEN, GLOBEX, RITA).await,
        app.member(GWEN, GLOBEX, NOBODY).await,
    );
    assert_eq!(rows.0["status"], "PENDING", "{}", rows.0);
    assert_eq!(rows.0["invitation"], "DECLINED", "{}", rows.0);
    assert_eq!(
        masked(&rows.0, &[(pending, "<id>"), (RITA, "<email>")]),
        masked(&rows.1, &[(nobody_id, "<id>"), (NOBODY, "<email>")]),
    );
    assert_eq!(
        audit_of(&app, GWEN, GLOBEX, pending, RITA).await,
        audit_of(&app, GWEN, GLOBEX, nobody_id, NOBODY).await
    );
    assert_eq!(app.accept(&links.0).await.status, StatusCode::NOT_FOUND);
    assert!(!app.allowed(&rita, "programs.read", GLOBEX).await);
    assert_eq!(app.member(OWNER, ORG, RITA).await, in_acme_before);
}

// ------------------------------------------------------------------ several organizations

on_both_backends!(two_organizations_invite_one_account_each_under_its_own_pending_id_and_both_acceptances_join_the_account);
async fn two_organizations_invite_one_account_each_under_its_own_pending_id_and_both_acceptances_join_the_account()
 {
    // Arrange
    let (app, rita) = rita_and_globex().await;
    app.create_org(INITECH, IAN).await;

    // Act
    let globex = app
        .invited(
            GWEN,
            GLOBEX,
            RITA,
            json!({"permissions": {"programs": "Read"}}),
        )
        .await;
    let globex_link = app.next_token_for(RITA).await;
    let initech = app
        .invited(IAN, INITECH, RITA, json!({"permissions": {"api": "Read"}}))
        .await;
    let initech_link = app.next_token_for(RITA).await;
    let joined_initech = app.accept(&initech_link).await;
    let joined_globex = app.accept(&globex_link).await;

    // Assert
    let ids = [str_of(&globex["user_id"]), str_of(&initech["user_id"])];
    assert!(ids[0] != ids[1] && !ids.contains(&rita.as_str()), "{ids:?}");
    assert_eq!(
        joined_initech.body["user_id"],
        rita.as_str(),
        "{}",
        joined_initech.text
    );
    assert_eq!(
        joined_globex.body["user_id"],
        rita.as_str(),
        "{}",
        joined_globex.text
    );
    assert!(app.allowed(&rita, "programs.read", GLOBEX).await);
    assert!(app.allowed(&rita, "api.read", INITECH).await);
    assert!(!app.allowed(&rita, "api.read", GLOBEX).await);
    assert!(app.allowed(&rita, "billing.read", ORG).await);
}

on_both_backends!(
    an_address_invited_by_two_organizations_before_it_has_an_account_chooses_its_password_once
);
async fn an_address_invited_by_two_organizations_before_it_has_an_account_chooses_its_password_once()
 {
    // Arrange
    let (app, _) = acme().await;
    app.create_org(GLOBEX, GWEN).await;
    let first = app.invited(OWNER, ORG, NOBODY, json!({})).await;
    let acme_link = app.next_token_for(NOBODY).await;
    let second = app.invited(GWEN, GLOBEX, NOBODY, json!({})).await;
    let globex_link = app.next_token_for(NOBODY).await;
    let account = str_of(&first["user_id"]).to_owned();

    // Act
    let (globex_page, ..) = open_page(&app, &globex_link).await;
    let joined_globex = app.accept(&globex_link).await;
    let hash = password_hash(&app, &account).await;
    let (acme_page, ..) = open_page(&app, &acme_link).await;
    let joined_acme = app
        .call(
            reqwest::Method::POST,
            "/v1/invitations/accept",
            None,
            Some(&json!({"token": acme_link})),
        )
        .await;

    // Assert
    assert_ne!(str_of(&second["user_id"]), account, "{second}");
    assert!(globex_page.contains("name=\"password\""), "{globex_page}");
    assert_eq!(
        joined_globex.status,
        StatusCode::OK,
        "{}",
        joined_globex.text
    );
    assert_eq!(joined_globex.body["user_id"], account.as_str());
    assert!(hash.is_some());
    assert!(!acme_page.contains("name=\"password\""), "{acme_page}");
    assert_eq!(joined_acme.status, StatusCode::OK, "{}", joined_acme.text);
    assert_eq!(password_hash(&app, &account).await, hash);
    for (actor, org) in [(OWNER, ORG), (GWEN, GLOBEX)] {
        let member = app.member(actor, org, NOBODY).await;
        assert_eq!(member["user_id"], account.as_str(), "{member}");
        assert_eq!(member["status"], "ACTIVE", "{member}");
    }
}
