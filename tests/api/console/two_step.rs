//! Two-step verification: enrollment (QR code, key, recovery codes), the
//! code at sign-in, replays refused, recovery codes used once, and the
//! members of an organization that requires it.

use reqwest::{Method, StatusCode};
use serde_json::json;
use totp_rs::{Builder, Secret};

use super::sign_in::{ORG, OWNER, app_with_owner};
use super::support::{CONSOLE_PASSWORD, ConsoleClient, csrf_from, location, set_password_for};
use crate::helpers::TestApp;

/// The code an authenticator app shows for `secret` at `time`.
pub(crate) fn code_at(secret: &str, time: i64) -> String {
    let secret = Secret::try_from_base32(secret).expect("a base32 key");
    let totp = Builder::new().with_secret(secret).build().expect("a TOTP");
    totp.generate(u64::try_from(time).expect("a positive time"))
        .to_string()
}

fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in:\n{page}"))
        + start.len();
    let to = page[from..].find(end).expect("the end") + from;
    &page[from..to]
}

/// The recovery codes a page shows.
pub(crate) fn recovery_codes(page: &str) -> Vec<String> {
    between(page, "id=\"recovery-codes\">", "</ul>")
        .split("<li>")
        .filter_map(|item| item.split("</li>").next())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Enrolls the signed-in (or must-enroll) `client` at the server's time;
/// returns the key and the recovery codes.
pub(crate) async fn enroll(app: &TestApp, client: &ConsoleClient) -> (String, Vec<String>) {
    let (status, page) = client.get_text("/console/two-step/enroll").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("src=\"data:image/png;base64,"),
        "a QR code: {page}"
    );
    let secret = between(&page, "<code id=\"totp-secret\">", "</code>").to_owned();
    let code = code_at(&secret, app.now());
    let response = client
        .post_raw(
            "/console/two-step/enroll",
            &[("csrf", &csrf_from(&page)), ("code", &code)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.expect("a page");
    let codes = recovery_codes(&page);
    assert_eq!(codes.len(), 10, "{page}");
    client.refresh_csrf().await;
    (secret, codes)
}

/// Signs in with the password; the answer must ask for a code.
async fn password_step(app: &TestApp, email: &str) -> ConsoleClient {
    let client = ConsoleClient::new(app);
    let response = client.try_sign_in(email, CONSOLE_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/console/two-step?next=/console");
    client
}

/// Posts `code` on the code page; returns the answer.
async fn second_step(client: &ConsoleClient, code: &str) -> reqwest::Response {
    let (status, page) = client.get_text("/console/two-step").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    client
        .post_raw(
            "/console/two-step",
            &[
                ("csrf", &csrf_from(&page)),
                ("code", code),
                ("next", "/console/account"),
            ],
        )
        .await
}

on_both_backends!(an_enrolled_person_is_asked_for_a_code_and_each_code_works_once);
async fn an_enrolled_person_is_asked_for_a_code_and_each_code_works_once() {
    // Arrange
    let app = app_with_owner().await;
    let owner = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let before = owner.session();
    let (secret, _) = enroll(&app, &owner).await;
    assert_ne!(
        owner.session(),
        before,
        "enrolling gives the session a new id"
    );
    let (_, account) = owner.get_text("/console/account").await;
    assert!(
        account.contains("two-step-status\">On. 10 unused recovery codes left."),
        "{account}"
    );
    let enrolled_step_code = code_at(&secret, app.now());
    app.advance(30);

    // Act
    let first = password_step(&app, OWNER).await;
    let pending = first.get("/console/account").await;
    let replayed = second_step(&first, &enrolled_step_code).await;
    let fresh = code_at(&secret, app.now());
    let accepted = second_step(&first, &fresh).await;
    let accepted_to = location(&accepted);
    let second = password_step(&app, OWNER).await;
    let replay = second_step(&second, &fresh).await;
    let late = second_step(&second, &code_at(&secret, app.now() - 30)).await;
    app.advance(30);
    let next = second_step(&second, &code_at(&secret, app.now())).await;

    // Assert
    assert_eq!(pending.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&pending),
        "/console/two-step",
        "no console before the code"
    );
    assert_eq!(
        replayed.status(),
        StatusCode::UNAUTHORIZED,
        "the enrollment's step"
    );
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert_eq!(accepted_to, "/console/account");
    assert_eq!(first.get("/console/account").await.status(), StatusCode::OK);
    assert_eq!(
        replay.status(),
        StatusCode::UNAUTHORIZED,
        "a code is accepted once"
    );
    assert_eq!(
        late.status(),
        StatusCode::UNAUTHORIZED,
        "an older step after a newer one"
    );
    assert_eq!(next.status(), StatusCode::SEE_OTHER, "the next step's code");
}

on_both_backends!(a_recovery_code_signs_in_once);
async fn a_recovery_code_signs_in_once() {
    // Arrange
    let app = app_with_owner().await;
    let owner = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let (_, codes) = enroll(&app, &owner).await;
    let code = codes[3].to_uppercase();

    // Act
    let first = password_step(&app, OWNER).await;
    let used = second_step(&first, &code).await;
    let second = password_step(&app, OWNER).await;
    let reused = second_step(&second, &code).await;
    let (_, account) = first.get_text("/console/account").await;

    // Assert
    assert_eq!(used.status(), StatusCode::SEE_OTHER);
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        account.contains("9 unused recovery codes left"),
        "{account}"
    );
}

on_both_backends!(new_recovery_codes_replace_the_old_ones);
async fn new_recovery_codes_replace_the_old_ones() {
    // Arrange
    let app = app_with_owner().await;
    let owner = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let (_, old) = enroll(&app, &owner).await;

    // Act
    let response = owner
        .post_form("/console/account/recovery-codes", &[])
        .await;
    let status = response.status();
    let new = recovery_codes(&response.text().await.unwrap_or_default());
    let client = password_step(&app, OWNER).await;
    let with_old = second_step(&client, &old[0]).await;
    let with_new = second_step(&client, &new[0]).await;

    // Assert
    assert_eq!(status, StatusCode::OK);
    assert_eq!(new.len(), 10);
    assert_eq!(with_old.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with_new.status(), StatusCode::SEE_OTHER);
}

/// Turns `require_mfa` on for [`ORG`] as its owner (through the API).
async fn require_mfa(app: &TestApp) {
    let request = app
        .request(Method::PATCH, &format!("/v1/orgs/{ORG}"))
        .header("X-Cedargate-Actor", OWNER)
        .header("X-Cedargate-Actor-Mfa", "true")
        .json(&json!({"requireMfa": true}));
    let reply = TestApp::reply(request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

on_both_backends!(a_member_of_an_organization_requiring_two_step_must_enroll_first);
async fn a_member_of_an_organization_requiring_two_step_must_enroll_first() {
    // Arrange
    let app = app_with_owner().await;
    let member = "mia@acme.example";
    app.invited(OWNER, ORG, member, json!({"role": "GeneralUser"}))
        .await;
    set_password_for(&app, member).await;
    require_mfa(&app).await;
    let client = ConsoleClient::new(&app);

    // Act
    let signed = client.try_sign_in(member, CONSOLE_PASSWORD).await;
    let to = location(&signed);
    let blocked = client.get("/console/account").await;
    let blocked_to = location(&blocked);
    let (_, page) = client.get_text("/console/two-step/enroll").await;
    let before = client.session();
    let (_, codes) = enroll(&app, &client).await;

    // Assert
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(to, "/console/two-step/enroll");
    assert_eq!(blocked.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        blocked_to, "/console/two-step/enroll",
        "no console before enrolling"
    );
    assert!(page.contains("requires two-step verification"), "{page}");
    assert_eq!(codes.len(), 10);
    assert_ne!(client.session(), before, "a new id once complete");
    assert_eq!(
        client.get("/console/account").await.status(),
        StatusCode::OK
    );
}

on_both_backends!(a_console_session_without_two_step_cannot_act_where_it_is_required);
async fn a_console_session_without_two_step_cannot_act_where_it_is_required() {
    // Arrange: a session signed in with the password only, before the
    // organization required two-step verification.
    let app = app_with_owner().await;
    let owner = ConsoleClient::sign_in(&app, OWNER, CONSOLE_PASSWORD).await;
    let path = format!("/console/orgs/{ORG}/users");
    assert_eq!(
        owner.get(&path).await.status(),
        StatusCode::OK,
        "allowed before"
    );
    require_mfa(&app).await;

    // Act
    let refused = owner.get(&path).await;
    let status = refused.status();
    let page = refused.text().await.unwrap_or_default();

    // Assert
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
}
