//! Sidecars sharing one store: the deployment PostgreSQL is for, and which
//! a SQLite file on one host allows too. Each sidecar caches what it read
//! and learns of the others' writes from the store's change log.

use std::time::{Duration, Instant};

use cedargate::config::ServeConfig;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, example_entity, uid};
use crate::invite_helpers::ADMIN_EMAIL;
use crate::onboarding::{ORG_ID, OWNER_EMAIL, create_org_inviting_the_owner, token_of};
use crate::smtp::{Outbox, Patience, SmtpSink};

/// A second sidecar on `a`'s database, configured by `configure`.
async fn second_sidecar(a: &TestApp, configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let database_url = a.config.database_url.clone();
    TestApp::spawn_with(|cfg| {
        cfg.database_url = database_url;
        configure(cfg);
    })
    .await
}

/// How long B may take to learn of A's write: its sync interval many times
/// over, so that a busy machine cannot fail the test.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(60);

on_both_backends!(a_sidecar_learns_of_another_sidecar_s_entity_write);
async fn a_sidecar_learns_of_another_sidecar_s_entity_write() {
    // Arrange: A fills the store before B starts, so B starts in step and
    // nothing can empty B's caches until A writes again.
    let a = TestApp::spawn_with(|cfg| cfg.sync_interval_ms = 100).await;
    a.load_example().await;
    let b = second_sidecar(&a, |cfg| {
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

/// Two states of the store, each denying `max` `accounts.read` on
/// `Account::"flip"`: in `A` the account is Acme's, where max has no
/// Accounts permission; in `B` it is Globex's, but max's Globex Accounts
/// permission is None. Only a mix of the two (B's account, A's membership)
/// allows (Globex requires two-step verification: the readers have it).
fn flip_state(b: bool) -> serde_json::Value {
    let mut membership = example_entity("Membership", "globex/max");
    membership["attrs"]["perms"]["accounts"] = json!(if b { 0 } else { 2 });
    let tenant = if b { "globex" } else { "acme" };
    json!([
        membership,
        {"uid": {"type": "Account", "id": "flip"},
         "attrs": {"tenant": tenant, "accountType": "Active", "name": "flip"}, "parents": []}
    ])
}

/// Decisions each reader makes in the storm.
const STORM_DECISIONS_PER_READER: usize = 1_300;

on_both_backends!(
    a_storm_of_multi_entity_writes_never_yields_a_decision_from_a_mix_of_two_states,
    multi_thread
);
async fn a_storm_of_multi_entity_writes_never_yields_a_decision_from_a_mix_of_two_states() {
    // Arrange: A caches decisions and entities; B (same store) caches
    // neither, so each of its decisions reads every entity from the store.
    let a = TestApp::spawn().await;
    a.load_example().await;
    let (status, body) = a.put_json("/v1/entities", &flip_state(false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let b = second_sidecar(&a, |cfg| {
        cfg.decision_cache_capacity = 0;
        cfg.entity_cache_capacity = 0;
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Act: two writers flip the two entities between the two denying
    // states, one atomic write each, while eight readers decide.
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (app, stop) = (a.api(), stop.clone());
            tokio::spawn(async move {
                let mut writes = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, body) = app
                        .put_json("/v1/entities", &flip_state((writes + w) % 2 == 1))
                        .await;
                    assert_eq!(status, StatusCode::OK, "{body}");
                    writes += 1;
                }
                writes
            })
        })
        .collect();
    let readers: Vec<_> = (0..8)
        .map(|r| {
            let app = if r % 2 == 0 { a.api() } else { b.api() };
            tokio::spawn(async move {
                let (mut allows, mut errors) = (0usize, 0usize);
                for _ in 0..STORM_DECISIONS_PER_READER {
                    let answer = app
                        .is_authorized(
                            uid("User", "max"),
                            uid("Action", "accounts.read"),
                            uid("Account", "flip"),
                            json!({"mfa": true}),
                        )
                        .await;
                    allows += usize::from(answer["decision"] == "allow");
                    errors +=
                        usize::from(answer["errors"].as_array().is_some_and(|e| !e.is_empty()));
                }
                (allows, errors)
            })
        })
        .collect();
    let (mut allows, mut errors) = (0, 0);
    for reader in readers {
        let (a, e) = reader.await.expect("a reader");
        allows += a;
        errors += e;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut writes = 0;
    for writer in writers {
        writes += writer.await.expect("a writer");
    }

    // Assert
    let decisions = 8 * STORM_DECISIONS_PER_READER;
    eprintln!(
        "storm: {decisions} decisions, {writes} writes, {allows} allows, {errors} denied with an error"
    );
    assert!(writes > 0);
    assert_eq!(
        allows, 0,
        "{allows} of {decisions} decisions allowed from a mix of two states"
    );
}

on_both_backends!(a_sidecar_that_fell_behind_the_pruned_change_log_drops_every_cached_entity);
async fn a_sidecar_that_fell_behind_the_pruned_change_log_drops_every_cached_entity() {
    // Arrange: A keeps five revisions of the change log; B reads the log
    // only when a decision finds the store ahead of its caches (its own
    // sync loop is as good as paused).
    let a = TestApp::spawn_with(|cfg| cfg.change_log_keep = 5).await;
    a.load_example().await;
    let b = second_sidecar(&a, |cfg| {
        cfg.sync_interval_ms = 3_600_000;
    })
    .await;
    let max_manages_billing = || {
        b.is_authorized(
            uid("User", "max"),
            uid("Action", "billing.manage"),
            uid("Organization", "acme"),
            json!({}),
        )
    };
    assert_eq!(max_manages_billing().await["decision"], "allow");

    // Act: A revokes max's Billing permission, then writes ten more
    // revisions, so the revocation leaves the change log.
    let mut membership = example_entity("Membership", "acme/max");
    membership["attrs"]["perms"]["billing"] = json!(0);
    let (status, body) = a.put_json("/v1/entities", &json!([membership])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for i in 0..10 {
        let account = json!([{"uid": {"type": "Account", "id": format!("filler-{i}")},
            "attrs": {"tenant": "acme", "accountType": "Active", "name": "filler"}, "parents": []}]);
        let (status, body) = a.put_json("/v1/entities", &account).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // B reads an entity it never cached: the store is ahead, B catches up.
    let other = b
        .is_authorized(
            uid("User", "pete"),
            uid("Action", "accounts.read"),
            uid("Account", "filler-9"),
            json!({}),
        )
        .await;

    // Assert
    assert!(
        other["errors"].as_array().is_some_and(Vec::is_empty),
        "{other}"
    );
    let after = max_manages_billing().await;
    assert_eq!(
        after["decision"], "deny",
        "B kept the revoked permission: {after}"
    );
}

/// Sets max's Billing level in acme through `app`; returns the write's
/// consistency token (body field and header agree).
async fn set_max_billing(app: &TestApp, level: u8) -> u64 {
    let mut membership = example_entity("Membership", "acme/max");
    membership["attrs"]["perms"]["billing"] = json!(level);
    let response = app
        .request(reqwest::Method::PUT, "/v1/entities")
        .json(&json!([membership]))
        .send()
        .await
        .expect("the write is sent");
    assert_eq!(response.status(), StatusCode::OK);
    let header: u64 = response.headers()["x-cedargate-revision"]
        .to_str()
        .expect("a header value")
        .parse()
        .expect("a revision");
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(body["revision"], header, "{body}");
    header
}

/// `max` reads billing in acme through `app`, with an optional token.
async fn max_reads_billing(app: &TestApp, token: Option<u64>) -> (StatusCode, serde_json::Value) {
    let mut request = app
        .request(reqwest::Method::POST, "/v1/is_authorized")
        .json(&json!({
            "principal": uid("User", "max"), "action": uid("Action", "billing.read"),
            "resource": uid("Organization", "acme"),
        }));
    if let Some(token) = token {
        request = request.header("x-cedargate-min-revision", token.to_string());
    }
    crate::helpers::Api::send(request).await
}

/// Rounds of "change through A, decide through B with A's token".
const TOKEN_ROUNDS: usize = 1_000;

on_both_backends!(a_decision_with_the_token_of_another_sidecar_s_write_is_never_stale);
async fn a_decision_with_the_token_of_another_sidecar_s_write_is_never_stale() {
    // Arrange: B would poll only once an hour; only the token makes it
    // catch up.
    let a = TestApp::spawn().await;
    a.load_example().await;
    let b = second_sidecar(&a, |cfg| {
        cfg.sync_interval_ms = 3_600_000;
    })
    .await;

    // Act
    let mut stale = Vec::new();
    for round in 0..TOKEN_ROUNDS {
        let level = if round % 2 == 0 { 0 } else { 2 };
        let token = set_max_billing(&a, level).await;
        let (status, answer) = max_reads_billing(&b, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let expected = if level == 0 { "deny" } else { "allow" };
        if answer["decision"] != expected || answer["store_revision"].as_u64() < Some(token) {
            stale.push((round, answer));
        }
    }

    // Assert
    assert!(
        stale.is_empty(),
        "{} stale answers of {TOKEN_ROUNDS}, e.g. {:?}",
        stale.len(),
        stale.first()
    );
}

on_both_backends!(a_token_from_the_future_waits_the_bound_and_answers_503);
async fn a_token_from_the_future_waits_the_bound_and_answers_503() {
    // Arrange
    let app = TestApp::spawn_with(|cfg| cfg.consistency_wait_ms = 200).await;
    app.load_example().await;
    let token = set_max_billing(&app, 0).await;

    // Act
    let (own, own_answer) = max_reads_billing(&app, Some(token)).await;
    let (future, refusal) = max_reads_billing(&app, Some(token + 1_000)).await;

    // Assert: a token of this sidecar's own write works at once.
    assert_eq!(own, StatusCode::OK, "{own_answer}");
    assert_eq!(own_answer["decision"], "deny", "{own_answer}");
    assert_eq!(future, StatusCode::SERVICE_UNAVAILABLE, "{refusal}");
    assert_eq!(
        refusal["error"]["code"], "revision_not_reached",
        "{refusal}"
    );
}

on_both_backends!(without_a_token_another_sidecar_s_write_is_seen_after_a_measured_delay);
async fn without_a_token_another_sidecar_s_write_is_seen_after_a_measured_delay() {
    // Arrange: B polls at the default interval; on PostgreSQL it also
    // listens for notifications.
    let a = TestApp::spawn().await;
    a.load_example().await;
    let b = second_sidecar(&a, |cfg| {
        cfg.sync_interval_ms = 500;
    })
    .await;
    let mut delays = Vec::new();

    // Act: flip, then ask B until it answers the new state (bounded).
    for round in 0..30 {
        let level = if round % 2 == 0 { 0 } else { 2 };
        let expected = if level == 0 { "deny" } else { "allow" };
        set_max_billing(&a, level).await;
        let written = Instant::now();
        let deadline = written + PROPAGATION_DEADLINE;
        loop {
            let (_, answer) = max_reads_billing(&b, None).await;
            if answer["decision"] == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "B never saw round {round}: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(written.elapsed());
    }

    // Assert: only that every change arrived; the delays are reported.
    delays.sort();
    eprintln!(
        "propagation without a token ({}): median {} ms, p99 {} ms, max {} ms",
        if a.config.database_url.is_postgres() {
            "PostgreSQL, notifications"
        } else {
            "SQLite, polling"
        },
        delays[delays.len() / 2].as_millis(),
        delays[delays.len() * 99 / 100].as_millis(),
        delays[delays.len() - 1].as_millis()
    );
    assert_eq!(delays.len(), 30);
}

on_both_backends!(every_invitation_service_change_answers_its_consistency_token);
async fn every_invitation_service_change_answers_its_consistency_token() {
    // Arrange
    let app = TestApp::spawn_with_admin().await;
    let before = set_max_billing(&app, 1).await;

    // Act: a change of the invitation service.
    let reply = app
        .post(
            crate::invite_helpers::ADMIN_EMAIL,
            "/v1/orgs",
            &json!({"id": "initech", "name": "Initech",
                    "owner": {"first_name": "Ida", "last_name": "Owner", "email": "ida@initech.example"}}),
        )
        .await;

    // Assert: the body's token and the header agree, and follow the
    // earlier write.
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let header: u64 = reply.headers["x-cedargate-revision"]
        .to_str()
        .expect("a header value")
        .parse()
        .expect("a revision");
    assert_eq!(reply.body["revision"], header, "{}", reply.text);
    assert!(header > before, "{header} after {before}");
}

/// Invitations sent through two sidecars sharing one outbox.
const SHARED_OUTBOX_INVITATIONS: usize = 300;

/// A sidecar on the system clock mailing to `sink`, with a system
/// administrator and [`ORG_ID`] whose owner accepted the e-mailed link.
/// (The system clock, not a manual one: the two sidecars' clocks must
/// agree, as real hosts' do, for their claims on the outbox to hold.)
async fn org_on_the_system_clock(sink: &SmtpSink) -> TestApp {
    let mail_url = sink.url();
    let app = TestApp::spawn_with(|cfg| cfg.invites.mail_url = Some(mail_url)).await;
    let args = cedargate::cli::StoreArgs {
        database_url: app.config.database_url.clone(),
        policy: app.config.policy.clone(),
        invites: app.config.invites.clone(),
    };
    let (service, _mailer) = cedargate::startup::offline_service(&args)
        .await
        .unwrap_or_else(|e| panic!("the offline service does not open: {e:#}"));
    let admin_id = service
        .create_admin(
            &cedargate::invites::Actor::cli(),
            ADMIN_EMAIL,
            "Sam",
            "Admin",
            cedargate::clock::unix_now(),
        )
        .await
        .unwrap_or_else(|e| panic!("the system administrator is not created: {e}"));
    let app = app.with_admin_id(admin_id);
    create_org_inviting_the_owner(&app).await;
    let link = sink.link_to(&app, OWNER_EMAIL).await;
    let accepted = app.accept(token_of(&link)).await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.text);
    app
}

on_both_backends!(
    two_sidecars_sharing_one_outbox_send_each_invitation_once,
    multi_thread
);
async fn two_sidecars_sharing_one_outbox_send_each_invitation_once() {
    // Arrange: both sidecars deliver to one SMTP server that takes 30 ms
    // to accept each message, so both workers find the same due messages.
    let sink = SmtpSink::start().await;
    let mut a = org_on_the_system_clock(&sink).await;
    let mail_url = sink.url();
    let mut b = second_sidecar(&a, |cfg| cfg.invites.mail_url = Some(mail_url)).await;
    sink.slow_down(Duration::from_millis(30));
    let emails: Vec<String> = (0..SHARED_OUTBOX_INVITATIONS)
        .map(|i| format!("person{i}@acme.example"))
        .collect();

    // Act: the owner invites everyone, alternately through A and B, four
    // requests at a time; then both outboxes drain.
    let lane = |lane: usize| {
        let (a, b, emails) = (&a, &b, &emails);
        async move {
            for (i, email) in emails.iter().enumerate().skip(lane).step_by(4) {
                let via = if i % 2 == 0 { a } else { b };
                let person = json!({"first_name": "Pat", "last_name": format!("Number {i}")});
                let outcome = via.invited(OWNER_EMAIL, ORG_ID, email, person).await;
                assert_eq!(outcome["outcome"], "invited", "{outcome}");
            }
        }
    };
    tokio::join!(lane(0), lane(1), lane(2), lane(3));
    let outbox = Outbox::open(&a).await;
    // Generous: 300 messages at 30 ms each on a machine that may be busy.
    let mut patience = Patience::for_at_most(
        "both sidecars to deliver every invitation",
        Duration::from_secs(180),
    );
    loop {
        let (unsent,): (i64,) = sqlx::query_as("select count(*) from outbox where sent_at is null")
            .fetch_one(&outbox.0)
            .await
            .expect("the outbox is readable");
        let received = sink.received();
        let all_arrived = emails
            .iter()
            .all(|e| received.iter().any(|m| m.to.contains(e)));
        if unsent == 0 && all_arrived {
            break;
        }
        patience.pause().await;
    }
    // Neither worker may still be sending what it took before.
    a.stop().await;
    b.stop().await;

    // Assert
    let received = sink.received();
    let per_person: Vec<usize> = emails
        .iter()
        .map(|e| received.iter().filter(|m| m.to.contains(e)).count())
        .collect();
    let total: usize = per_person.iter().sum();
    eprintln!(
        "{SHARED_OUTBOX_INVITATIONS} invitations through two sidecars: {total} messages received"
    );
    let twice = per_person.iter().filter(|&&n| n > 1).count();
    assert_eq!(twice, 0, "{twice} people were mailed more than once");
    assert_eq!(total, SHARED_OUTBOX_INVITATIONS);
}
