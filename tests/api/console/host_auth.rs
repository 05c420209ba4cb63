//! `POST /v1/auth/verify`: host applications checking their people's
//! credentials.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::sign_in::{ORG, OWNER, app_with_owner};
use super::support::{CONSOLE_PASSWORD, ConsoleClient};
use super::two_step::{code_at, enroll};
use crate::helpers::TestApp;
use crate::invite_helpers::Reply;

async fn verify(app: &TestApp, body: Value) -> Reply {
    TestApp::reply(
        app.request(reqwest::Method::POST, "/v1/auth/verify")
            .json(&body),
    )
    .await
}

on_both_backends!(the_host_api_answers_who_signed_in_and_their_memberships);
async fn the_host_api_answers_who_signed_in_and_their_memberships() {
    // Arrange
    let app = app_with_owner().await;

    // Act
    let ok = verify(
        &app,
        json!({"email": " Olivia@ACME.example ", "password": CONSOLE_PASSWORD}),
    )
    .await;
    let wrong = verify(
        &app,
        json!({"email": OWNER, "password": "not the password"}),
    )
    .await;
    let unknown = verify(
        &app,
        json!({"email": "nobody@acme.example", "password": CONSOLE_PASSWORD}),
    )
    .await;
    let anonymous = TestApp::reply(
        app.client
            .post(app.url("/v1/auth/verify"))
            .json(&json!({"email": OWNER, "password": CONSOLE_PASSWORD})),
    )
    .await;

    // Assert
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["email"], OWNER);
    assert_eq!(ok.body["mfa"], false);
    assert!(ok.body["user_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        ok.body["memberships"],
        json!([{"org": ORG, "status": "ACTIVE", "role": "Owner"}])
    );
    for reply in [&wrong, &unknown] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
        assert_eq!(reply.code(), "invalid_credentials");
    }
    assert_eq!(wrong.text, unknown.text, "one answer for both");
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.code(), "unauthorized");
}

on_both_backends!(the_host_api_asks_enrolled_people_for_a_fresh_code);
async fn the_host_api_asks_enrolled_people_for_a_fresh_code() {
    // Arrange
    let app = app_with_owner().await;
    let owner = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let (secret, codes) = enroll(&app, &owner).await;
    app.advance(30);
    let code = code_at(&secret, app.now());

    // Act
    let missing = verify(&app, json!({"email": OWNER, "password": CONSOLE_PASSWORD})).await;
    let wrong = verify(
        &app,
        json!({"email": OWNER, "password": CONSOLE_PASSWORD, "totp": "000000x"}),
    )
    .await;
    let ok = verify(
        &app,
        json!({"email": OWNER, "password": CONSOLE_PASSWORD, "totp": code}),
    )
    .await;
    let replay = verify(
        &app,
        json!({"email": OWNER, "password": CONSOLE_PASSWORD, "totp": code}),
    )
    .await;
    let recovery = verify(
        &app,
        json!({"email": OWNER, "password": CONSOLE_PASSWORD, "totp": codes[0]}),
    )
    .await;

    // Assert
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.code(), "totp_required");
    assert_eq!(wrong.code(), "invalid_totp", "{}", wrong.text);
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["mfa"], true);
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.code(), "invalid_totp");
    assert_eq!(recovery.status, StatusCode::OK, "{}", recovery.text);
}

on_both_backends!(the_host_api_throttles_an_account_after_five_failures);
async fn the_host_api_throttles_an_account_after_five_failures() {
    // Arrange
    let app = app_with_owner().await;
    for _ in 0..5 {
        let wrong = verify(
            &app,
            json!({"email": OWNER, "password": "not the password"}),
        )
        .await;
        assert_eq!(wrong.code(), "invalid_credentials");
    }

    // Act
    let throttled = verify(&app, json!({"email": OWNER, "password": CONSOLE_PASSWORD})).await;
    app.advance(15 * 60);
    let later = verify(&app, json!({"email": OWNER, "password": CONSOLE_PASSWORD})).await;

    // Assert
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        throttled.text
    );
    assert_eq!(throttled.code(), "throttled");
    assert!(throttled.headers.contains_key(reqwest::header::RETRY_AFTER));
    assert_eq!(later.status, StatusCode::OK, "{}", later.text);
}
