//! Large bulk imports as background jobs (R69): answered at once with a
//! job id, written row by row (each row all-or-nothing), resumable after a
//! crash, with a status endpoint authorized like every `/v1/orgs/{org}`
//! route.

use std::time::{Duration, Instant};

use cedargate::cli::StoreArgs;
use cedargate::invites::InviteService;
use cedargate::invites::bulk::{BulkAnswer, BulkOptions};
use cedargate::invites::jobs::{JobPage, JobState, JobStep, LEASE_SECS};
use cedargate::startup::offline_service;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ORG, OWNER, acme, bulk, set_status, str_of};
use crate::helpers::TestApp;

/// How long a test waits for a job to end: many times what it takes.
const JOB_DEADLINE: Duration = Duration::from_secs(120);
/// The mailer's lease on a message it is sending: the SMTP time limit
/// (30 s) plus 61 s.
const MAIL_LEASE_SECS: i64 = 91;

/// A CSV file of `n` people `p1@acme.example` … `pn@acme.example`.
fn people(n: usize) -> String {
    let mut csv = String::from("first_name,last_name,email\n");
    for i in 1..=n {
        csv.push_str(&format!("Pat,Person{i},p{i}@acme.example\n"));
    }
    csv
}

fn job_path(org: &str, job: &str, query: &str) -> String {
    format!("/v1/orgs/{org}/invitations/bulk/{job}{query}")
}

/// `acme` with its owner, on a server writing files of more than
/// `threshold` rows as jobs.
async fn acme_with_threshold(threshold: usize) -> TestApp {
    let app = TestApp::spawn_with_admin_and(|cfg| cfg.invites.bulk_sync_rows = threshold).await;
    app.create_org(ORG, OWNER).await;
    app
}

/// Submits `csv` as `actor`, which must be answered 202; returns the job id.
async fn submit(app: &TestApp, actor: &str, csv: &str) -> String {
    let reply = bulk(app, actor, "", csv).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    str_of(&reply.body["jobId"]).to_owned()
}

/// Polls the job's status as `actor` until it is `done` or `failed`.
async fn ended(app: &TestApp, actor: &str, job: &str) -> Value {
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let reply = app.get(actor, &job_path(ORG, job, "?limit=1000")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        if matches!(reply.body["state"].as_str(), Some("done" | "failed")) {
            return reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not end: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn outcomes(status: &Value) -> Vec<String> {
    status["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| str_of(&r["outcome"]).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The invitation service on the server's database, as the command line
/// opens it: no HTTP server, no worker running.
async fn offline(app: &TestApp) -> InviteService {
    let args = StoreArgs {
        database_url: app.config.database_url.clone(),
        policy: app.config.policy.clone(),
        invites: app.config.invites.clone(),
    };
    offline_service(&args)
        .await
        .unwrap_or_else(|e| panic!("the offline service does not open: {e:#}"))
        .0
}

/// Asserts that `p1`…`pn` are each a member of `acme` once, each invited
/// once and each e-mailed once.
async fn each_person_once(app: &TestApp, n: usize) {
    let members = app.members(OWNER, ORG).await;
    let db = app.db().await;
    let (invitations,): (i64,) = sqlx::query_as(
        "select count(*) from invitation where org_id = 'acme' and email like 'p%@acme.example'",
    )
    .fetch_one(&db)
    .await
    .expect("the invitations are readable");
    assert_eq!(invitations, n as i64);
    app.settle_mail().await;
    let mails = app.mails();
    for i in 1..=n {
        let email = format!("p{i}@acme.example");
        let found = members.iter().filter(|m| m["email"] == email).count();
        assert_eq!(found, 1, "{email} is a member once: {members:?}");
        let sent = mails.iter().filter(|m| m.to == email).count();
        assert_eq!(sent, 1, "{email} is e-mailed once");
    }
}

on_both_backends!(an_import_above_the_default_threshold_is_answered_at_once_with_a_job);
async fn an_import_above_the_default_threshold_is_answered_at_once_with_a_job() {
    // Arrange: more rows than the default threshold (100).
    let (app, _) = acme().await;

    // Act
    let reply = bulk(&app, OWNER, "", &people(150)).await;

    // Assert
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let job = reply.body["jobId"].as_str().unwrap_or_default();
    assert!(!job.is_empty(), "{}", reply.text);
    assert_eq!(reply.body["total"], 150, "{}", reply.text);
    assert_eq!(
        reply.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(job_path(ORG, job, "").as_str()),
        "{}",
        reply.text
    );
}

on_both_backends!(a_file_at_the_threshold_is_still_written_within_the_request);
async fn a_file_at_the_threshold_is_still_written_within_the_request() {
    // Arrange
    let app = acme_with_threshold(5).await;

    // Act
    let reply = bulk(&app, OWNER, "", &people(5)).await;

    // Assert
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["written"], 5, "{}", reply.text);
    assert_eq!(app.members(OWNER, ORG).await.len(), 6);
}

on_both_backends!(a_job_invites_everyone_once_reports_each_row_and_tells_the_admin_when_done);
async fn a_job_invites_everyone_once_reports_each_row_and_tells_the_admin_when_done() {
    // Arrange: 12 rows, the last two invalid, above a threshold of 5.
    let app = acme_with_threshold(5).await;
    let mut csv = people(10);
    csv.push_str("Info,Box,info@acme.example\nPat,Again,p1@acme.example\n");

    // Act
    let reply = bulk(&app, OWNER, "?import_valid=true", &csv).await;
    let job = str_of(&reply.body["jobId"]).to_owned();
    let status = ended(&app, OWNER, &job).await;

    // Assert: the invalid rows at once, the valid ones by the job.
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.body["state"], "queued", "{}", reply.text);
    assert_eq!(reply.body["total"], 10, "{}", reply.text);
    assert_eq!(reply.body["invalid"], 2, "{}", reply.text);
    let invalid: Vec<i64> = reply.body["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["row"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(invalid, [11, 12], "{}", reply.text);
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(
        (
            &status["total"],
            &status["processed"],
            &status["succeeded"],
            &status["failed"]
        ),
        (&json!(10), &json!(10), &json!(10), &json!(0)),
        "{status}"
    );
    assert!(status["finishedAt"].as_i64().is_some(), "{status}");
    assert_eq!(outcomes(&status), vec!["invited"; 10], "{status}");
    let rows: Vec<i64> = status["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["row"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(rows, (1..=10).collect::<Vec<i64>>());
    each_person_once(&app, 10).await;
    let notice = app.next_mail_to(OWNER).await;
    assert!(
        notice.subject.contains("10 of 10 written"),
        "{}",
        notice.subject
    );
    assert!(notice.body.contains("refused: 0"), "{}", notice.body);
    assert!(notice.body.contains(&job), "{}", notice.body);
}

on_both_backends!(a_job_s_rows_are_listed_a_page_at_a_time);
async fn a_job_s_rows_are_listed_a_page_at_a_time() {
    // Arrange
    let app = acme_with_threshold(2).await;
    let job = submit(&app, OWNER, &people(7)).await;
    ended(&app, OWNER, &job).await;

    // Act
    let first = app.get(OWNER, &job_path(ORG, &job, "?limit=3")).await;
    let last = app
        .get(OWNER, &job_path(ORG, &job, "?after=6&limit=3"))
        .await;

    // Assert
    let rows = |body: &Value| -> Vec<i64> {
        body["rows"]
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| r["row"].as_i64()).collect())
            .unwrap_or_default()
    };
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(rows(&first.body), [1, 2, 3], "{}", first.text);
    assert_eq!(first.body["nextAfter"], 3, "{}", first.text);
    assert_eq!(rows(&last.body), [7], "{}", last.text);
    assert!(last.body["nextAfter"].is_null(), "{}", last.text);
}

on_both_backends!(
    a_job_whose_worker_died_mid_way_is_resumed_by_the_next_sidecar_with_each_row_once
);
async fn a_job_whose_worker_died_mid_way_is_resumed_by_the_next_sidecar_with_each_row_once() {
    // Arrange: the job is submitted and its first 4 rows written by a
    // worker that then stops for good, its claim left as a crash leaves it
    // (the server is down meanwhile, so nothing else takes the job).
    let mut app = acme_with_threshold(5).await;
    app.stop().await;
    let service = offline(&app).await;
    let now = app.now();
    let actor = service
        .resolve_actor(OWNER, false, None)
        .await
        .expect("the owner");
    let options = BulkOptions {
        dry_run: false,
        import_valid: false,
        send: true,
    };
    let answer = service
        .bulk_invite(&actor, ORG, &people(12), options, now)
        .await
        .expect("the file is accepted");
    let BulkAnswer::Job(accepted) = answer else {
        panic!("12 rows above a threshold of 5 are a job: {answer:?}");
    };
    let mut claim = service
        .claim_job(now)
        .await
        .expect("the jobs are readable")
        .expect("the job is claimed");
    let step = service.work_job(&mut claim, 4, &|| now).await;
    assert_eq!(step.ok(), Some(JobStep::Paused));
    drop(claim);
    let crashed = service
        .bulk_job(&actor, ORG, &accepted.job_id, JobPage::default(), now)
        .await
        .expect("the job's status");
    assert_eq!((crashed.state, crashed.processed), (JobState::Running, 4));

    // Act: the sidecar starts again after the dead worker's lease ended.
    app.advance(LEASE_SECS + 1);
    let app = app.restart().await;
    let status = ended(&app, OWNER, &accepted.job_id).await;

    // Assert
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(
        (
            &status["processed"],
            &status["succeeded"],
            &status["failed"]
        ),
        (&json!(12), &json!(12), &json!(0)),
        "{status}"
    );
    assert_eq!(outcomes(&status), vec!["invited"; 12], "{status}");
    each_person_once(&app, 12).await;
}

on_both_backends!(a_sidecar_stopped_during_a_job_leaves_each_row_whole_and_another_finishes_it);
async fn a_sidecar_stopped_during_a_job_leaves_each_row_whole_and_another_finishes_it() {
    // Arrange: a job under way (a bounded wait for its first row).
    let mut app = acme_with_threshold(5).await;
    let job = submit(&app, OWNER, &people(100)).await;
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let reply = app.get(OWNER, &job_path(ORG, &job, "?limit=1")).await;
        if reply.body["processed"].as_i64().unwrap_or_default() > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no row written: {}", reply.text);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Act: the server stops, its worker cancelled wherever it is; then it
    // starts again once the worker's lease has ended.
    app.stop().await;
    let db = app.db().await;
    // One statement, so one snapshot, whatever a cancelled commit does.
    let (processed, recorded, invited): (i64, i64, i64) = sqlx::query_as(
        "select (select processed from bulk_job where job_id = $1),
                (select count(*) from bulk_job_row where job_id = $1 and outcome is not null),
                (select count(*) from invitation where org_id = 'acme' and email like 'p%@acme.example')",
    )
    .bind(&job)
    .fetch_one(&db)
    .await
    .expect("the job is readable");
    db.close().await;
    // Past the worker's lease, and the mailer's: the stop may have
    // cancelled a delivery too.
    app.advance(LEASE_SECS.max(MAIL_LEASE_SECS) + 1);
    let app = app.restart().await;
    let status = ended(&app, OWNER, &job).await;

    // Assert: at the stop, each row written was recorded and no other.
    assert!(processed > 0);
    assert_eq!((recorded, invited), (processed, processed));
    assert_eq!(
        (&status["state"], &status["processed"], &status["succeeded"]),
        (&json!("done"), &json!(100), &json!(100)),
        "{status}"
    );
    each_person_once(&app, 100).await;
}

on_both_backends!(
    an_admin_who_lost_the_right_to_invite_has_the_remaining_rows_refused_and_recorded
);
async fn an_admin_who_lost_the_right_to_invite_has_the_remaining_rows_refused_and_recorded() {
    // Arrange: Uma (AccountAdmin) submits 8 rows; a worker writes 3 and
    // dies holding its lease; meanwhile the owner deactivates Uma.
    let mut app = acme_with_threshold(5).await;
    let uma = app
        .member_joins(
            OWNER,
            ORG,
            "uma@acme.example",
            json!({"role": "AccountAdmin"}),
        )
        .await;
    app.stop().await;
    let service = offline(&app).await;
    let now = app.now();
    let actor = service
        .resolve_actor("uma@acme.example", false, None)
        .await
        .expect("Uma");
    let options = BulkOptions {
        dry_run: false,
        import_valid: false,
        send: true,
    };
    let Ok(BulkAnswer::Job(accepted)) = service
        .bulk_invite(&actor, ORG, &people(8), options, now)
        .await
    else {
        panic!("8 rows above a threshold of 5 are a job");
    };
    let mut claim = service
        .claim_job(now)
        .await
        .expect("the jobs are readable")
        .expect("the job is claimed");
    let step = service.work_job(&mut claim, 3, &|| now).await;
    assert_eq!(step.ok(), Some(JobStep::Paused));
    drop(claim);
    let app = app.restart().await;
    let off = set_status(&app, OWNER, &uma, "INACTIVE").await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);

    // Act: the lease ends; the sidecar's worker takes the job over.
    app.advance(LEASE_SECS + 1);
    let status = ended(&app, OWNER, &accepted.job_id).await;

    // Assert
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(
        (
            &status["processed"],
            &status["succeeded"],
            &status["failed"]
        ),
        (&json!(8), &json!(3), &json!(5)),
        "{status}"
    );
    let rows = status["rows"].as_array().cloned().unwrap_or_default();
    for row in &rows[3..] {
        assert_eq!(row["outcome"], "failed", "{row}");
        assert_eq!(row["error"]["code"], "forbidden", "{row}");
        assert!(
            str_of(&row["error"]["message"]).contains("member-must-be-active"),
            "{row}"
        );
    }
    let joined = app
        .members(OWNER, ORG)
        .await
        .iter()
        .filter(|m| str_of(&m["email"]).starts_with('p'))
        .count();
    assert_eq!(joined, 3);
    let refusals = app
        .audit(OWNER, ORG, &format!("?user={uma}&action=users.invite"))
        .await
        .iter()
        .filter(|r| str_of(&r["outcome"]).starts_with("denied"))
        .count();
    assert!(refusals >= 5, "each refused row is audited: {refusals}");
}

on_both_backends!(an_outsider_gets_one_403_whether_or_not_the_job_exists);
async fn an_outsider_gets_one_403_whether_or_not_the_job_exists() {
    // Arrange: Gus owns globex, not acme.
    let app = acme_with_threshold(2).await;
    let job = submit(&app, OWNER, &people(3)).await;
    app.create_org("globex", "gus@globex.example").await;

    // Act
    let existing = app
        .get("gus@globex.example", &job_path(ORG, &job, ""))
        .await;
    let missing = app
        .get(
            "gus@globex.example",
            &job_path(ORG, "00000000-0000-4000-8000-000000000000", ""),
        )
        .await;

    // Assert
    assert_eq!(existing.status, StatusCode::FORBIDDEN, "{}", existing.text);
    assert_eq!(existing.text, missing.text);
    assert_eq!(existing.status, missing.status);
}

on_both_backends!(a_job_of_another_organization_is_not_found_in_one_s_own);
async fn a_job_of_another_organization_is_not_found_in_one_s_own() {
    // Arrange
    let app = acme_with_threshold(2).await;
    let job = submit(&app, OWNER, &people(3)).await;
    app.create_org("globex", "gus@globex.example").await;

    // Act
    let elsewhere = app
        .get("gus@globex.example", &job_path("globex", &job, ""))
        .await;
    let own = app.get(OWNER, &job_path(ORG, &job, "")).await;

    // Assert
    assert_eq!(
        elsewhere.status,
        StatusCode::NOT_FOUND,
        "{}",
        elsewhere.text
    );
    assert_eq!(elsewhere.code(), "not_found", "{}", elsewhere.text);
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.body["orgId"], ORG, "{}", own.text);
}
