//! SQL of the bulk-job tables (`bulk_job`, `bulk_job_row`, see migration
//! 0006). Every statement a worker runs on a job names its claim, so a
//! worker whose lease ended and whose job was taken over changes nothing.

use sqlx::{AnyConnection, AnyPool, Row};

use super::InviteError;
use super::change::Tx;
use super::jobs::{JobRow, JobState, RowError};

/// A job as stored.
#[derive(Debug)]
pub(super) struct JobRecord {
    pub state: JobState,
    pub total: i64,
    pub processed: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub failure_reason: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A job just claimed.
#[derive(Debug)]
pub(super) struct Claimed {
    pub job_id: String,
    pub org_id: String,
    pub actor_id: String,
    pub actor_mfa: bool,
    pub request_id: Option<String>,
    /// The import's options (JSON).
    pub options: String,
    pub processed: i64,
}

/// A row not written yet.
#[derive(Debug)]
pub(super) struct PendingRow {
    pub seq: i64,
    pub row: i64,
    /// Its cells (JSON).
    pub cells: String,
}

/// A new job, queued.
#[derive(Debug)]
pub(super) struct NewJobRecord<'a> {
    pub job_id: &'a str,
    pub org_id: &'a str,
    pub actor_id: &'a str,
    pub actor_mfa: bool,
    pub request_id: Option<&'a str>,
    pub options: String,
    pub total: i64,
    pub now: i64,
}

pub(super) async fn insert_job(tx: &mut Tx, job: &NewJobRecord<'_>) -> Result<(), InviteError> {
    sqlx::query(
        "insert into bulk_job (job_id, org_id, actor_id, actor_mfa, request_id, options, state, total, created_at)
         values ($1, $2, $3, $4, $5, $6, 'queued', $7, $8)",
    )
    .bind(job.job_id)
    .bind(job.org_id)
    .bind(job.actor_id)
    .bind(i64::from(job.actor_mfa))
    .bind(job.request_id)
    .bind(&job.options)
    .bind(job.total)
    .bind(job.now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(super) async fn insert_row(
    tx: &mut Tx,
    job_id: &str,
    seq: i64,
    row: i64,
    email: &str,
    cells: &str,
) -> Result<(), InviteError> {
    sqlx::query(
        "insert into bulk_job_row (job_id, seq, row_number, email, cells) values ($1, $2, $3, $4, $5)",
    )
    .bind(job_id)
    .bind(seq)
    .bind(row)
    .bind(email)
    .bind(cells)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The job `job_id` of `org_id` (none of another organization).
pub(super) async fn job(
    conn: &mut AnyConnection,
    org_id: &str,
    job_id: &str,
) -> Result<Option<JobRecord>, InviteError> {
    let row = sqlx::query(
        "select state, total, processed, succeeded, failed, failure_reason, created_at, finished_at
         from bulk_job where job_id = $1 and org_id = $2",
    )
    .bind(job_id)
    .bind(org_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| JobRecord {
        state: JobState::parse(&r.get::<String, _>(0)),
        total: r.get(1),
        processed: r.get(2),
        succeeded: r.get(3),
        failed: r.get(4),
        failure_reason: r.get(5),
        created_at: r.get(6),
        finished_at: r.get(7),
    }))
}

/// Up to `limit` rows of the job after file row `after`, in file order.
pub(super) async fn rows_after(
    conn: &mut AnyConnection,
    job_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<JobRow>, InviteError> {
    let rows = sqlx::query(
        "select row_number, email, outcome, error_code, error_message from bulk_job_row
         where job_id = $1 and row_number > $2 order by row_number limit $3",
    )
    .bind(job_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| JobRow {
            row: r.get(0),
            email: r.get(1),
            outcome: r
                .get::<Option<String>, _>(2)
                .unwrap_or_else(|| "pending".to_owned()),
            error: r.get::<Option<String>, _>(3).map(|code| RowError {
                code,
                message: r.get::<Option<String>, _>(4).unwrap_or_default(),
            }),
        })
        .collect())
}

/// Claims the oldest job that needs a worker (queued, or whose worker's
/// lease ended, or due a retry) as `claim` until `until`. On PostgreSQL
/// the row is locked with `SKIP LOCKED` while the claim is written, so two
/// sidecars never claim one job; SQLite runs one writing statement at a
/// time, which is enough.
pub(super) async fn claim(
    pool: &AnyPool,
    claim: &str,
    until: i64,
    now: i64,
) -> Result<Option<Claimed>, InviteError> {
    let mut conn = pool.acquire().await?;
    let lock = if conn.backend_name() == "PostgreSQL" {
        "for update skip locked"
    } else {
        ""
    };
    let due = "state in ('queued', 'running') and (claimed_until is null or claimed_until <= $3)";
    let sql = format!(
        "update bulk_job set claimed_by = $1, claimed_until = $2, state = 'running'
         where job_id = (select job_id from bulk_job where {due}
                         order by created_at, job_id limit 1 {lock})
           and {due}
         returning job_id, org_id, actor_id, actor_mfa, request_id, options, processed"
    );
    let row = sqlx::query(&sql)
        .bind(claim)
        .bind(until)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| Claimed {
        job_id: r.get(0),
        org_id: r.get(1),
        actor_id: r.get(2),
        actor_mfa: r.get::<i64, _>(3) != 0,
        request_id: r.get(4),
        options: r.get(5),
        processed: r.get(6),
    }))
}

/// Up to `limit` rows of the job after position `cursor`, in order.
pub(super) async fn pending_rows(
    conn: &mut AnyConnection,
    job_id: &str,
    cursor: i64,
    limit: i64,
) -> Result<Vec<PendingRow>, InviteError> {
    let rows = sqlx::query(
        "select seq, row_number, cells from bulk_job_row
         where job_id = $1 and seq > $2 order by seq limit $3",
    )
    .bind(job_id)
    .bind(cursor)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PendingRow {
            seq: r.get(0),
            row: r.get(1),
            cells: r.get(2),
        })
        .collect())
}

/// Moves the job's cursor onto `seq` and renews the lease until `until`,
/// if `claim` still holds and `seq` is the next row. The first statement
/// of a row's transaction: on PostgreSQL it also keeps the job locked
/// until the row is committed.
pub(super) async fn advance(
    tx: &mut Tx,
    job_id: &str,
    claim: &str,
    seq: i64,
    until: i64,
) -> Result<bool, InviteError> {
    let done = sqlx::query(
        "update bulk_job set processed = processed + 1, attempts = 0, claimed_until = $1
         where job_id = $2 and claimed_by = $3 and processed = $4",
    )
    .bind(until)
    .bind(job_id)
    .bind(claim)
    .bind(seq - 1)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records row `seq`'s outcome, or its error (code, message), and counts it.
pub(super) async fn settle(
    tx: &mut Tx,
    job_id: &str,
    seq: i64,
    outcome: &str,
    error: Option<(&str, String)>,
    now: i64,
) -> Result<(), InviteError> {
    let counter = if error.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    let (code, message) = error.unzip();
    sqlx::query(
        "update bulk_job_row set outcome = $1, error_code = $2, error_message = $3, processed_at = $4
         where job_id = $5 and seq = $6",
    )
    .bind(outcome)
    .bind(code)
    .bind(message)
    .bind(now)
    .bind(job_id)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "update bulk_job set {counter} = {counter} + 1 where job_id = $1"
    ))
    .bind(job_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Counts a failed attempt at the next row under `claim`; the attempts so
/// far, or `None` when the claim no longer holds.
pub(super) async fn count_attempt(
    pool: &AnyPool,
    job_id: &str,
    claim: &str,
) -> Result<Option<i64>, InviteError> {
    let row = sqlx::query(
        "update bulk_job set attempts = attempts + 1
         where job_id = $1 and claimed_by = $2 returning attempts",
    )
    .bind(job_id)
    .bind(claim)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Gives `claim` back; nobody claims the job before `retry_at`.
pub(super) async fn release(
    pool: &AnyPool,
    job_id: &str,
    claim: &str,
    retry_at: i64,
) -> Result<(), InviteError> {
    sqlx::query(
        "update bulk_job set claimed_by = null, claimed_until = $1
         where job_id = $2 and claimed_by = $3",
    )
    .bind(retry_at)
    .bind(job_id)
    .bind(claim)
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends the job in `state` (with `failure`) if `claim` holds; its
/// (total, succeeded, failed).
pub(super) async fn end(
    tx: &mut Tx,
    job_id: &str,
    claim: &str,
    state: JobState,
    failure: Option<&str>,
    now: i64,
) -> Result<Option<(i64, i64, i64)>, InviteError> {
    let row = sqlx::query(
        "update bulk_job set state = $1, failure_reason = $2, finished_at = $3,
             claimed_by = null, claimed_until = null
         where job_id = $4 and claimed_by = $5
         returning total, succeeded, failed",
    )
    .bind(state.as_str())
    .bind(failure)
    .bind(now)
    .bind(job_id)
    .bind(claim)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}
