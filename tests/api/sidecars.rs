//! Sidecars sharing one store: the deployment PostgreSQL is for, and which
//! a SQLite file on one host allows too. Each sidecar caches what it read
//! and learns of the others' writes from the store's change log.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, example_entity, uid};

/// How long B may take to learn of A's write: its sync interval many times
/// over, so that a busy machine cannot fail the test.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(60);

on_both_backends!(a_sidecar_learns_of_another_sidecar_s_entity_write);
async fn a_sidecar_learns_of_another_sidecar_s_entity_write() {
    // Arrange: A fills the store before B starts, so B starts in step and
    // nothing can empty B's caches until A writes again.
    let a = TestApp::spawn_with(|cfg| cfg.sync_interval_ms = 100).await;
    a.load_example().await;
    let database_url = a.config.database_url.clone();
    let b = TestApp::spawn_with(|cfg| {
        cfg.database_url = database_url;
        cfg.sync_interval_ms = 100;
    })
    .await;
    let ask = || {
        b.is_authorized(
            uid("User", "max"),
            uid("Action", "billing.manage"),
            uid("Organization", "acme"),
            json!({}),
        )
    };
    let first = ask().await;
    let second = ask().await;
    assert_eq!(first["decision"], "allow", "{first}");
    assert_eq!(second["cached"], true, "B caches its answer: {second}");

    // Act: lower max's Billing level through sidecar A.
    let mut membership = example_entity("Membership", "acme/max");
    membership["attrs"]["perms"]["billing"] = json!(0);
    let (status, body) = a.put_json("/v1/entities", &json!([membership])).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Assert: B stops allowing once it has read the change log (a bounded
    // wait for an event in another sidecar, not for readiness).
    let deadline = Instant::now() + PROPAGATION_DEADLINE;
    loop {
        let answer = ask().await;
        if answer["decision"] == "deny" {
            assert_eq!(answer["cached"], false, "{answer}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still answers {answer} after A's write"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
