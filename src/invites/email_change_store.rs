//! SQL of the `email_change` table (`schema/migrations/*/0005_email_changes.sql`),
//! for `email_change.rs`. Times are unix seconds and flags integers (0/1),
//! for the `Any` driver; every function takes a connection so the service
//! composes them in one transaction.

use sqlx::Row;
use sqlx::any::AnyRow;

/// The stored states of an e-mail change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Live until `expires_at`.
    Pending,
    /// The new address confirmed it: the login changed.
    Confirmed,
    /// A newer request for the same person replaced it.
    Superseded,
}

impl State {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Confirmed => "CONFIRMED",
            State::Superseded => "SUPERSEDED",
        }
    }
}

/// One e-mail change as stored.
#[derive(Debug, Clone)]
pub(super) struct ChangeRow {
    pub(super) change_id: String,
    pub(super) user_id: String,
    pub(super) org_id: String,
    pub(super) old_email: String,
    pub(super) new_email: String,
    pub(super) requested_by: String,
    pub(super) requested_mfa: bool,
    pub(super) expires_at: i64,
}

const COLUMNS: &str =
    "change_id, user_id, org_id, old_email, new_email, requested_by, requested_mfa, expires_at";

fn change_row(row: AnyRow) -> ChangeRow {
    ChangeRow {
        change_id: row.get(0),
        user_id: row.get(1),
        org_id: row.get(2),
        old_email: row.get(3),
        new_email: row.get(4),
        requested_by: row.get(5),
        requested_mfa: row.get::<i64, _>(6) != 0,
        expires_at: row.get(7),
    }
}

pub(super) async fn insert(
    conn: &mut sqlx::AnyConnection,
    row: &ChangeRow,
    token_hash: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into email_change (change_id, user_id, org_id, old_email, new_email, token_hash, state,
                                   requested_by, requested_mfa, created_at, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&row.change_id)
    .bind(&row.user_id)
    .bind(&row.org_id)
    .bind(&row.old_email)
    .bind(&row.new_email)
    .bind(token_hash)
    .bind(State::Pending.as_str())
    .bind(&row.requested_by)
    .bind(i64::from(row.requested_mfa))
    .bind(now)
    .bind(row.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Kills the pending change of `user_id`, if any: its link stops working.
pub(super) async fn supersede(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update email_change set state = $1, decided_at = $2 where user_id = $3 and state = $4",
    )
    .bind(State::Superseded.as_str())
    .bind(now)
    .bind(user_id)
    .bind(State::Pending.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// The live, unexpired change of `token_hash`.
pub(super) async fn live(
    conn: &mut sqlx::AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<ChangeRow>, sqlx::Error> {
    let sql = format!(
        "select {COLUMNS} from email_change where token_hash = $1 and state = $2 and expires_at > $3"
    );
    Ok(sqlx::query(&sql)
        .bind(token_hash)
        .bind(State::Pending.as_str())
        .bind(now)
        .fetch_optional(conn)
        .await?
        .map(change_row))
}

/// Atomically moves the live, unexpired change of `token_hash` to
/// CONFIRMED: at most one caller ever gets it.
pub(super) async fn consume(
    conn: &mut sqlx::AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<ChangeRow>, sqlx::Error> {
    let sql = format!(
        "update email_change set state = $1, decided_at = $2
         where token_hash = $3 and state = $4 and expires_at > $2
         returning {COLUMNS}"
    );
    Ok(sqlx::query(&sql)
        .bind(State::Confirmed.as_str())
        .bind(now)
        .bind(token_hash)
        .bind(State::Pending.as_str())
        .fetch_optional(conn)
        .await?
        .map(change_row))
}

/// Sets the login of `user_id`.
pub(super) async fn set_login(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    email: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update app_user set email = $1 where user_id = $2")
        .bind(email)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}
