//! Password reset by e-mailed link: one answer whatever the address, one
//! use, an hour, every session ended, requests throttled per account.

use reqwest::StatusCode;

use super::sign_in::{OWNER, app_with_owner};
use super::support::{CONSOLE_PASSWORD, ConsoleClient, csrf_from};
use crate::helpers::TestApp;

const NEW_PASSWORD: &str = "a brand new passphrase";
const SUBJECT: &str = "Reset your cedargate password";

/// Asks for a reset link for `email` through the form; returns the page.
async fn ask(app: &TestApp, email: &str) -> String {
    let client = ConsoleClient::new(app);
    let (status, page) = client.get_text("/console/password-reset").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let response = client
        .post_raw(
            "/console/password-reset",
            &[("csrf", &csrf_from(&page)), ("email", email)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("a page")
}

/// The path of the reset link in the next message to `email`.
async fn link_for(app: &TestApp, email: &str) -> String {
    let mail = app.next_mail_to(email).await;
    assert_eq!(mail.subject, SUBJECT);
    let start = mail.body.find("/console/password-reset/").expect("a link");
    let path: String = mail.body[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert_eq!(path.len(), "/console/password-reset/".len() + 43, "{path}");
    path
}

/// Posts a new password (twice) on the link's page; returns the answer.
async fn set(app: &TestApp, path: &str, password: &str, confirm: &str) -> reqwest::Response {
    let client = ConsoleClient::new(app);
    let (status, page) = client.get_text(path).await;
    if status != StatusCode::OK {
        return client
            .post_raw(
                path,
                &[
                    ("csrf", "none"),
                    ("password", password),
                    ("password_confirm", confirm),
                ],
            )
            .await;
    }
    client
        .post_raw(
            path,
            &[
                ("csrf", &csrf_from(&page)),
                ("password", password),
                ("password_confirm", confirm),
            ],
        )
        .await
}

/// Sets `email`'s password to `password` through a reset link, as a
/// person would.
pub(crate) async fn set_password_by_link(app: &TestApp, email: &str, password: &str) {
    ask(app, email).await;
    let path = link_for(app, email).await;
    let response = set(app, &path, password, password).await;
    assert_eq!(response.status(), StatusCode::OK);
}

on_both_backends!(a_reset_link_sets_a_password_once_and_ends_every_session);
async fn a_reset_link_sets_a_password_once_and_ends_every_session() {
    // Arrange
    let app = app_with_owner().await;
    let session = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    ask(&app, OWNER).await;
    let path = link_for(&app, OWNER).await;
    let forger = ConsoleClient::new(&app);
    // A page opened before the link is used, whose form is posted after.
    let early = ConsoleClient::new(&app);
    let (_, early_page) = early.get_text(&path).await;
    let early_csrf = csrf_from(&early_page);

    // Act
    let forged = forger
        .post_raw(
            &path,
            &[
                ("password", NEW_PASSWORD),
                ("password_confirm", NEW_PASSWORD),
            ],
        )
        .await;
    let differ = set(&app, &path, NEW_PASSWORD, "something else entirely").await;
    let short = set(&app, &path, "short", "short").await;
    let done = set(&app, &path, NEW_PASSWORD, NEW_PASSWORD).await;
    let again = early
        .post_raw(
            &path,
            &[
                ("csrf", early_csrf.as_str()),
                ("password", "yet another passphrase"),
                ("password_confirm", "yet another passphrase"),
            ],
        )
        .await;
    let (reopened, _) = ConsoleClient::new(&app).get_text(&path).await;

    // Assert
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "no token");
    assert_eq!(differ.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        done.status(),
        StatusCode::OK,
        "a refused password leaves the link working"
    );
    assert_eq!(again.status(), StatusCode::NOT_FOUND, "used once");
    assert_eq!(reopened, StatusCode::NOT_FOUND);
    assert_eq!(
        session.get("/console/account").await.status(),
        StatusCode::SEE_OTHER,
        "sessions ended"
    );
    let old = ConsoleClient::new(&app)
        .try_sign_in(OWNER, CONSOLE_PASSWORD)
        .await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    ConsoleClient::sign_in(&app, OWNER, NEW_PASSWORD).await;
}

on_both_backends!(a_reset_link_expires_after_an_hour);
async fn a_reset_link_expires_after_an_hour() {
    // Arrange
    let app = app_with_owner().await;
    ask(&app, OWNER).await;
    let path = link_for(&app, OWNER).await;
    app.advance(3600);

    // Act
    let (shown, _) = ConsoleClient::new(&app).get_text(&path).await;
    let posted = set(&app, &path, NEW_PASSWORD, NEW_PASSWORD).await;

    // Assert
    assert_eq!(shown, StatusCode::NOT_FOUND);
    assert_ne!(posted.status(), StatusCode::OK);
    ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
}

on_both_backends!(asking_for_a_reset_answers_the_same_for_any_address);
async fn asking_for_a_reset_answers_the_same_for_any_address() {
    // Arrange
    let app = app_with_owner().await;

    // Act
    let known = ask(&app, OWNER).await;
    let unknown = ask(&app, "nobody@acme.example").await;
    link_for(&app, OWNER).await;
    app.settle_mail().await;

    // Assert
    assert_eq!(known, unknown);
    assert!(
        !app.mails().iter().any(|m| m.to == "nobody@acme.example"),
        "nothing is sent to an address without an account"
    );
}

on_both_backends!(reset_links_are_mailed_at_most_three_times_an_hour);
async fn reset_links_are_mailed_at_most_three_times_an_hour() {
    // Arrange
    let app = app_with_owner().await;
    for _ in 0..3 {
        ask(&app, OWNER).await;
        link_for(&app, OWNER).await;
    }

    // Act
    let fourth = ask(&app, OWNER).await;
    app.settle_mail().await;
    let sent = app.mails().iter().filter(|m| m.subject == SUBJECT).count();
    app.advance(3601);
    ask(&app, OWNER).await;
    link_for(&app, OWNER).await;

    // Assert
    assert!(fourth.contains("Check your e-mail"), "{fourth}");
    assert_eq!(sent, 3);
}

on_both_backends!(a_system_administrator_sets_a_first_password_through_a_reset_link);
async fn a_system_administrator_sets_a_first_password_through_a_reset_link() {
    // Arrange: created at the command line, never invited, no password.
    let app = TestApp::spawn_with_admin().await;
    let admin = crate::invite_helpers::ADMIN_EMAIL;

    // Act
    set_password_by_link(&app, admin, NEW_PASSWORD).await;

    // Assert
    let console = ConsoleClient::sign_in(&app, admin, NEW_PASSWORD).await;
    assert_eq!(
        console.get("/console/account").await.status(),
        StatusCode::OK
    );
}
