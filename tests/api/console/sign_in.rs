//! Sign-in with a password: the generic failure, session fixation,
//! throttling, expiry, sign-out, and CSRF on the forms before a session.

use reqwest::StatusCode;
use serde_json::json;

use super::support::{CONSOLE_PASSWORD, ConsoleClient, csrf_from, location};
use crate::helpers::TestApp;

pub(crate) const ORG: &str = "acme";
pub(crate) const OWNER: &str = "olivia@acme.example";

/// A server with [`ORG`], whose owner [`OWNER`] has a password.
pub(crate) async fn app_with_owner() -> TestApp {
    let app = TestApp::spawn_with_admin().await;
    app.create_org(ORG, OWNER).await;
    app
}

/// The account page answers (200) with this client's session.
async fn signed_in(client: &ConsoleClient) -> bool {
    let response = client.get("/console/account").await;
    match response.status() {
        StatusCode::OK => true,
        StatusCode::SEE_OTHER => {
            let to = location(&response);
            assert!(to.starts_with("/console/sign-in"), "{to}");
            false
        }
        other => panic!("unexpected {other}"),
    }
}

on_both_backends!(an_owner_signs_in_and_sees_their_account);
async fn an_owner_signs_in_and_sees_their_account() {
    // Arrange
    let app = app_with_owner().await;

    // Act
    let client = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let (status, page) = client.get_text("/console/account").await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(OWNER), "{page}");
    assert!(page.contains("two-step-status\">Off."), "{page}");
    assert_eq!(csrf_from(&page), client.csrf());
}

on_both_backends!(console_pages_send_strangers_to_sign_in_and_back);
async fn console_pages_send_strangers_to_sign_in_and_back() {
    // Arrange
    let app = app_with_owner().await;
    let client = ConsoleClient::new(&app);

    // Act
    let response = client.get("/console/account").await;
    let to = location(&response);
    let (_, page) = client.get_text(&to).await;
    let signed = client
        .post_raw(
            "/console/sign-in",
            &[
                ("csrf", &csrf_from(&page)),
                ("email", OWNER),
                ("password", CONSOLE_PASSWORD),
                ("next", "/console/account"),
            ],
        )
        .await;

    // Assert
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(to, "/console/sign-in?next=/console/account");
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed), "/console/account");
    let cookie = signed
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cedargate_session="))
        .unwrap_or_default()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "http public URL: {cookie}");
}

on_both_backends!(every_wrong_sign_in_gets_one_generic_answer);
async fn every_wrong_sign_in_gets_one_generic_answer() {
    // Arrange: an owner with a password, and an invitee without one yet.
    let app = app_with_owner().await;
    app.invited(
        OWNER,
        ORG,
        "pending@acme.example",
        json!({"role": "GeneralUser"}),
    )
    .await;
    let cases = [
        (OWNER, "wrong password!!"),
        ("nobody@acme.example", CONSOLE_PASSWORD),
        ("pending@acme.example", CONSOLE_PASSWORD),
        ("pending@acme.example", ""),
    ];

    for (email, password) in cases {
        // Act
        let client = ConsoleClient::new(&app);
        let response = client.try_sign_in(email, password).await;
        let status = response.status();
        let page = response.text().await.unwrap_or_default();

        // Assert
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{email}: {page}");
        assert!(
            page.contains("E-mail or password is wrong."),
            "{email}: {page}"
        );
        assert!(client.session().is_none(), "{email}: no session");
    }
}

on_both_backends!(a_session_id_from_before_sign_in_is_never_the_one_after);
async fn a_session_id_from_before_sign_in_is_never_the_one_after() {
    // Arrange: a planted id, then a real session that is signed into again.
    let app = app_with_owner().await;
    let client = ConsoleClient::new(&app);
    client.set_cookie("cedargate_session", "planted-by-an-attacker");
    let signed = client.try_sign_in(OWNER, CONSOLE_PASSWORD).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let first = client.session().expect("a session");

    // Act
    let again = client.try_sign_in(OWNER, CONSOLE_PASSWORD).await;
    let second = client.session().expect("a session");
    let replay = ConsoleClient::new(&app);
    replay.set_cookie("cedargate_session", &first);

    // Assert
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
    assert_ne!(first, "planted-by-an-attacker");
    assert_ne!(first, second, "sign-in rotates the id");
    assert!(signed_in(&client).await);
    assert!(
        !signed_in(&replay).await,
        "the id before the new sign-in is dead"
    );
}

on_both_backends!(forms_without_the_right_token_are_refused);
async fn forms_without_the_right_token_are_refused() {
    // Arrange
    let app = app_with_owner().await;
    let client = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let stranger = ConsoleClient::new(&app);
    let (_, page) = stranger.get_text("/console/sign-in").await;
    let login_token = csrf_from(&page);
    let login = [("email", OWNER), ("password", CONSOLE_PASSWORD)];

    // Act + Assert: the forms before a session (sign-in, reset request).
    for path in ["/console/sign-in", "/console/password-reset"] {
        let missing = stranger.post_raw(path, &login).await;
        assert_eq!(
            missing.status(),
            StatusCode::FORBIDDEN,
            "{path} without a token"
        );
        let wrong = stranger
            .post_raw(
                path,
                &[("csrf", "x".repeat(43).as_str()), login[0], login[1]],
            )
            .await;
        assert_eq!(
            wrong.status(),
            StatusCode::FORBIDDEN,
            "{path} with a wrong token"
        );
        // A token without its cookie (another browser) is no token either.
        let elsewhere = ConsoleClient::new(&app)
            .post_raw(path, &[("csrf", login_token.as_str()), login[0], login[1]])
            .await;
        assert_eq!(
            elsewhere.status(),
            StatusCode::FORBIDDEN,
            "{path} from another browser"
        );
    }
    // The forms of a session.
    for path in [
        "/console/sign-out",
        "/console/account/recovery-codes",
        "/console/two-step",
        "/console/two-step/enroll",
    ] {
        let missing = client.post_raw(path, &[("code", "123456")]).await;
        assert_eq!(
            missing.status(),
            StatusCode::FORBIDDEN,
            "{path} without a token"
        );
        let wrong = client
            .post_raw(path, &[("csrf", "wrong"), ("code", "123456")])
            .await;
        assert_eq!(
            wrong.status(),
            StatusCode::FORBIDDEN,
            "{path} with a wrong token"
        );
    }
    assert!(signed_in(&client).await, "still signed in");
}

on_both_backends!(sign_out_ends_the_session);
async fn sign_out_ends_the_session() {
    // Arrange
    let app = app_with_owner().await;
    let client = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let id = client.session().expect("a session");

    // Act
    let out = client.post_form("/console/sign-out", &[]).await;
    let to = location(&out);
    let replay = ConsoleClient::new(&app);
    replay.set_cookie("cedargate_session", &id);

    // Assert
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(to.starts_with("/console/sign-in"), "{to}");
    assert!(client.session().is_none(), "the cookie is cleared");
    assert!(!signed_in(&replay).await, "the session row is gone");
}

on_both_backends!(sessions_end_when_idle_or_old);
async fn sessions_end_when_idle_or_old() {
    // Arrange
    let app = app_with_owner().await;
    let idle = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let busy = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;

    // Act + Assert: used every 29 minutes, a session lives 12 hours.
    app.advance(29 * 60);
    assert!(signed_in(&busy).await);
    app.advance(2 * 60);
    assert!(!signed_in(&idle).await, "31 idle minutes end a session");
    assert!(signed_in(&busy).await);
    let mut elapsed = 31 * 60;
    while elapsed + 29 * 60 <= 12 * 3600 {
        app.advance(29 * 60);
        elapsed += 29 * 60;
        assert!(signed_in(&busy).await, "alive after {elapsed} s");
    }
    app.advance(12 * 3600 - elapsed + 1);
    assert!(
        !signed_in(&busy).await,
        "12 hours end a session however busy"
    );
}

on_both_backends!(failed_attempts_throttle_the_account_then_the_address);
async fn failed_attempts_throttle_the_account_then_the_address() {
    // Arrange
    let app = app_with_owner().await;
    let client = ConsoleClient::new(&app);
    for _ in 0..5 {
        let wrong = client.try_sign_in(OWNER, "wrong password!!").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }

    // Act
    let throttled = client.try_sign_in(OWNER, CONSOLE_PASSWORD).await;
    let retry_after = throttled
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .cloned();
    app.advance(15 * 60);
    let later = client.try_sign_in(OWNER, CONSOLE_PASSWORD).await;

    // Assert
    assert_eq!(
        throttled.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password"
    );
    assert!(retry_after.is_some());
    assert_eq!(later.status(), StatusCode::SEE_OTHER, "the window passed");

    // Arrange: 20 failures from this address, spread over other accounts.
    for i in 0..20 {
        let wrong = client
            .try_sign_in(&format!("guess{i}@acme.example"), "nope nope nope")
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }

    // Act
    let blocked = client.try_sign_in(OWNER, CONSOLE_PASSWORD).await;

    // Assert
    assert_eq!(
        blocked.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the address is throttled"
    );
}
