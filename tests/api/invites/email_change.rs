//! Changing a member's e-mail address (R71-R74): an administrator asks,
//! the new address confirms through a one-time link (GET shows the page,
//! only the form's POST with its CSRF pair confirms), the old address gets
//! a notice. The address is the login in every organization, so an
//! administrator of one organization cannot move the login of someone who
//! also belongs to another (a Cedar forbid); a system administrator can.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use super::{ORG, OWNER, acme, str_of};
use crate::helpers::TestApp;
use crate::invite_helpers::{ADMIN_EMAIL, Mail, Reply, assert_forbidden_by, assert_invalid};

const RITA: &str = "rita@acme.example";
const RITA_NEW: &str = "rita.reader@mail.example";
/// The owner of `globex`.
const GWEN: &str = "gwen@globex.example";
/// A member id that exists nowhere.
const GHOST: &str = "00000000-0000-4000-8000-000000000000";

fn email_path(org: &str, user_id: &str) -> String {
    format!("/v1/orgs/{org}/members/{user_id}/email")
}

/// `POST /v1/orgs/{org}/members/{user}/email` as `actor`.
async fn request_change(
    app: &TestApp,
    actor: &str,
    org: &str,
    user_id: &str,
    email: &str,
) -> Reply {
    app.post(actor, &email_path(org, user_id), &json!({"email": email}))
        .await
}

/// Asks for the change, which must be accepted for confirmation.
async fn requested(app: &TestApp, actor: &str, org: &str, user_id: &str, email: &str) -> Reply {
    let reply = request_change(app, actor, org, user_id, email).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    reply
}

/// The secret of the confirmation link in a message, if any.
fn link_secret(mail: &Mail) -> Option<String> {
    let start = mail.body.find("/email-change/")? + "/email-change/".len();
    let secret: String = mail.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    (!secret.is_empty()).then_some(secret)
}

/// The secret of the next confirmation link mailed to `email`.
async fn next_link_to(app: &TestApp, email: &str) -> String {
    let mail = app.next_mail_to(email).await;
    link_secret(&mail).unwrap_or_else(|| panic!("no confirmation link in: {mail:?}"))
}

/// The confirmation page of a link: its status, text, and (when it shows
/// the form) the CSRF cookie pair and hidden field.
struct Page {
    status: StatusCode,
    text: String,
    set_cookie: Option<String>,
    cookie: String,
    csrf: String,
}

async fn open_page(app: &TestApp, secret: &str) -> Page {
    let response = app
        .client
        .get(app.url(&format!("/email-change/{secret}")))
        .send()
        .await
        .expect("GET the page");
    let status = response.status();
    let set_cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cedargate_email_csrf="))
        .map(str::to_owned);
    let cookie = set_cookie
        .as_deref()
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("the page");
    let marker = "name=\"csrf\" value=\"";
    let csrf = text
        .find(marker)
        .map(|start| {
            text[start + marker.len()..]
                .split('"')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    Page {
        status,
        text,
        set_cookie,
        cookie,
        csrf,
    }
}

/// Posts the confirmation form of `secret` with `cookie` and `csrf`.
async fn post_confirm(
    app: &TestApp,
    secret: &str,
    cookie: &str,
    csrf: &str,
) -> (StatusCode, String) {
    let response = app
        .client
        .post(app.url("/email-change/confirm"))
        .header(COOKIE, cookie)
        .form(&[("token", secret), ("csrf", csrf)])
        .send()
        .await
        .expect("POST the form");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// Opens the page of `secret` and posts its form, as a browser would.
async fn confirm(app: &TestApp, secret: &str) -> (StatusCode, String) {
    let page = open_page(app, secret).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    post_confirm(app, secret, &page.cookie, &page.csrf).await
}

/// `acme` with Rita, an active member.
async fn acme_with_rita() -> (TestApp, String) {
    let (app, _) = acme().await;
    let rita = app
        .member_joins(
            OWNER,
            ORG,
            RITA,
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    (app, rita)
}

/// Rita joins `globex` (owned by Gwen) with her account: added at once,
/// or by accepting the link mailed to her, as the service has it.
async fn rita_joins_globex(app: &TestApp) {
    let outcome = app.invited(GWEN, "globex", RITA, json!({})).await;
    if outcome["outcome"] != "added" {
        let token = app.next_token_for(RITA).await;
        let accepted = app.accept(&token).await;
        assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    }
}

/// The `email` attribute of the stored Cedar entity `User::"<user_id>"`.
async fn projected_email(app: &TestApp, user_id: &str) -> String {
    let db = app.db().await;
    let (body,): (String,) =
        sqlx::query_as("select body from entity where entity_type = 'User' and entity_id = $1")
            .bind(user_id)
            .fetch_one(&db)
            .await
            .expect("the User entity");
    db.close().await;
    let entity: Value = serde_json::from_str(&body).expect("entity JSON");
    str_of(&entity["attrs"]["email"]).to_owned()
}

/// Every text the outbox and the e-mail change table hold, in one string.
async fn stored_text(app: &TestApp) -> String {
    let db = app.db().await;
    let outbox: Vec<(String, String, String)> =
        sqlx::query_as("select recipient, subject, body from outbox")
            .fetch_all(&db)
            .await
            .expect("the outbox");
    let changes: Vec<(String, String, String)> =
        sqlx::query_as("select old_email, new_email, token_hash from email_change")
            .fetch_all(&db)
            .await
            .expect("the e-mail changes");
    db.close().await;
    format!("{outbox:?}\n{changes:?}")
}

on_both_backends!(an_administrator_changes_a_members_address_once_the_new_address_confirms_it);
async fn an_administrator_changes_a_members_address_once_the_new_address_confirms_it() {
    // Arrange
    let (app, rita) = acme_with_rita().await;

    // Act
    let asked = requested(&app, OWNER, ORG, &rita, "  Rita.Reader@Mail.Example ").await;
    let link_mail = app.next_mail_to(RITA_NEW).await;
    let notice = app.next_mail_to(RITA).await;
    let secret = link_secret(&link_mail).expect("a confirmation link");
    let before_confirming = app.member(OWNER, ORG, RITA).await;
    let stored = stored_text(&app).await;
    let page = open_page(&app, &secret).await;
    let still_old_after_get = app.member(OWNER, ORG, RITA).await;
    let (confirmed, confirmed_page) = post_confirm(&app, &secret, &page.cookie, &page.csrf).await;

    // Assert: the request, the two messages.
    assert_eq!(asked.body["email"], RITA_NEW, "{}", asked.text);
    assert_eq!(asked.body["user_id"], rita.as_str(), "{}", asked.text);
    assert!(asked.body["expires_at"].is_i64(), "{}", asked.text);
    assert!(notice.body.contains(RITA_NEW), "{notice:?}");
    assert_eq!(
        link_secret(&notice),
        None,
        "the old address gets no link: {notice:?}"
    );
    assert!(!notice.body.contains("/email-change/"), "{notice:?}");
    // Nothing changes before the confirmation, not even on GET.
    assert_eq!(before_confirming["email"], RITA);
    assert_eq!(still_old_after_get["email"], RITA);
    // Only the hash of the mailed secret is stored; the secret nowhere.
    assert!(!stored.contains(&secret), "{stored}");
    assert!(
        stored.contains(&cedargate::invites::token::hash_token(&secret)),
        "{stored}"
    );
    // The page shows what will change and a form.
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains(RITA) && page.text.contains(RITA_NEW),
        "{}",
        page.text
    );
    let set_cookie = page
        .set_cookie
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(set_cookie.contains("httponly"), "{set_cookie}");
    assert!(set_cookie.contains("samesite=strict"), "{set_cookie}");
    assert!(set_cookie.contains("path=/email-change"), "{set_cookie}");
    // Confirmed: the login moved.
    assert_eq!(confirmed, StatusCode::OK, "{confirmed_page}");
    assert!(confirmed_page.contains(RITA_NEW), "{confirmed_page}");
    assert_eq!(
        app.member(OWNER, ORG, RITA_NEW).await["user_id"],
        rita.as_str()
    );
    assert!(app.members_with_email(OWNER, ORG, RITA).await.is_empty());
    assert_eq!(projected_email(&app, &rita).await, RITA_NEW);
    let as_old = app.get(RITA, &format!("/v1/orgs/{ORG}/members")).await;
    assert_eq!(as_old.status, StatusCode::FORBIDDEN, "{}", as_old.text);
    assert_eq!(as_old.code(), "unknown_actor", "{}", as_old.text);
    let as_new = app.get(RITA_NEW, &format!("/v1/orgs/{ORG}/members")).await;
    assert_ne!(as_new.code(), "unknown_actor", "{}", as_new.text);
    // Audited: the request by the owner, the change with before and after.
    let asked_events = app
        .audit(OWNER, ORG, "?action=user.emailChangeRequested")
        .await;
    assert_eq!(asked_events.len(), 1, "{asked_events:?}");
    assert_eq!(asked_events[0]["outcome"], "ok");
    assert_eq!(asked_events[0]["after"]["email"], RITA_NEW);
    let changed_events = app.audit(OWNER, ORG, "?action=user.emailChanged").await;
    assert_eq!(changed_events.len(), 1, "{changed_events:?}");
    assert_eq!(changed_events[0]["before"]["email"], RITA);
    assert_eq!(changed_events[0]["after"]["email"], RITA_NEW);
    assert_eq!(changed_events[0]["actor"], rita.as_str());
}

on_both_backends!(a_confirmation_link_works_once);
async fn a_confirmation_link_works_once() {
    // Arrange
    let (app, rita) = acme_with_rita().await;
    requested(&app, OWNER, ORG, &rita, RITA_NEW).await;
    let secret = next_link_to(&app, RITA_NEW).await;

    // Act
    let (first, _) = confirm(&app, &secret).await;
    let again = open_page(&app, &secret).await;

    // Assert
    assert_eq!(first, StatusCode::OK);
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
    assert!(
        again.text.contains("This link is unavailable"),
        "{}",
        again.text
    );
    assert_eq!(again.set_cookie, None);
}

on_both_backends!(a_newer_request_kills_the_link_of_the_older_one);
async fn a_newer_request_kills_the_link_of_the_older_one() {
    // Arrange
    let (app, rita) = acme_with_rita().await;
    requested(&app, OWNER, ORG, &rita, RITA_NEW).await;
    let older = next_link_to(&app, RITA_NEW).await;
    let older_page = open_page(&app, &older).await;

    // Act
    requested(&app, OWNER, ORG, &rita, "rita.other@mail.example").await;
    let newer = next_link_to(&app, "rita.other@mail.example").await;
    let (older_posted, older_answer) =
        post_confirm(&app, &older, &older_page.cookie, &older_page.csrf).await;
    let older_again = open_page(&app, &older).await;
    let (newer_posted, _) = confirm(&app, &newer).await;

    // Assert
    assert_eq!(older_page.status, StatusCode::OK);
    assert_eq!(older_posted, StatusCode::NOT_FOUND, "{older_answer}");
    assert!(
        older_answer.contains("This link is unavailable"),
        "{older_answer}"
    );
    assert_eq!(older_again.status, StatusCode::NOT_FOUND);
    assert_eq!(newer_posted, StatusCode::OK);
    assert_eq!(
        app.member(OWNER, ORG, "rita.other@mail.example").await["user_id"],
        rita.as_str()
    );
}

on_both_backends!(an_expired_link_is_unavailable_like_an_unknown_one);
async fn an_expired_link_is_unavailable_like_an_unknown_one() {
    // Arrange
    let (app, rita) = acme_with_rita().await;
    requested(&app, OWNER, ORG, &rita, RITA_NEW).await;
    let secret = next_link_to(&app, RITA_NEW).await;
    let page = open_page(&app, &secret).await;

    // Act
    app.advance(7 * 24 * 3600 + 1);
    let expired = open_page(&app, &secret).await;
    let (posted, _) = post_confirm(&app, &secret, &page.cookie, &page.csrf).await;
    let unknown = open_page(&app, "no-such-link").await;

    // Assert
    assert_eq!(expired.status, StatusCode::NOT_FOUND);
    assert_eq!(posted, StatusCode::NOT_FOUND);
    assert_eq!(expired.text, unknown.text);
    assert_eq!(app.member(OWNER, ORG, RITA).await["user_id"], rita.as_str());
}

on_both_backends!(the_form_needs_the_csrf_pair_of_its_own_link);
async fn the_form_needs_the_csrf_pair_of_its_own_link() {
    // Arrange
    let (app, rita) = acme_with_rita().await;
    requested(&app, OWNER, ORG, &rita, RITA_NEW).await;
    let secret = next_link_to(&app, RITA_NEW).await;
    let page = open_page(&app, &secret).await;

    // Act
    let (without_cookie, text) = post_confirm(&app, &secret, "", &page.csrf).await;
    let (wrong_field, _) = post_confirm(&app, &secret, &page.cookie, &page.cookie).await;

    // Assert
    assert_eq!(without_cookie, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("Please open the link again"), "{text}");
    assert_eq!(wrong_field, StatusCode::FORBIDDEN);
    assert_eq!(app.member(OWNER, ORG, RITA).await["email"], RITA);
    let (confirmed, _) = post_confirm(&app, &secret, &page.cookie, &page.csrf).await;
    assert_eq!(confirmed, StatusCode::OK);
}

on_both_backends!(an_address_that_is_already_a_login_is_refused_with_409);
async fn an_address_that_is_already_a_login_is_refused_with_409() {
    // Arrange
    let (app, rita) = acme_with_rita().await;
    app.member_joins(OWNER, ORG, "nora@acme.example", json!({}))
        .await;

    // Act
    let taken = request_change(&app, OWNER, ORG, &rita, " Nora@ACME.example").await;
    let own = request_change(&app, OWNER, ORG, &rita, RITA).await;

    // Assert
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    assert_eq!(taken.code(), "conflict");
    // The answer names no account: not whose the address is, nor where.
    assert_eq!(
        taken.message(),
        "`nora@acme.example` is already the e-mail address of an account"
    );
    assert_eq!(own.status, StatusCode::CONFLICT, "{}", own.text);
    let refused = app
        .audit(OWNER, ORG, "?action=user.emailChangeRequested")
        .await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|e| str_of(&e["outcome"]).starts_with("refused: ")),
        "{refused:?}"
    );
    app.settle_mail().await;
    assert!(
        app.mails()
            .iter()
            .all(|m| !m.body.contains("/email-change/")),
        "no confirmation link is mailed"
    );
}

on_both_backends!(generic_and_malformed_addresses_are_refused_with_422);
async fn generic_and_malformed_addresses_are_refused_with_422() {
    // Arrange
    let (app, rita) = acme_with_rita().await;

    // Act
    let generic = request_change(&app, OWNER, ORG, &rita, "info@mail.example").await;
    let tagged = request_change(&app, OWNER, ORG, &rita, "Sales+EU@mail.example").await;
    let malformed = request_change(&app, OWNER, ORG, &rita, "rita at mail").await;

    // Assert
    assert_invalid(&generic, "email");
    assert_invalid(&tagged, "email");
    assert_invalid(&malformed, "email");
}

on_both_backends!(
    an_administrator_cannot_move_the_login_of_someone_who_also_belongs_to_another_organization
);
async fn an_administrator_cannot_move_the_login_of_someone_who_also_belongs_to_another_organization()
 {
    // Arrange: Rita also belongs to globex (added with her existing account).
    let (app, rita) = acme_with_rita().await;
    app.create_org("globex", GWEN).await;
    rita_joins_globex(&app).await;

    // Act
    let by_acme_owner = request_change(&app, OWNER, ORG, &rita, RITA_NEW).await;
    let by_globex_owner = request_change(&app, GWEN, "globex", &rita, RITA_NEW).await;
    let by_system_admin = request_change(&app, ADMIN_EMAIL, ORG, &rita, RITA_NEW).await;
    let secret = next_link_to(&app, RITA_NEW).await;
    let (confirmed, _) = confirm(&app, &secret).await;

    // Assert
    for refused in [&by_acme_owner, &by_globex_owner] {
        assert_forbidden_by(refused, "email-change-sole-organization");
        assert!(
            refused.message().contains("another organization"),
            "{}",
            refused.text
        );
        assert!(refused.message().starts_with("`email`"), "{}", refused.text);
    }
    assert_eq!(
        by_system_admin.status,
        StatusCode::ACCEPTED,
        "{}",
        by_system_admin.text
    );
    assert_eq!(confirmed, StatusCode::OK);
    assert_eq!(
        app.member(GWEN, "globex", RITA_NEW).await["user_id"],
        rita.as_str()
    );
    // Audited in both organizations she belongs to.
    for (actor, org) in [(OWNER, ORG), (GWEN, "globex")] {
        let changed = app.audit(actor, org, "?action=user.emailChanged").await;
        assert_eq!(changed.len(), 1, "{org}: {changed:?}");
        assert_eq!(changed[0]["after"]["email"], RITA_NEW);
    }
    let denied = app.audit(OWNER, ORG, "?action=users.changeEmail").await;
    assert!(
        denied
            .iter()
            .any(|e| str_of(&e["outcome"]).contains("email-change-sole-organization")),
        "{denied:?}"
    );
}

on_both_backends!(a_link_is_not_confirmed_once_the_person_joined_another_organization);
async fn a_link_is_not_confirmed_once_the_person_joined_another_organization() {
    // Arrange: acme's owner asks while Rita belongs to acme alone; then she
    // joins globex.
    let (app, rita) = acme_with_rita().await;
    requested(&app, OWNER, ORG, &rita, RITA_NEW).await;
    let secret = next_link_to(&app, RITA_NEW).await;
    app.next_mail_to(RITA).await;
    app.create_org("globex", GWEN).await;
    rita_joins_globex(&app).await;

    // Act
    let (posted, page) = confirm(&app, &secret).await;

    // Assert
    assert_eq!(posted, StatusCode::FORBIDDEN, "{page}");
    assert_eq!(app.member(OWNER, ORG, RITA).await["user_id"], rita.as_str());
}

on_both_backends!(nobody_changes_their_own_address_through_the_administration_route);
async fn nobody_changes_their_own_address_through_the_administration_route() {
    // Arrange
    let (app, owner_id) = acme().await;

    // Act
    let own = request_change(&app, OWNER, ORG, &owner_id, "olivia@mail.example").await;

    // Assert
    assert_forbidden_by(&own, "no-self-email-change");
}

on_both_backends!(an_outsider_gets_the_same_refusal_whether_or_not_the_member_exists);
async fn an_outsider_gets_the_same_refusal_whether_or_not_the_member_exists() {
    // Arrange
    let (app, rita) = acme_with_rita().await;
    app.create_org("globex", GWEN).await;

    // Act
    let member = request_change(&app, GWEN, ORG, &rita, RITA_NEW).await;
    let ghost = request_change(&app, GWEN, ORG, GHOST, RITA_NEW).await;
    let missing_org = request_change(&app, GWEN, "nowhere", GHOST, RITA_NEW).await;
    let generic = request_change(&app, GWEN, ORG, GHOST, "info@mail.example").await;

    // Assert
    assert_eq!(member.status, StatusCode::FORBIDDEN, "{}", member.text);
    assert_eq!(member.text, ghost.text);
    assert_eq!(member.text, generic.text);
    assert_eq!(
        missing_org.text, member.text,
        "an organization that does not exist is refused as one that does"
    );
    let by_admin = request_change(&app, OWNER, ORG, GHOST, RITA_NEW).await;
    assert_eq!(by_admin.status, StatusCode::NOT_FOUND, "{}", by_admin.text);
}

on_both_backends!(a_member_who_has_not_joined_yet_is_invited_again_instead);
async fn a_member_who_has_not_joined_yet_is_invited_again_instead() {
    // Arrange
    let (app, _) = acme().await;
    let paula = app
        .invited(OWNER, ORG, "paula@acme.example", json!({}))
        .await;

    // Act
    let changed = request_change(
        &app,
        OWNER,
        ORG,
        str_of(&paula["user_id"]),
        "paula@mail.example",
    )
    .await;

    // Assert
    assert_eq!(changed.status, StatusCode::CONFLICT, "{}", changed.text);
    assert!(
        changed
            .message()
            .contains("has not accepted the invitation"),
        "{}",
        changed.text
    );
}

on_both_backends!(a_change_dies_with_the_membership_it_was_asked_on);
async fn a_change_dies_with_the_membership_it_was_asked_on() {
    // Arrange
    let (app, rita) = acme_with_rita().await;
    requested(&app, OWNER, ORG, &rita, RITA_NEW).await;
    let secret = next_link_to(&app, RITA_NEW).await;

    // Act
    let removed = app
        .delete_as(OWNER, &format!("/v1/orgs/{ORG}/members/{rita}"))
        .await;
    let page = open_page(&app, &secret).await;

    // Assert
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.text);
}
