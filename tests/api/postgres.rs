//! The sidecar on PostgreSQL, the store many sidecars share. These tests need
//! a PostgreSQL server named by `TEST_DATABASE_URL` (a database the test user
//! may create databases from); `bash tests/run.sh` starts one. Each test works
//! in a fresh database of its own.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;

use crate::helpers::{TestApp, example_entity, uid};
use crate::invite_helpers::{ADMIN_EMAIL, InviteApp};
use cedargate::config::DatabaseUrl;

/// A new, empty database on the server of `TEST_DATABASE_URL`.
async fn fresh_database() -> DatabaseUrl {
    let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_DATABASE_URL is not set: these tests need PostgreSQL; \
             run `bash tests/run.sh`, which starts a server for them"
        )
    });
    let name = format!("cg_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"));
    sqlx::query(&format!("create database {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').expect("a URL ending in /database");
    format!("{base}/{name}").parse().unwrap()
}

async fn pg_connection(url: &DatabaseUrl) -> sqlx::postgres::PgConnection {
    sqlx::postgres::PgConnection::connect(url.expose())
        .await
        .unwrap()
}

#[tokio::test]
async fn two_sidecars_on_one_postgres_database_see_each_others_entity_writes() {
    // Arrange
    let url = fresh_database().await;
    let configure = |cfg: &mut cedargate::config::ServeConfig| {
        cfg.database_url = url.clone();
        cfg.sync_interval_ms = 100;
    };
    let a = TestApp::spawn_with(configure).await;
    let b = TestApp::spawn_with(configure).await;
    a.load_example().await;
    let ask = || {
        b.is_authorized(
            uid("User", "max"),
            uid("Action", "billing.manage"),
            uid("Organization", "acme"),
            json!({}),
        )
    };
    assert_eq!(ask().await["decision"], "allow");
    assert_eq!(
        ask().await["cached"],
        true,
        "the second answer comes from B's cache"
    );

    // Act: lower max's Billing level through sidecar A.
    let mut membership = example_entity("Membership", "acme/max");
    membership["attrs"]["perms"]["billing"] = json!(0);
    let (status, body) = a.put_json("/v1/entities", &json!([membership])).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Assert: B stops allowing within its sync interval (bounded wait for
    // an event in another process, not for readiness).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask().await;
        if answer["decision"] == "deny" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still answers {answer} after A's write"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_invitation_lifecycle_runs_on_postgres() {
    // Arrange
    let url = fresh_database().await;
    let app = InviteApp::spawn_with(|cfg| cfg.database_url = url.clone()).await;
    let owner = app.create_org("acme", "olivia@acme.example").await;

    // Act
    let invited = app
        .invited(
            "olivia@acme.example",
            "acme",
            "rita@acme.example",
            json!({"permissions": {"billing": "Read"}}),
        )
        .await;
    let rita = invited["user_id"].as_str().unwrap().to_owned();
    let before = app.decide(&rita, "billing.read", "acme").await;
    let token = app.next_token_for("rita@acme.example").await;
    let accepted = app.accept(&token).await;
    let after = app.decide(&rita, "billing.read", "acme").await;

    // Assert
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    assert_eq!(before["decision"], "deny");
    assert_eq!(after["decision"], "allow", "{after}");
    assert_eq!(
        app.decide(&owner, "organization.manage", "acme").await["decision"],
        "allow"
    );
    let members = app.members(ADMIN_EMAIL, "acme").await;
    assert_eq!(members.len(), 2, "{members:?}");
}

#[tokio::test]
async fn two_concurrent_accepts_on_postgres_make_exactly_one_membership() {
    // Arrange
    let url = fresh_database().await;
    let app = InviteApp::spawn_with(|cfg| cfg.database_url = url.clone()).await;
    app.create_org("acme", "olivia@acme.example").await;
    app.invited(
        "olivia@acme.example",
        "acme",
        "rita@acme.example",
        json!({}),
    )
    .await;
    let token = app.next_token_for("rita@acme.example").await;

    // Act
    let (first, second) = tokio::join!(app.accept(&token), app.accept(&token));

    // Assert
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::NOT_FOUND]);
    let mut conn = pg_connection(&url).await;
    let (accepted,): (i64,) = sqlx::query_as(
        "select count(*) from audit_event where action = 'invitation.accepted' and target like '%acme/%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        accepted, 2,
        "the owner's acceptance and exactly one of Rita's"
    );
}

#[tokio::test]
async fn the_audit_trail_refuses_updates_and_deletes_on_postgres() {
    // Arrange
    let url = fresh_database().await;
    let app = InviteApp::spawn_with(|cfg| cfg.database_url = url.clone()).await;
    app.create_org("acme", "olivia@acme.example").await;
    let mut conn = pg_connection(&url).await;

    // Act
    let update = sqlx::query("update audit_event set outcome = 'tampered'")
        .execute(&mut conn)
        .await;
    let delete = sqlx::query("delete from audit_event")
        .execute(&mut conn)
        .await;

    // Assert
    assert!(update.is_err(), "an UPDATE of the audit trail must fail");
    assert!(delete.is_err(), "a DELETE of the audit trail must fail");
    let (events,): (i64,) = sqlx::query_as("select count(*) from audit_event")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(events > 0);
}
