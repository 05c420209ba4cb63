//! Bulk invitations as background jobs (R69). A file with more rows to
//! write than `bulk_sync_rows` is validated in the request as any other
//! (`bulk.rs`), then its valid rows are stored as a job and the request is
//! answered at once. A worker in every sidecar claims one job at a time
//! with a lease (as the mailer claims messages) and writes its rows in
//! order, each through the same checks as a single invitation: the file's
//! rules, the submitting administrator's rights asked of the policies at
//! write time, then the same write.
//!
//! Each row is one transaction that writes the invitation, records the
//! row's result and moves the job's cursor, and only while the worker's
//! claim holds: a crash leaves every row either written and recorded or
//! untouched, and whoever claims the job after the lease ends resumes at
//! the next row. A row refused by a rule or the policies is recorded as
//! failed and the job goes on; a database failure leaves the row untouched
//! and is retried, and the job fails after a few attempts at one row. When
//! the last row is written the job is `done` and the administrator is
//! e-mailed the counts through the outbox.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::AnyConnection;

use super::bulk::{Cells, RowResult, row_input};
use super::invite::{INVITE, Prepared};
use super::job_store::{self as sql, NewJobRecord, PendingRow};
use super::members::existing_org;
use super::service::{Actor, InviteService};
use super::{InviteError, NotFound, store};
use crate::mail::Outgoing;

/// How long a claim holds without progress; every row renews it. A job
/// whose worker died is taken over this long after its last row.
pub const LEASE_SECS: i64 = 60;
/// How long a row that failed for an internal reason waits to be retried.
const RETRY_SECS: i64 = 30;
/// Attempts at one row failing for an internal reason before the job fails.
const MAX_ATTEMPTS: i64 = 5;
/// Rows a worker reads at once.
const BATCH: i64 = 100;
/// Rows of a status page by default.
const PAGE_DEFAULT: u32 = 100;
/// The most rows of a status page.
const PAGE_MAX: u32 = 1000;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// A worker took it (it may have died: another takes over once its
    /// lease ends).
    Running,
    /// Every row was written or refused.
    Done,
    /// Stopped before the end (`failureReason` says why); the rows not
    /// reached are untouched.
    Failed,
}

impl JobState {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    pub(super) fn parse(text: &str) -> Self {
        match text {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            _ => JobState::Failed,
        }
    }
}

/// The answer to a file written as a job (202).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobAccepted {
    /// The job, at `GET /v1/orgs/{org}/invitations/bulk/{jobId}`.
    pub job_id: String,
    /// `queued`.
    pub state: JobState,
    /// Rows the job writes (the valid ones).
    pub total: usize,
    /// Rows of the file that are invalid (`import_valid=true`): not in the
    /// job.
    pub invalid: usize,
    /// The invalid rows, each with its error, reported at once.
    pub rows: Vec<RowResult>,
}

/// A job's progress and its rows' results.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// The job.
    pub job_id: String,
    /// Its organization.
    pub org_id: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: JobState,
    /// Rows to write.
    pub total: i64,
    /// Rows written or refused so far.
    pub processed: i64,
    /// Rows written.
    pub succeeded: i64,
    /// Rows refused (each with its error below).
    pub failed: i64,
    /// Why the job stopped (state `failed`).
    pub failure_reason: Option<String>,
    /// When it was submitted (unix seconds).
    pub created_at: i64,
    /// When it ended (unix seconds).
    pub finished_at: Option<i64>,
    /// One page of rows in file order, after `after`.
    pub rows: Vec<JobRow>,
    /// The `after` of the next page; absent on the last.
    pub next_after: Option<i64>,
}

/// One row of a job.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobRow {
    /// The file's data row (1-based; the header is row 0).
    pub row: i64,
    /// The row's e-mail, normalized.
    pub email: String,
    /// `pending` (not reached yet), what was done (`invited`, `saved`,
    /// `resent`), or `failed`.
    pub outcome: String,
    /// Why a failed row was refused.
    pub error: Option<RowError>,
}

/// Why a row was refused: the code and message the API answers for the
/// same refusal of a single invitation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowError {
    /// E.g. `invalid`, `conflict`, `forbidden`, `rate_limited`.
    pub code: String,
    /// For people.
    pub message: String,
}

/// Which rows of a job to list.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
pub struct JobPage {
    /// List rows after this file row (default: from the first).
    pub after: Option<u64>,
    /// Rows per page (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A job to store: the valid rows of a file, and its invalid ones.
#[derive(Debug)]
pub(crate) struct NewJob {
    /// Send the invitations (the file's option).
    pub send: bool,
    /// The rows to write, in file order.
    pub rows: Vec<JobInput>,
    /// The invalid rows, answered at once (`import_valid=true`).
    pub invalid: Vec<RowResult>,
}

/// A valid row going into a job.
#[derive(Debug)]
pub(crate) struct JobInput {
    /// The file's data row.
    pub row: usize,
    /// Its normalized e-mail.
    pub email: String,
    /// Its cells, read again at write time.
    pub cells: Cells,
}

/// A worker's claim on a job: only its holder writes the job's rows.
#[derive(Debug)]
pub struct JobClaim {
    job_id: String,
    org_id: String,
    actor: Actor,
    send: bool,
    /// This claim (a random id): the rows' transactions check it.
    claim: String,
    /// Rows processed so far.
    cursor: i64,
}

/// Where [`InviteService::work_job`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStep {
    /// The job ended in this state.
    Ended(JobState),
    /// The row limit was reached; the claim still holds until its lease ends.
    Paused,
    /// Another worker took the job over (this one's lease had ended).
    LostClaim,
    /// A row failed for an internal reason: the claim was given back and
    /// the row is retried later.
    Retry,
}

impl InviteService {
    /// Stores `job` as a job of `actor` (the user `actor_id`) and wakes
    /// the worker.
    pub(crate) async fn submit_job(
        &self,
        actor: &Actor,
        actor_id: &str,
        org_id: &str,
        job: NewJob,
        now: i64,
    ) -> Result<JobAccepted, InviteError> {
        let job_id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.begin_rows_only().await?;
        let record = NewJobRecord {
            job_id: &job_id,
            org_id,
            actor_id,
            actor_mfa: actor.mfa,
            request_id: actor.request_id.as_deref(),
            options: json!({"send": job.send}).to_string(),
            total: job.rows.len() as i64,
            now,
        };
        sql::insert_job(&mut tx, &record).await?;
        for (seq, row) in (1_i64..).zip(&job.rows) {
            let cells = Value::Object(row.cells.clone()).to_string();
            sql::insert_row(&mut tx, &job_id, seq, row.row as i64, &row.email, &cells).await?;
        }
        tx.commit().await?;
        self.jobs_queued.notify_one();
        Ok(JobAccepted {
            job_id,
            state: JobState::Queued,
            total: job.rows.len(),
            invalid: job.invalid.len(),
            rows: job.invalid,
        })
    }

    /// A job's progress and one page of its rows. Asked of the policies
    /// like an invitation into `org` before anything is read, so whoever
    /// may not invite there learns nothing, not even whether the job
    /// exists; another organization's job is not found in this one.
    pub async fn bulk_job(
        &self,
        actor: &Actor,
        org_id: &str,
        job_id: &str,
        page: JobPage,
        now: i64,
    ) -> Result<JobStatus, InviteError> {
        self.authorize_org(actor, INVITE, org_id, now).await?;
        let mut conn = self.pool.acquire().await?;
        existing_org(&mut conn, org_id).await?;
        let job = sql::job(&mut conn, org_id, job_id)
            .await?
            .ok_or_else(|| NotFound::BulkJob {
                org_id: org_id.to_owned(),
                job_id: job_id.to_owned(),
            })?;
        let after = page
            .after
            .map_or(0, |a| i64::try_from(a).unwrap_or(i64::MAX));
        let limit = page.limit.unwrap_or(PAGE_DEFAULT).clamp(1, PAGE_MAX) as usize;
        // One more than the page: whether there is a next one.
        let mut rows = sql::rows_after(&mut conn, job_id, after, limit as i64 + 1).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok(JobStatus {
            job_id: job_id.to_owned(),
            org_id: org_id.to_owned(),
            state: job.state,
            total: job.total,
            processed: job.processed,
            succeeded: job.succeeded,
            failed: job.failed,
            failure_reason: job.failure_reason,
            created_at: job.created_at,
            finished_at: job.finished_at,
            next_after: rows.last().filter(|_| more).map(|r| r.row),
            rows,
        })
    }

    /// Claims the oldest job that needs a worker (queued, or whose
    /// worker's lease ended, or due a retry) for [`LEASE_SECS`].
    pub async fn claim_job(&self, now: i64) -> Result<Option<JobClaim>, InviteError> {
        let claim = uuid::Uuid::new_v4().to_string();
        let until = now.saturating_add(LEASE_SECS);
        let Some(job) = sql::claim(&self.pool, &claim, until, now).await? else {
            return Ok(None);
        };
        let options: Value = serde_json::from_str(&job.options).unwrap_or_default();
        Ok(Some(JobClaim {
            job_id: job.job_id,
            org_id: job.org_id,
            actor: Actor::user(job.actor_id, job.actor_mfa, job.request_id),
            send: options["send"].as_bool().unwrap_or(true),
            claim,
            cursor: job.processed,
        }))
    }

    /// Writes the rows of a claimed job in order, at most `max_rows` of
    /// them, each on the time `now` gives when it starts; ends the job
    /// after its last row.
    pub async fn work_job(
        &self,
        claim: &mut JobClaim,
        max_rows: usize,
        now: &(dyn Fn() -> i64 + Sync),
    ) -> Result<JobStep, InviteError> {
        let mut written = 0;
        loop {
            let mut conn = self.pool.acquire().await?;
            let rows = sql::pending_rows(&mut conn, &claim.job_id, claim.cursor, BATCH).await?;
            drop(conn);
            if rows.is_empty() {
                return self.end_job(claim, None, now()).await;
            }
            for row in rows {
                if written == max_rows {
                    return Ok(JobStep::Paused);
                }
                match self.write_row(claim, &row, now()).await {
                    Ok(true) => claim.cursor = row.seq,
                    Ok(false) => return Ok(JobStep::LostClaim),
                    Err(e) => return self.retry_or_fail(claim, &row, &e, now()).await,
                }
                written += 1;
            }
        }
    }

    /// Runs forever: claims a job when woken (a job was queued here) and
    /// every `every` (a job queued by another sidecar, one whose worker
    /// died, a retry), and works it to its end.
    pub async fn run_bulk_jobs(
        self: Arc<Self>,
        every: Duration,
        clock: Arc<dyn crate::clock::Clock>,
    ) {
        let now = || clock.now();
        loop {
            let worked = match self.claim_job(now()).await {
                Ok(Some(mut claim)) => match self.work_job(&mut claim, usize::MAX, &now).await {
                    Ok(step) => step != JobStep::Retry,
                    Err(e) => {
                        tracing::warn!(job = %claim.job_id, error = %e, "bulk job interrupted");
                        false
                    }
                },
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the bulk jobs");
                    false
                }
            };
            // Another job may be due.
            if worked {
                continue;
            }
            tokio::select! {
                () = self.jobs_queued.notified() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One row, in the transaction that records its result. `Ok(false)`
    /// when the claim no longer holds (nothing was written); `Err` for an
    /// internal failure (nothing was written either).
    async fn write_row(
        &self,
        claim: &JobClaim,
        row: &PendingRow,
        now: i64,
    ) -> Result<bool, InviteError> {
        let until = now.saturating_add(LEASE_SECS);
        let refused = match self.check_job_row(claim, row, now).await {
            Ok(prepared) => {
                let mut change = self.begin().await?;
                if !sql::advance(&mut change, &claim.job_id, &claim.claim, row.seq, until).await? {
                    return Ok(false);
                }
                let written = match existing_org(&mut change, &claim.org_id).await {
                    Ok(org) => {
                        self.write_invite(&mut change, &claim.actor, &org, prepared, now)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match written {
                    Ok(outcome) => {
                        sql::settle(
                            &mut change,
                            &claim.job_id,
                            row.seq,
                            outcome.outcome,
                            None,
                            now,
                        )
                        .await?;
                        self.commit(change).await?;
                        return Ok(true);
                    }
                    // The change is dropped, so rolled back: the refusal
                    // is recorded alone.
                    Err(e) if !is_internal(&e) => e,
                    Err(e) => return Err(e),
                }
            }
            Err(e) if !is_internal(&e) => e,
            Err(e) => return Err(e),
        };
        let mut rows = self.begin_rows_only().await?;
        if !sql::advance(&mut rows, &claim.job_id, &claim.claim, row.seq, until).await? {
            return Ok(false);
        }
        let error = (row_error_code(&refused), refused.to_string());
        sql::settle(
            &mut rows,
            &claim.job_id,
            row.seq,
            "failed",
            Some(error),
            now,
        )
        .await?;
        rows.commit().await?;
        Ok(true)
    }

    /// The checks of a bulk row at write time, as in the request: the
    /// organization-level question, the file's rules, the membership and
    /// the grant, each on the current state.
    async fn check_job_row(
        &self,
        claim: &JobClaim,
        row: &PendingRow,
        now: i64,
    ) -> Result<Prepared, InviteError> {
        self.authorize_org(&claim.actor, INVITE, &claim.org_id, now)
            .await?;
        let cells: Cells = serde_json::from_str(&row.cells).unwrap_or_default();
        let input = row_input(&cells, claim.send)?;
        // Duplicates within the file were refused at submission.
        self.check_row(
            &claim.actor,
            &claim.org_id,
            &input,
            &mut HashSet::new(),
            now,
        )
        .await
    }

    /// After an internal failure at `row`: gives the claim back until a
    /// retry time, or fails the job after [`MAX_ATTEMPTS`].
    async fn retry_or_fail(
        &self,
        claim: &JobClaim,
        row: &PendingRow,
        error: &InviteError,
        now: i64,
    ) -> Result<JobStep, InviteError> {
        tracing::error!(job = %claim.job_id, row = row.row, error = %error, "a bulk job row failed");
        match sql::count_attempt(&self.pool, &claim.job_id, &claim.claim).await? {
            None => Ok(JobStep::LostClaim),
            Some(n) if n < MAX_ATTEMPTS => {
                let retry_at = now.saturating_add(RETRY_SECS);
                sql::release(&self.pool, &claim.job_id, &claim.claim, retry_at).await?;
                Ok(JobStep::Retry)
            }
            Some(n) => {
                let reason = format!(
                    "row {} could not be written after {n} attempts (internal error; see the sidecar's logs); the rows after it were not written",
                    row.row
                );
                self.end_job(claim, Some(reason), now).await
            }
        }
    }

    /// Ends the job, `done` or `failed` for `failure`, and tells the
    /// submitting administrator, in one transaction, if the claim holds.
    async fn end_job(
        &self,
        claim: &JobClaim,
        failure: Option<String>,
        now: i64,
    ) -> Result<JobStep, InviteError> {
        let state = if failure.is_some() {
            JobState::Failed
        } else {
            JobState::Done
        };
        let mut change = self.begin().await?;
        let ended = sql::end(
            &mut change,
            &claim.job_id,
            &claim.claim,
            state,
            failure.as_deref(),
            now,
        )
        .await?;
        let Some(counts) = ended else {
            return Ok(JobStep::LostClaim);
        };
        if let Some(message) = self
            .job_notice(&mut change, claim, counts, failure.as_deref())
            .await?
        {
            change.enqueue(now, &message).await?;
        }
        self.commit(change).await?;
        Ok(JobStep::Ended(state))
    }

    /// The message telling the submitting administrator how the job ended
    /// (`None` when they have no address).
    async fn job_notice(
        &self,
        conn: &mut AnyConnection,
        claim: &JobClaim,
        (total, succeeded, failed): (i64, i64, i64),
        failure: Option<&str>,
    ) -> Result<Option<Outgoing>, InviteError> {
        let Some(user_id) = claim.actor.user_id() else {
            return Ok(None);
        };
        let Some(admin) = store::user_by_id(&mut *conn, user_id).await? else {
            return Ok(None);
        };
        let org_name = store::org_by_id(conn, &claim.org_id)
            .await?
            .map_or_else(|| claim.org_id.clone(), |o| o.name);
        let ending = match failure {
            None => "finished".to_owned(),
            Some(reason) => format!("stopped: {reason}"),
        };
        Ok(Some(Outgoing {
            to: admin.email,
            subject: format!("Bulk invitation to {org_name}: {succeeded} of {total} written"),
            body: format!(
                "Hello {first},\n\nThe bulk invitation you submitted to {org_name} {ending}.\n\n\
                 Rows: {total}; written: {succeeded}; refused: {failed}.\n\n\
                 Each row's result: GET /v1/orgs/{org}/invitations/bulk/{job}\n",
                first = admin.first_name,
                org = claim.org_id,
                job = claim.job_id,
            ),
            invitation_id: None,
            dedupe_key: None,
        }))
    }
}

/// A failure of the sidecar or its database rather than a refusal of the
/// row: retried, never recorded as the row's result.
fn is_internal(e: &InviteError) -> bool {
    matches!(
        e,
        InviteError::Store(_)
            | InviteError::Projection(_)
            | InviteError::PasswordHash { .. }
            | InviteError::HashingTask { .. }
            | InviteError::HashingPoolClosed
    )
}

/// The code the API answers for a refusal of a single invitation (see
/// `http::error`; a test there keeps the two in step).
pub fn row_error_code(e: &InviteError) -> &'static str {
    match e {
        InviteError::Invalid { .. } => "invalid",
        InviteError::Forbidden { .. } => "forbidden",
        InviteError::UnknownActor { .. } => "unknown_actor",
        InviteError::Conflict(_) => "conflict",
        InviteError::NotFound(_) => "not_found",
        InviteError::RateLimited { .. } => "rate_limited",
        InviteError::LinkUnavailable => "link_unavailable",
        InviteError::Unavailable => "unavailable",
        _ => "internal",
    }
}
