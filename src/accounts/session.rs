//! Console sessions, kept server-side: the cookie holds 256 random bits,
//! the database only their SHA-256, with the person, what they passed
//! (password, second step), a CSRF token for their forms, and the times
//! that bound the session (idle and absolute expiry). Every change of what
//! a session passed gets a new id: an id seen before sign-in is never the
//! one after it.

use sqlx::{AnyConnection, Row};

use super::{AccountError, Accounts};
use crate::invites::token::{hash_token, random_secret};

/// What a session's person passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The password; a two-step verification code is asked next.
    Totp,
    /// The password, but an organization requires two-step verification,
    /// which they must set up before anything else.
    Enroll,
    /// Everything asked of them: the console is theirs.
    Complete,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Totp => "TOTP",
            Stage::Enroll => "ENROLL",
            Stage::Complete => "COMPLETE",
        }
    }

    /// An unknown stage is no stage: the session is not used (fail closed).
    fn parse(s: &str) -> Option<Self> {
        match s {
            "TOTP" => Some(Stage::Totp),
            "ENROLL" => Some(Stage::Enroll),
            "COMPLETE" => Some(Stage::Complete),
            _ => None,
        }
    }
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The person.
    pub user_id: String,
    /// Their login.
    pub email: String,
    /// What they passed.
    pub stage: Stage,
    /// They passed two-step verification.
    pub mfa: bool,
    /// The token the session's forms carry.
    pub csrf: String,
}

/// A session just opened: the cookie's value (given out once) and its
/// forms' token.
#[derive(Debug)]
pub struct Opened {
    /// The session id for the cookie; only its hash is stored.
    pub id: String,
    /// The CSRF token of its forms.
    pub csrf: String,
}

impl Accounts {
    /// Opens a session for `user_id` at `stage`, ending the one the browser
    /// presented (`replaces`), whoever's it was.
    pub async fn open_session(
        &self,
        user_id: &str,
        stage: Stage,
        mfa: bool,
        replaces: Option<&str>,
        now: i64,
    ) -> Result<Opened, AccountError> {
        let mut tx = self.pool.begin().await?;
        if let Some(old) = replaces {
            delete(&mut tx, old).await?;
        }
        let opened = insert(&mut tx, user_id, stage, mfa, now, now).await?;
        tx.commit().await?;
        Ok(opened)
    }

    /// Moves the session `id` to `stage` under a new id (the old one ends),
    /// keeping its sign-in time for the absolute expiry. `None` when the
    /// session is gone.
    pub async fn advance_session(
        &self,
        id: &str,
        stage: Stage,
        mfa: bool,
        now: i64,
    ) -> Result<Option<Opened>, AccountError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "delete from account_session where session_hash = $1 returning user_id, created_at",
        )
        .bind(hash_token(id))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (user_id, created_at): (String, i64) = (row.get(0), row.get(1));
        let opened = insert(&mut tx, &user_id, stage, mfa, created_at, now).await?;
        tx.commit().await?;
        Ok(Some(opened))
    }

    /// The live session of `id` at `now`, which counts as a use of it. An
    /// expired one (idle too long, or signed in too long ago) is deleted.
    pub async fn session(&self, id: &str, now: i64) -> Result<Option<Session>, AccountError> {
        if id.is_empty() {
            return Ok(None);
        }
        let hash = hash_token(id);
        let row = sqlx::query(
            "select s.user_id, u.email, s.stage, s.mfa, s.csrf, s.created_at, s.last_seen_at
             from account_session s join app_user u on u.user_id = s.user_id
             where s.session_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (created_at, last_seen_at): (i64, i64) = (row.get(5), row.get(6));
        let stage = Stage::parse(row.get::<String, _>(2).as_str());
        let expired = now - last_seen_at > self.settings.idle_secs
            || now - created_at > self.settings.absolute_secs;
        let Some(stage) = stage.filter(|_| !expired) else {
            self.end_session(id).await?;
            return Ok(None);
        };
        if now > last_seen_at {
            sqlx::query("update account_session set last_seen_at = $1 where session_hash = $2")
                .bind(now)
                .bind(&hash)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(Session {
            user_id: row.get(0),
            email: row.get(1),
            stage,
            mfa: row.get::<i64, _>(3) != 0,
            csrf: row.get(4),
        }))
    }

    /// Ends the session `id` (signing out).
    pub async fn end_session(&self, id: &str) -> Result<(), AccountError> {
        let mut conn = self.pool.acquire().await?;
        delete(&mut conn, id).await
    }
}

/// Ends every session of `user_id` (a new password).
pub(super) async fn end_sessions_of(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<(), AccountError> {
    sqlx::query("delete from account_session where user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn delete(conn: &mut AnyConnection, id: &str) -> Result<(), AccountError> {
    sqlx::query("delete from account_session where session_hash = $1")
        .bind(hash_token(id))
        .execute(conn)
        .await?;
    Ok(())
}

async fn insert(
    conn: &mut AnyConnection,
    user_id: &str,
    stage: Stage,
    mfa: bool,
    created_at: i64,
    now: i64,
) -> Result<Opened, AccountError> {
    let opened = Opened {
        id: random_secret(),
        csrf: random_secret(),
    };
    sqlx::query(
        "insert into account_session (session_hash, user_id, stage, mfa, csrf, created_at, last_seen_at)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hash_token(&opened.id))
    .bind(user_id)
    .bind(stage.as_str())
    .bind(i64::from(mfa))
    .bind(&opened.csrf)
    .bind(created_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip_and_unknown_ones_are_refused() {
        for stage in [Stage::Totp, Stage::Enroll, Stage::Complete] {
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        }
        assert_eq!(Stage::parse("complete"), None);
    }
}
