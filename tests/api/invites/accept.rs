//! Accepting one link: simultaneous accepts hash one password and answer
//! the others at once (E10), a refused password or an abandoned claim
//! leaves the link working, and the acceptance page's CSRF cookie (its
//! attributes, its binding to the link).

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::json;

use super::{ORG, OWNER, acme, str_of};
use crate::helpers::TestApp;
use crate::invite_helpers::PASSWORD;

/// How many requests accept the same link at once.
const SIMULTANEOUS: usize = 50;

/// `cedargate_password_hashes_total`: argon2 hashes the server computed.
async fn password_hashes(app: &TestApp) -> u64 {
    let (status, metrics) = app.get_text("/metrics").await;
    assert_eq!(status, StatusCode::OK, "{metrics}");
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("cedargate_password_hashes_total ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no password hash counter in:\n{metrics}"))
}

/// Invites `email` into `acme` and returns the link's secret.
async fn link_for(app: &TestApp, email: &str) -> String {
    app.invited(OWNER, ORG, email, json!({})).await;
    app.next_token_for(email).await
}

on_both_backends!(
    fifty_simultaneous_accepts_of_one_link_hash_one_password_and_tell_the_others_at_once_that_the_link_is_unavailable,
    multi_thread
);
async fn fifty_simultaneous_accepts_of_one_link_hash_one_password_and_tell_the_others_at_once_that_the_link_is_unavailable()
 {
    // Arrange
    let (app, _) = acme().await;
    let outcome = app
        .invited(OWNER, ORG, "crowd@acme.example", json!({}))
        .await;
    let crowd = str_of(&outcome["user_id"]).to_owned();
    let token = app.next_token_for("crowd@acme.example").await;
    let hashes_before = password_hashes(&app).await;

    // Act
    let mut accepts = tokio::task::JoinSet::new();
    for _ in 0..SIMULTANEOUS {
        let request = app
            .client
            .post(app.url("/v1/invitations/accept"))
            .bearer_auth(&app.token)
            .json(&json!({"token": token, "password": PASSWORD}));
        accepts.spawn(async move {
            let response = request.send().await.expect("the request is sent");
            let status = response.status();
            (status, response.text().await.unwrap_or_default())
        });
    }
    let answers = accepts.join_all().await;

    // Assert
    let accepted = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    let unavailable = answers
        .iter()
        .filter(|(status, text)| {
            *status == StatusCode::NOT_FOUND && text.contains("\"link_unavailable\"")
        })
        .count();
    let others: Vec<_> = answers
        .iter()
        .filter(|(status, _)| ![StatusCode::OK, StatusCode::NOT_FOUND].contains(status))
        .collect();
    assert_eq!(
        (accepted, unavailable),
        (1, SIMULTANEOUS - 1),
        "{} other answers, the first: {:?}",
        others.len(),
        others.first()
    );
    assert_eq!(
        password_hashes(&app).await - hashes_before,
        1,
        "only the accept that holds the link hashes its password"
    );
    let acceptances = app
        .audit(OWNER, ORG, "?action=invitation.accepted")
        .await
        .into_iter()
        .filter(|e| e["actor"] == crowd.as_str())
        .count();
    assert_eq!(acceptances, 1);
    assert_eq!(
        app.members_with_email(OWNER, ORG, "crowd@acme.example")
            .await
            .len(),
        1
    );
}

on_both_backends!(a_refused_password_hashes_nothing_and_leaves_the_link_working);
async fn a_refused_password_hashes_nothing_and_leaves_the_link_working() {
    // Arrange
    let (app, _) = acme().await;
    let token = link_for(&app, "short@acme.example").await;
    let hashes_before = password_hashes(&app).await;

    // Act
    let refused = app
        .post_json(
            "/v1/invitations/accept",
            &json!({"token": token, "password": "short"}),
        )
        .await;
    let hashes_after_refusal = password_hashes(&app).await;
    let accepted = app.accept(&token).await;

    // Assert
    assert_eq!(refused.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.1);
    assert_eq!(hashes_after_refusal, hashes_before);
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(password_hashes(&app).await - hashes_before, 1);
}

on_both_backends!(a_claim_abandoned_by_a_crash_blocks_the_link_only_until_its_lease_ends);
async fn a_claim_abandoned_by_a_crash_blocks_the_link_only_until_its_lease_ends() {
    // Arrange: an accept claimed the link and its process died before it
    // finished (the claim is written as that accept left it).
    let (app, _) = acme().await;
    let token = link_for(&app, "crash@acme.example").await;
    let db = app.db().await;
    let claimed = sqlx::query(
        "update invitation set claim_id = 'crashed', claimed_until = $1 where email = $2 and state = 'PENDING'",
    )
    .bind(app.now() + 30)
    .bind("crash@acme.example")
    .execute(&db)
    .await
    .expect("write the claim")
    .rows_affected();
    assert_eq!(claimed, 1);

    // Act
    let during_the_lease = app.accept(&token).await;
    let declined_during_the_lease = app.decline(&token).await;
    app.advance(31);
    let after_the_lease = app.accept(&token).await;

    // Assert
    assert_eq!(during_the_lease.status, StatusCode::NOT_FOUND);
    assert_eq!(during_the_lease.code(), "link_unavailable");
    assert_eq!(declined_during_the_lease.code(), "link_unavailable");
    assert_eq!(
        after_the_lease.status,
        StatusCode::OK,
        "{}",
        after_the_lease.text
    );
    db.close().await;
}

// ------------------------------------------------------------------ the page's CSRF cookie

/// The acceptance page of `token`: its `Set-Cookie` header, the CSRF cookie
/// pair (`name=value`) and the hidden CSRF field.
struct Page {
    set_cookie: String,
    cookie: String,
    csrf: String,
}

async fn open_page(app: &TestApp, token: &str) -> Page {
    let response = app
        .client
        .get(app.url(&format!("/invite/{token}")))
        .send()
        .await
        .expect("GET the page");
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cedargate_csrf="))
        .expect("the page sets the CSRF cookie")
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    let page = response.text().await.expect("the page");
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a CSRF field") + marker.len();
    let csrf = page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned();
    Page {
        set_cookie,
        cookie,
        csrf,
    }
}

/// The attributes of a `Set-Cookie` value after the pair, lower-cased.
fn attributes(set_cookie: &str) -> Vec<String> {
    let mut attributes: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    attributes.sort();
    attributes
}

on_both_backends!(
    under_an_https_public_url_the_csrf_cookie_is_secure_http_only_strict_and_scoped_to_invite
);
async fn under_an_https_public_url_the_csrf_cookie_is_secure_http_only_strict_and_scoped_to_invite()
{
    // Arrange
    let app = TestApp::spawn_with_admin_and(|config| {
        config.invites.public_url = Some("https://authz.example.com".to_owned());
    })
    .await;
    app.create_org(ORG, OWNER).await;
    let token = link_for(&app, "secure@acme.example").await;

    // Act
    let page = open_page(&app, &token).await;

    // Assert
    assert_eq!(
        attributes(&page.set_cookie),
        ["httponly", "path=/invite", "samesite=strict", "secure"],
        "{}",
        page.set_cookie
    );
}

on_both_backends!(under_an_http_public_url_the_csrf_cookie_is_http_only_strict_and_scoped_to_invite_but_not_secure);
async fn under_an_http_public_url_the_csrf_cookie_is_http_only_strict_and_scoped_to_invite_but_not_secure()
 {
    // Arrange: the tests' public URL is the server's own http address.
    let (app, _) = acme().await;
    let token = link_for(&app, "plain@acme.example").await;

    // Act
    let page = open_page(&app, &token).await;

    // Assert
    assert_eq!(
        attributes(&page.set_cookie),
        ["httponly", "path=/invite", "samesite=strict"],
        "{}",
        page.set_cookie
    );
}

on_both_backends!(a_csrf_pair_obtained_for_one_link_does_not_verify_a_post_of_another_link);
async fn a_csrf_pair_obtained_for_one_link_does_not_verify_a_post_of_another_link() {
    // Arrange
    let (app, _) = acme().await;
    let link_a = link_for(&app, "alice@acme.example").await;
    let link_b = link_for(&app, "bob@acme.example").await;
    let page_a = open_page(&app, &link_a).await;
    let post = |token: &str| {
        app.client
            .post(app.url("/invite/accept"))
            .header(COOKIE, &page_a.cookie)
            .form(&[
                ("token", token),
                ("csrf", page_a.csrf.as_str()),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ])
            .send()
    };

    // Act
    let on_b = post(&link_b).await.expect("POST the form");
    let on_b_status = on_b.status();
    let on_b_page = on_b.text().await.unwrap_or_default();
    let on_a = post(&link_a).await.expect("POST the form");

    // Assert
    assert_eq!(on_b_status, StatusCode::FORBIDDEN, "{on_b_page}");
    assert!(
        on_b_page.contains("Please open the link again"),
        "{on_b_page}"
    );
    assert_eq!(on_a.status(), StatusCode::OK);
    // B's link was not used: it still shows its page and accepts once.
    open_page(&app, &link_b).await;
    let accepted_b = app.accept(&link_b).await;
    assert_eq!(accepted_b.status, StatusCode::OK, "{}", accepted_b.text);
}
