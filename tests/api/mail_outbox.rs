//! The outbox as an attacker with a database dump, or an impatient
//! administrator, sees it: a message waiting for delivery holds no working
//! invitation link; many invitations of one person queued at once are one
//! message; and SMTP credentials never travel without TLS.

use std::collections::HashSet;

use cedargate::config::ServeConfig;
use cedargate::invites::token::hash_token;
use cedargate::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Api, Backend, TestApp, repo_dir};
use crate::onboarding::{ORG_ID, OWNER_EMAIL, invite_link, message_body, token_of};
use crate::smtp::{Outbox, Patience, RITA_EMAIL, SmtpSink, invite_rita, org_with_an_active_owner};

/// Length of an invitation secret: 256 bits in base64url.
const SECRET_CHARS: usize = 43;

/// Every text of the outbox's unsent messages, as a dump would show it.
async fn unsent_outbox_text(outbox: &Outbox) -> String {
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "select recipient, subject, body, last_error from outbox where sent_at is null",
    )
    .fetch_all(&outbox.0)
    .await
    .expect("the outbox is readable");
    assert!(!rows.is_empty(), "a message waits in the outbox");
    rows.into_iter()
        .map(|(to, subject, body, error)| format!("{to}\n{subject}\n{body}\n{error:?}\n"))
        .collect()
}

/// The stored token hashes of every invitation.
async fn token_hashes(outbox: &Outbox) -> HashSet<String> {
    let rows: Vec<(String,)> = sqlx::query_as("select token_hash from invitation")
        .fetch_all(&outbox.0)
        .await
        .expect("the invitations are readable");
    rows.into_iter().map(|(h,)| h).collect()
}

/// Every run of [`SECRET_CHARS`] base64url characters in `text` whose hash
/// is one of `hashes`: a secret that would open an invitation.
fn working_secrets(text: &str, hashes: &HashSet<String>) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let alphabet = |c: &char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    let mut found = Vec::new();
    for start in 0..chars.len() {
        let end = start + SECRET_CHARS;
        if end <= chars.len() && chars[start..end].iter().all(alphabet) {
            let candidate: String = chars[start..end].iter().collect();
            if hashes.contains(&hash_token(&candidate)) {
                found.push(candidate);
            }
        }
    }
    found
}

/// Moves every unsent message to `to` forward until `done` says so
/// (a worker's failed attempt may push the retry back after a move).
async fn deliver_to(outbox: &Outbox, to: &str, mut done: impl FnMut() -> bool) {
    let mut patience = Patience::new(format!("the delivery of the message to {to}"));
    loop {
        let (unsent,): (i64,) =
            sqlx::query_as("select count(*) from outbox where recipient = $1 and sent_at is null")
                .bind(to)
                .fetch_one(&outbox.0)
                .await
                .expect("the outbox is readable");
        if unsent == 0 && done() {
            return;
        }
        outbox.make_due(to).await;
        patience.pause().await;
    }
}

on_both_backends!(a_message_waiting_for_delivery_holds_no_working_invitation_link);
async fn a_message_waiting_for_delivery_holds_no_working_invitation_link() {
    // Arrange: the SMTP server refuses every sender, so the message waits.
    let sink = SmtpSink::start().await;
    let app = org_with_an_active_owner(&sink).await;
    let outbox = Outbox::open(&app).await;
    sink.refuse_senders(true);

    // Act: Rita is invited; her message fails once and waits.
    let rita_id = invite_rita(&app).await;
    outbox.attempts_reach(RITA_EMAIL, 1).await;
    let dump = unsent_outbox_text(&outbox).await;
    let hashes = token_hashes(&outbox).await;
    sink.refuse_senders(false);
    deliver_to(&outbox, RITA_EMAIL, || {
        sink.received().iter().any(|m| m.to == [RITA_EMAIL])
    })
    .await;
    let message = sink.message_to(RITA_EMAIL).await;
    let link = invite_link(&app.address, &message_body(&message.data));
    let accepted = app.accept(token_of(&link)).await;

    // Assert
    assert!(dump.contains(RITA_EMAIL), "{dump}");
    let secrets = working_secrets(&dump, &hashes);
    assert!(
        secrets.is_empty(),
        "the waiting message holds {} working invitation secret(s):\n{dump}",
        secrets.len()
    );
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(
        accepted.body["user_id"],
        rita_id.as_str(),
        "{}",
        accepted.text
    );
}

/// The owner invites `email`, which must succeed.
async fn invite(app: &TestApp, email: &str, first_name: &str) {
    let outcome = app
        .invited(
            OWNER_EMAIL,
            ORG_ID,
            email,
            json!({"first_name": first_name, "last_name": "Tester"}),
        )
        .await;
    assert_eq!(outcome["outcome"], "invited", "{outcome}");
}

/// The lease a test gives the claim of a worker that died.
const DEAD_LEASE_SECS: i64 = 3600;

on_both_backends!(a_message_claimed_by_a_worker_that_died_is_sent_once_its_lease_ends);
async fn a_message_claimed_by_a_worker_that_died_is_sent_once_its_lease_ends() {
    // Arrange: Rita's message waits after a refused attempt; then a worker
    // (of another sidecar) claims it and dies before it settles it.
    let sink = SmtpSink::start().await;
    let app = org_with_an_active_owner(&sink).await;
    let outbox = Outbox::open(&app).await;
    sink.refuse_senders(true);
    let rita_id = invite_rita(&app).await;
    outbox.attempts_reach(RITA_EMAIL, 1).await;
    sqlx::query(
        "update outbox set claimed_by = 'a-worker-that-died', claimed_until = $1, next_attempt_at = 0
         where recipient = $2",
    )
    .bind(app.now() + DEAD_LEASE_SECS)
    .bind(RITA_EMAIL)
    .execute(&outbox.0)
    .await
    .expect("claim the message");
    sink.refuse_senders(false);

    // Act: Boris's invitation wakes the worker, which passes over Rita's
    // older, claimed message; once the lease has ended, Carol's does
    // too, and Rita's message goes.
    invite(&app, "boris@acme.example", "Boris").await;
    sink.message_to("boris@acme.example").await;
    let during_the_lease = outbox.row(RITA_EMAIL).await;
    app.advance(DEAD_LEASE_SECS);
    invite(&app, "carol@acme.example", "Carol").await;
    let link = sink.link_to(&app, RITA_EMAIL).await;
    let accepted = app.accept(token_of(&link)).await;

    // Assert
    assert_eq!(during_the_lease.sent_at, None, "{during_the_lease:?}");
    assert_eq!(during_the_lease.attempts, 1, "{during_the_lease:?}");
    let to_rita = sink
        .received()
        .iter()
        .filter(|m| m.to == [RITA_EMAIL])
        .count();
    assert_eq!(to_rita, 1);
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(
        accepted.body["user_id"],
        rita_id.as_str(),
        "{}",
        accepted.text
    );
}

on_both_backends!(a_message_whose_invitation_was_revoked_before_delivery_is_not_sent);
async fn a_message_whose_invitation_was_revoked_before_delivery_is_not_sent() {
    // Arrange: Rita's message waits after a refused attempt.
    let sink = SmtpSink::start().await;
    let app = org_with_an_active_owner(&sink).await;
    let outbox = Outbox::open(&app).await;
    sink.refuse_senders(true);
    let rita_id = invite_rita(&app).await;
    outbox.attempts_reach(RITA_EMAIL, 1).await;

    // Act: the owner revokes the invitation; the server accepts mail again.
    let revoked = app
        .delete_as(
            OWNER_EMAIL,
            &format!("/v1/orgs/{ORG_ID}/members/{rita_id}/invitation"),
        )
        .await;
    sink.refuse_senders(false);
    deliver_to(&outbox, RITA_EMAIL, || true).await;
    invite(&app, "boris@acme.example", "Boris").await;
    sink.message_to("boris@acme.example").await;
    let reason: Result<(Option<String>,), _> =
        sqlx::query_as("select cancelled_reason from outbox where recipient = $1")
            .bind(RITA_EMAIL)
            .fetch_one(&outbox.0)
            .await;

    // Assert
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    let to_rita = sink
        .received()
        .iter()
        .filter(|m| m.to == [RITA_EMAIL])
        .count();
    assert_eq!(to_rita, 0, "a dead link was mailed");
    let (reason,) = reason.expect("Rita's message is kept");
    let reason = reason.unwrap_or_default();
    assert!(reason.contains("no longer pending"), "{reason}");
}

/// Concurrent invitations of one address.
const CONCURRENT_INVITATIONS: usize = 100;

/// `POST /v1/orgs/{ORG_ID}/invitations` of Rita as the owner.
async fn invite_rita_through(api: Api) -> (StatusCode, Value) {
    let request = api
        .request(Method::POST, &format!("/v1/orgs/{ORG_ID}/invitations"))
        .header("X-Cedargate-Actor", OWNER_EMAIL)
        .json(&json!({"first_name": "Rita", "last_name": "Reader", "email": RITA_EMAIL}));
    Api::send(request).await
}

on_both_backends!(
    a_hundred_concurrent_invitations_of_one_address_send_one_message,
    multi_thread
);
async fn a_hundred_concurrent_invitations_of_one_address_send_one_message() {
    // Arrange: the SMTP server refuses every sender until the invitations
    // are all written, so that none is delivered before the last.
    let sink = SmtpSink::start().await;
    let app = org_with_an_active_owner(&sink).await;
    let outbox = Outbox::open(&app).await;
    sink.refuse_senders(true);

    // Act
    let tasks: Vec<_> = (0..CONCURRENT_INVITATIONS)
        .map(|_| tokio::spawn(invite_rita_through(app.api())))
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("the request task"));
    }
    let members = app
        .members_with_email(OWNER_EMAIL, ORG_ID, RITA_EMAIL)
        .await;
    sink.refuse_senders(false);
    deliver_to(&outbox, RITA_EMAIL, || {
        sink.received().iter().any(|m| m.to == [RITA_EMAIL])
    })
    .await;
    let to_rita: Vec<_> = sink
        .received()
        .into_iter()
        .filter(|m| m.to == [RITA_EMAIL])
        .collect();
    let link = invite_link(&app.address, &message_body(&to_rita[0].data));
    let accepted = app.accept(token_of(&link)).await;

    // Assert
    for (status, body) in &outcomes {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(to_rita.len(), 1, "messages to Rita: {}", to_rita.len());
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(accepted.body["user_id"], members[0]["user_id"]);
}

/// SMTP credentials in the mail URL.
const CREDENTIALS: &str = "mailer:hunter2";

#[tokio::test]
async fn smtp_credentials_without_tls_are_refused_at_start_unless_explicitly_allowed() {
    Backend::Sqlite
        .run(async {
            // Arrange
            let dir = tempfile::tempdir().expect("a temporary directory");
            let database = format!("sqlite://{}", dir.path().join("test.db").display());
            let config = |mail_url: String| {
                let url = database.parse().expect("a SQLite URL");
                let mut config = ServeConfig::for_tests(url, repo_dir());
                config.invites.mail_url = Some(mail_url);
                config
            };
            let starts = |config: ServeConfig| async move {
                Application::build(config)
                    .await
                    .map(drop)
                    .map_err(|e| format!("{e:#}"))
            };

            // Act
            let plain = starts(config(format!("smtp://{CREDENTIALS}@127.0.0.1:2525"))).await;
            let opportunistic = starts(config(format!(
                "smtp://{CREDENTIALS}@127.0.0.1:2525?tls=opportunistic"
            )))
            .await;
            let starttls = starts(config(format!(
                "smtp://{CREDENTIALS}@127.0.0.1:2587?tls=required"
            )))
            .await;
            let implicit = starts(config(format!("smtps://{CREDENTIALS}@127.0.0.1:2465"))).await;
            let anonymous = starts(config("smtp://127.0.0.1:2525".to_owned())).await;
            let mut relay = config(format!("smtp://{CREDENTIALS}@127.0.0.1:2525"));
            relay.invites.smtp_allow_plaintext_auth = true;
            let allowed = starts(relay).await;
            let help = assert_cmd::Command::cargo_bin("cedargate")
                .expect("the cedargate binary is built")
                .args(["serve", "--help"])
                .output()
                .expect("`serve --help` runs");
            let help = String::from_utf8_lossy(&help.stdout);

            // Assert
            for refused in [&plain, &opportunistic] {
                let Err(message) = refused else {
                    panic!("credentials without TLS were accepted")
                };
                assert!(message.contains("--smtp-allow-plaintext-auth"), "{message}");
                assert!(message.contains("tls=required"), "{message}");
                assert!(message.contains("smtps://"), "{message}");
                assert!(!message.contains("hunter2"), "{message}");
            }
            assert_eq!(starttls, Ok(()));
            assert_eq!(implicit, Ok(()));
            assert_eq!(anonymous, Ok(()));
            assert_eq!(allowed, Ok(()), "the explicit opt-out starts");
            assert!(help.contains("--smtp-allow-plaintext-auth"), "{help}");
            assert!(help.contains("tls=required"), "{help}");
        })
        .await;
}
