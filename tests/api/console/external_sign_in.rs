//! `--accept-without-password`: people sign in through an external
//! identity provider, so the acceptance page asks for no password.

use reqwest::StatusCode;
use serde_json::json;

use super::sign_in::{ORG, OWNER};
use super::support::{CONSOLE_PASSWORD, ConsoleClient, csrf_from};
use crate::helpers::TestApp;

on_both_backends!(with_an_external_identity_provider_accepting_asks_for_no_password);
async fn with_an_external_identity_provider_accepting_asks_for_no_password() {
    // Arrange
    let app = TestApp::spawn_with_admin_and(|c| c.invites.accept_without_password = true).await;
    app.create_org(ORG, OWNER).await;
    let member = "mia@acme.example";
    app.invited(OWNER, ORG, member, json!({"role": "GeneralUser"}))
        .await;
    let token = app.next_token_for(member).await;
    let browser = ConsoleClient::new(&app);

    // Act
    let (status, page) = browser.get_text(&format!("/invite/{token}")).await;
    let accepted = browser
        .post_raw(
            "/invite/accept",
            &[("token", token.as_str()), ("csrf", &csrf_from(&page))],
        )
        .await;
    let accepted_status = accepted.status();
    let welcome = accepted.text().await.unwrap_or_default();

    // Assert
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(!page.contains("name=\"password\""), "{page}");
    assert!(page.contains("id=\"external-sign-in\""), "{page}");
    assert_eq!(accepted_status, StatusCode::OK, "{welcome}");
    assert!(welcome.contains("Welcome to"), "{welcome}");
    assert_eq!(app.member(OWNER, ORG, member).await["status"], "ACTIVE");
    for password in [CONSOLE_PASSWORD, ""] {
        let refused = ConsoleClient::new(&app).try_sign_in(member, password).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "no local login");
    }
}
