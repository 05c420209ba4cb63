//! Password reset by a one-time e-mailed link, built like invitation
//! links: the link's secret is minted when the message is sent (the outbox
//! never holds a working link), only its hash is stored, it works for an
//! hour and once. Asking answers the same whether the address has an
//! account or not; setting the new password ends all the person's
//! sessions.

use sqlx::Row;

use super::{AccountError, Accounts, session, throttle};
use crate::invites::rules::normalize_email;
use crate::invites::service::NewPassword;
use crate::invites::token::hash_token;
use crate::mail::{Outgoing, SECRET_PLACEHOLDER, carry_password_reset};

impl Accounts {
    /// Mails a reset link to `email` if it is the login of someone with a
    /// password, or of a system administrator (created at the command line
    /// and never invited, so this link is how they choose a first
    /// password), at most [`AccountSettings::resets_per_hour`] an hour;
    /// otherwise does nothing. The caller answers the same either way.
    ///
    /// [`AccountSettings::resets_per_hour`]: super::AccountSettings::resets_per_hour
    pub async fn request_reset(&self, email: &str, now: i64) -> Result<(), AccountError> {
        let email = normalize_email(email);
        let row = sqlx::query(
            "select user_id from app_user
             where email = $1 and invited_email is null
               and (password_hash is not null or system_admin = 1)",
        )
        .bind(&email)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            tracing::debug!("password reset asked for an address without an account");
            return Ok(());
        };
        let user_id: String = row.get(0);
        let recent = sqlx::query(
            "select count(*) from password_reset where user_id = $1 and created_at > $2",
        )
        .bind(&user_id)
        .bind(now - 3600)
        .fetch_one(&self.pool)
        .await?;
        if recent.get::<i64, _>(0) >= self.settings.resets_per_hour {
            tracing::info!(user = %user_id, "password reset not sent: too many this hour");
            return Ok(());
        }
        let reset_id = uuid::Uuid::new_v4().to_string();
        let mut change = self.service.begin().await?;
        sqlx::query(
            "insert into password_reset (reset_id, user_id, token_hash, created_at, expires_at)
             values ($1, $2, $3, $4, $5)",
        )
        .bind(&reset_id)
        .bind(&user_id)
        // Unusable until the mailer mints the link: no secret hashes to it.
        .bind(format!("unminted:{reset_id}"))
        .bind(now)
        .bind(now + self.settings.reset_ttl_secs)
        .execute(&mut **change)
        .await?;
        let dedupe_key = format!("password-reset:{user_id}");
        let base = self.service.settings.public_url.trim_end_matches('/');
        let message = Outgoing {
            to: email,
            subject: "Reset your cedargate password".to_owned(),
            body: format!(
                "Someone (hopefully you) asked to reset the password of this account.\n\n\
                 Choose a new password here, within the hour:\n\n\
                 {base}/console/password-reset/{SECRET_PLACEHOLDER}\n\n\
                 The link works once. If you did not ask, ignore this message: your password stays as it is.\n"
            ),
            invitation_id: None,
            dedupe_key: Some(dedupe_key.clone()),
        };
        change.enqueue(now, &message).await?;
        carry_password_reset(&mut change, &dedupe_key, &reset_id).await?;
        self.service.commit(change).await?;
        Ok(())
    }

    /// The login whose password the live link `token` resets.
    pub async fn reset_view(&self, token: &str, now: i64) -> Result<String, AccountError> {
        let row = sqlx::query(
            "select u.email from password_reset r join app_user u on u.user_id = r.user_id
             where r.token_hash = $1 and r.used_at is null and r.expires_at > $2",
        )
        .bind(hash_token(token))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.get(0))
            .ok_or(AccountError::ResetLinkUnavailable)
    }

    /// Sets the password chosen on the page of the link `token` (the
    /// acceptance page's rules), uses the link up and ends every session of
    /// the person, in one transaction. A refused password leaves the link
    /// working.
    pub async fn reset_password(
        &self,
        token: &str,
        choice: NewPassword<'_>,
        now: i64,
    ) -> Result<(), AccountError> {
        let email = self.reset_view(token, now).await?;
        if let Some(problem) = choice.problem() {
            return Err(AccountError::Password(problem));
        }
        let hash = self
            .service
            .hashing
            .hash(choice.password.unwrap_or_default())
            .await?;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "update password_reset set used_at = $1
             where token_hash = $2 and used_at is null and expires_at > $1
             returning user_id",
        )
        .bind(now)
        .bind(hash_token(token))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(AccountError::ResetLinkUnavailable);
        };
        let user_id: String = row.get(0);
        sqlx::query("update app_user set password_hash = $1 where user_id = $2")
            .bind(&hash)
            .bind(&user_id)
            .execute(&mut *tx)
            .await?;
        session::end_sessions_of(&mut tx, &user_id).await?;
        tx.commit().await?;
        // A person who proved their mailbox may try again at once.
        throttle::clear(&self.pool, &throttle::account(&email)).await?;
        Ok(())
    }
}
