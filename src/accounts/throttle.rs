//! Failed attempts, counted in the database per scope (an account or a
//! client address) over a sliding window. A scope at its limit is refused
//! before anything is checked, so a throttled guess learns nothing.

use sqlx::{AnyPool, Row};

use super::AccountError;

/// The scope of an account's failures.
pub(super) fn account(email: &str) -> String {
    format!("account:{email}")
}

/// The scope of a client address's failures.
pub(super) fn address(ip: std::net::IpAddr) -> String {
    format!("address:{ip}")
}

/// Refuses when `scope` failed `limit` times within `window` seconds
/// before `now`, saying when the oldest of those failures stops counting.
pub(super) async fn check(
    pool: &AnyPool,
    scope: &str,
    limit: i64,
    window: i64,
    now: i64,
) -> Result<(), AccountError> {
    let row =
        sqlx::query("select count(*), min(at) from login_failure where scope = $1 and at > $2")
            .bind(scope)
            .bind(now - window)
            .fetch_one(pool)
            .await?;
    let (count, oldest): (i64, Option<i64>) = (row.get(0), row.get(1));
    if count >= limit {
        let retry_after_secs = (oldest.unwrap_or(now) + window - now).max(1);
        return Err(AccountError::Throttled { retry_after_secs });
    }
    Ok(())
}

/// Records a failure of `scope` at `now`, forgetting its failures that
/// no longer count.
pub(super) async fn record(
    pool: &AnyPool,
    scope: &str,
    window: i64,
    now: i64,
) -> Result<(), AccountError> {
    let mut tx = pool.begin().await?;
    sqlx::query("delete from login_failure where scope = $1 and at <= $2")
        .bind(scope)
        .bind(now - window)
        .execute(&mut *tx)
        .await?;
    sqlx::query("insert into login_failure (scope, at) values ($1, $2)")
        .bind(scope)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Forgets every failure of `scope` (after a successful sign-in).
pub(super) async fn clear(pool: &AnyPool, scope: &str) -> Result<(), AccountError> {
    sqlx::query("delete from login_failure where scope = $1")
        .bind(scope)
        .execute(pool)
        .await?;
    Ok(())
}
