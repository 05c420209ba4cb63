//! The outbox table: queuing a message in the transaction of the change
//! that causes it, claiming a due message for one delivery attempt, and
//! settling the attempt. Every statement that settles a message names the
//! claim it settles, so an attempt whose message was claimed again (its
//! lease ran out) or replaced (a newer invitation) changes nothing.

use sqlx::{AnyPool, Row};

use super::{MAX_ATTEMPTS, Outgoing};

/// What a settled message's `body` becomes: an invitation's template is
/// harmless, but a notice's text is nobody's business once handled.
const SETTLED_BODY: &str = "(settled; the body is not kept)";

/// Queues `message` inside the caller's transaction: it is sent only if
/// the transaction commits. An unsent message with the same
/// [`Outgoing::dedupe_key`] is replaced (a new message id, attempts from
/// zero, due now, any claim dropped), so many invitations of one member
/// queued before delivery send one message: the newest. Returns the
/// message id.
pub async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: i64,
    message: &Outgoing,
) -> Result<String, sqlx::Error> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "insert into outbox (message_id, invitation_id, recipient, subject, body, created_at, next_attempt_at, dedupe_key)
         values ($1, $2, $3, $4, $5, $6, $6, $7)
         on conflict (dedupe_key) where sent_at is null do update set
             message_id = excluded.message_id, invitation_id = excluded.invitation_id,
             recipient = excluded.recipient, subject = excluded.subject, body = excluded.body,
             attempts = 0, next_attempt_at = excluded.next_attempt_at, last_error = null,
             claimed_by = null, claimed_until = null",
    )
    .bind(&id)
    .bind(message.invitation_id.clone())
    .bind(&message.to)
    .bind(&message.subject)
    .bind(&message.body)
    .bind(now)
    .bind(message.dedupe_key.clone())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Whether the e-mail of `invitation_id` could not be delivered: a message
/// still unsent after [`MAX_ATTEMPTS`] attempts.
pub async fn delivery_failed(
    conn: &mut sqlx::AnyConnection,
    invitation_id: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "select 1 from outbox where invitation_id = $1 and sent_at is null and attempts >= $2",
    )
    .bind(invitation_id)
    .bind(MAX_ATTEMPTS)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Marks the unsent message queued under `dedupe_key` in this transaction
/// as carrying the confirmation link of the e-mail change `change_id`,
/// whose secret the worker mints when it sends the message (as for an
/// invitation's link).
pub async fn carry_email_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dedupe_key: &str,
    change_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update outbox set email_change_id = $1 where dedupe_key = $2 and sent_at is null")
        .bind(change_id)
        .bind(dedupe_key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Marks the unsent message queued under `dedupe_key` in this transaction
/// as carrying the link of the password reset `reset_id`, minted when the
/// message is sent (as for an invitation's link).
pub async fn carry_password_reset(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    dedupe_key: &str,
    reset_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox set password_reset_id = $1 where dedupe_key = $2 and sent_at is null",
    )
    .bind(reset_id)
    .bind(dedupe_key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A message claimed for one delivery attempt.
#[derive(Debug)]
pub(super) struct Claimed {
    pub message_id: String,
    pub invitation_id: Option<String>,
    /// The e-mail change whose confirmation link the message carries.
    pub email_change_id: Option<String>,
    /// The password reset whose link the message carries.
    pub password_reset_id: Option<String>,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub attempts: i64,
    /// The claim: only this attempt may settle the message.
    claim: String,
}

/// Claims the oldest due message, unclaimed or whose lease ended, until
/// `now + lease_secs`. On PostgreSQL the row is locked with `SKIP LOCKED`
/// while the claim is written, so two sidecars never claim one message
/// (and one finds nothing when the other took the row it found at the
/// same moment); SQLite runs one writing statement at a time, which is
/// enough.
pub(super) async fn claim(
    pool: &AnyPool,
    now: i64,
    lease_secs: i64,
) -> Result<Option<Claimed>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let lock = if conn.backend_name() == "PostgreSQL" {
        "for update skip locked"
    } else {
        ""
    };
    let sql = format!(
        "update outbox set claimed_by = $1, claimed_until = $2
         where message_id = (
             select message_id from outbox
             where sent_at is null and attempts < $3 and next_attempt_at <= $4
               and (claimed_until is null or claimed_until <= $4)
             order by created_at, message_id limit 1 {lock})
           and sent_at is null and (claimed_until is null or claimed_until <= $4)
         returning message_id, invitation_id, recipient, subject, body, attempts, email_change_id,
                   password_reset_id"
    );
    let claim = uuid::Uuid::new_v4().to_string();
    let row = sqlx::query(&sql)
        .bind(&claim)
        .bind(now.saturating_add(lease_secs))
        .bind(MAX_ATTEMPTS)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|row| Claimed {
        message_id: row.get(0),
        invitation_id: row.get(1),
        recipient: row.get(2),
        subject: row.get(3),
        body: row.get(4),
        attempts: row.get(5),
        email_change_id: row.get(6),
        password_reset_id: row.get(7),
        claim,
    }))
}

/// Gives `invitation_id` the token hash `token_hash` (of a secret minted
/// for this attempt), if it is still pending and unexpired at `now`.
/// Whatever link was minted before stops working.
///
/// The invitation rows are the invitation service's (`PENDING` is its
/// `InvitationState::Pending`); this is the one statement the mailer runs
/// on them, so that a link exists in clear only in the message being sent.
pub(super) async fn mint(
    pool: &AnyPool,
    invitation_id: &str,
    token_hash: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update invitation set token_hash = $1
         where invitation_id = $2 and state = 'PENDING' and expires_at > $3",
    )
    .bind(token_hash)
    .bind(invitation_id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the e-mail change `change_id` the token hash `token_hash`, if it
/// is still pending and unexpired at `now` (as [`mint`] for invitations;
/// `PENDING` is the invitation service's `EmailChangeState::Pending`).
pub(super) async fn mint_email_change(
    pool: &AnyPool,
    change_id: &str,
    token_hash: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update email_change set token_hash = $1
         where change_id = $2 and state = 'PENDING' and expires_at > $3",
    )
    .bind(token_hash)
    .bind(change_id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the password reset `reset_id` the token hash `token_hash`, if it
/// is unused and unexpired at `now` (as [`mint`] for invitations).
pub(super) async fn mint_password_reset(
    pool: &AnyPool,
    reset_id: &str,
    token_hash: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "update password_reset set token_hash = $1
         where reset_id = $2 and used_at is null and expires_at > $3",
    )
    .bind(token_hash)
    .bind(reset_id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the delivery of `message`.
pub(super) async fn settle_sent(
    pool: &AnyPool,
    message: &Claimed,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox set sent_at = $1, attempts = attempts + 1, last_error = null, body = $2,
             claimed_by = null, claimed_until = null
         where message_id = $3 and claimed_by = $4",
    )
    .bind(now)
    .bind(SETTLED_BODY)
    .bind(&message.message_id)
    .bind(&message.claim)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt at `message`, retried at `retry_at`.
pub(super) async fn settle_failed(
    pool: &AnyPool,
    message: &Claimed,
    error: &str,
    retry_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox set attempts = attempts + 1, last_error = $1, next_attempt_at = $2,
             claimed_by = null, claimed_until = null
         where message_id = $3 and claimed_by = $4",
    )
    .bind(error)
    .bind(retry_at)
    .bind(&message.message_id)
    .bind(&message.claim)
    .execute(pool)
    .await?;
    Ok(())
}

/// Settles `message` without sending it, for `reason`.
pub(super) async fn settle_cancelled(
    pool: &AnyPool,
    message: &Claimed,
    reason: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox set sent_at = $1, cancelled_reason = $2, body = $3,
             claimed_by = null, claimed_until = null
         where message_id = $4 and claimed_by = $5",
    )
    .bind(now)
    .bind(reason)
    .bind(SETTLED_BODY)
    .bind(&message.message_id)
    .bind(&message.claim)
    .execute(pool)
    .await?;
    Ok(())
}
