//! Two-step verification (RFC 6238): a secret per person, confirmed with a
//! first code before it counts; codes of the current 30-second step or one
//! either side, each step accepted once (the last accepted step is stored
//! and only newer ones pass, atomically, so a code seen in transit cannot
//! be replayed on another sidecar either); and ten single-use recovery
//! codes, stored as SHA-256 hashes and shown once.

use sqlx::{AnyPool, Row};
use subtle::ConstantTimeEq;
use totp_rs::{Builder, Secret, Totp};

use super::{AccountError, Accounts, throttle};
use crate::invites::token::hash_token;

/// The issuer authenticator apps show.
const ISSUER: &str = "cedargate";
/// Recovery codes per person.
const RECOVERY_CODES: usize = 10;
/// Seconds per step, and steps accepted either side of now.
const STEP_SECS: u64 = 30;
const SKEW_STEPS: u64 = 1;

/// An enrollment in progress, as the enrollment page shows it.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The secret in base32, for typing into an app by hand.
    pub secret: String,
    /// A PNG of the `otpauth://` URL's QR code, base64 (for a `data:` URL).
    pub qr_png_base64: String,
}

/// A person's two-step verification, for their account page.
#[derive(Debug, Clone, Copy)]
pub struct TwoStepStatus {
    /// They confirmed a secret.
    pub enrolled: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
}

fn totp(secret: &str, email: &str) -> Result<Totp, AccountError> {
    let secret = Secret::try_from_base32(secret).map_err(|e| AccountError::Totp(e.to_string()))?;
    Builder::new()
        .with_secret(secret)
        .with_step_duration(STEP_SECS)
        .with_skew(0)
        .with_account_name(email.replace(':', "_"))
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| AccountError::Totp(e.to_string()))
}

/// The step in (now − skew ..= now + skew), newer than `last_step`, whose
/// code is `code` (compared in constant time).
fn matching_step(totp: &Totp, code: &str, last_step: i64, now: i64) -> Option<i64> {
    let origin = u64::try_from(now).ok()? / STEP_SECS;
    (origin.saturating_sub(SKEW_STEPS)..=origin + SKEW_STEPS)
        .filter(|&step| i64::try_from(step).is_ok_and(|s| s > last_step))
        .find(|&step| {
            let expected = totp.generate(step * STEP_SECS).to_string();
            bool::from(expected.as_bytes().ct_eq(code.as_bytes()))
        })
        .and_then(|step| i64::try_from(step).ok())
}

/// A code as typed: spaces and dashes dropped, lower case.
fn normalize(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Ten groups `xxxxx-xxxxx` of a 32-letter alphabet: 50 random bits each.
fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let bytes: [u8; 10] = rand::random();
            let mut code = String::with_capacity(11);
            for (i, b) in bytes.iter().enumerate() {
                if i == 5 {
                    code.push('-');
                }
                code.push(char::from(ALPHABET[usize::from(b & 31)]));
            }
            code
        })
        .collect()
}

/// Whether `user_id` confirmed two-step verification.
pub(super) async fn is_enrolled(pool: &AnyPool, user_id: &str) -> Result<bool, AccountError> {
    let row = sqlx::query("select 1 from totp_secret where user_id = $1 and confirmed <> 0")
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}

impl Accounts {
    /// The two-step verification of `user_id`.
    pub async fn two_step_status(&self, user_id: &str) -> Result<TwoStepStatus, AccountError> {
        let enrolled = is_enrolled(&self.pool, user_id).await?;
        let row = sqlx::query(
            "select count(*) from recovery_code where user_id = $1 and used_at is null",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(TwoStepStatus {
            enrolled,
            recovery_codes_left: row.get(0),
        })
    }

    /// Starts (or shows again) the enrollment of `user_id`, whose login is
    /// `email`: a new secret unless one is waiting for confirmation.
    pub async fn enrollment(
        &self,
        user_id: &str,
        email: &str,
        now: i64,
    ) -> Result<Enrollment, AccountError> {
        if is_enrolled(&self.pool, user_id).await? {
            return Err(AccountError::Enrollment(
                "two-step verification is already set up",
            ));
        }
        let pending =
            sqlx::query("select secret from totp_secret where user_id = $1 and confirmed = 0")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        let secret = match pending {
            Some(row) => row.get::<String, _>(0),
            None => {
                let bytes: [u8; 20] = rand::random();
                let secret = Secret::from(bytes).to_base32();
                sqlx::query(
                    "insert into totp_secret (user_id, secret, confirmed, last_step, created_at)
                     values ($1, $2, 0, 0, $3)
                     on conflict (user_id) do nothing",
                )
                .bind(user_id)
                .bind(&secret)
                .bind(now)
                .execute(&self.pool)
                .await?;
                // Another request may have started one at the same time:
                // the stored secret is the one to show.
                let row = sqlx::query("select secret from totp_secret where user_id = $1")
                    .bind(user_id)
                    .fetch_one(&self.pool)
                    .await?;
                row.get(0)
            }
        };
        let qr_png_base64 = totp(&secret, email)?
            .to_qr_base64()
            .map_err(|e| AccountError::Totp(e.to_string()))?;
        Ok(Enrollment {
            secret,
            qr_png_base64,
        })
    }

    /// Confirms the enrollment of `user_id` with a first `code`; returns
    /// the recovery codes, shown this once.
    pub async fn confirm_enrollment(
        &self,
        user_id: &str,
        email: &str,
        code: &str,
        now: i64,
    ) -> Result<Vec<String>, AccountError> {
        let scope = throttle::account(email);
        self.throttled(&scope, now).await?;
        let row =
            sqlx::query("select secret from totp_secret where user_id = $1 and confirmed = 0")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            return Err(AccountError::Enrollment(
                "no two-step verification setup is in progress; start again",
            ));
        };
        let secret: String = row.get(0);
        let Some(step) = matching_step(&totp(&secret, email)?, &normalize(code), 0, now) else {
            self.failed(&scope, None, now).await?;
            return Err(AccountError::InvalidTotp);
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "update totp_secret set confirmed = 1, last_step = $1 where user_id = $2 and confirmed = 0",
        )
        .bind(step)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(AccountError::Enrollment(
                "two-step verification is already set up",
            ));
        }
        let codes = replace_recovery_codes(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// Checks the second step of `user_id` (login `email`): a code of a
    /// step newer than the last accepted one, or an unused recovery code
    /// (which is then used up). Failures count against the account's
    /// throttling.
    pub async fn check_second_step(
        &self,
        user_id: &str,
        email: &str,
        code: &str,
        now: i64,
    ) -> Result<(), AccountError> {
        let scope = throttle::account(email);
        self.throttled(&scope, now).await?;
        let code = normalize(code);
        let accepted = if code.len() <= 8 && code.chars().all(|c| c.is_ascii_digit()) {
            self.accept_code(user_id, email, &code, now).await?
        } else {
            self.use_recovery_code(user_id, &code, now).await?
        };
        if !accepted {
            self.failed(&scope, None, now).await?;
            return Err(AccountError::InvalidTotp);
        }
        throttle::clear(&self.pool, &scope).await
    }

    /// Replaces the recovery codes of `user_id` (enrolled) with new ones,
    /// returned this once.
    pub async fn regenerate_recovery_codes(
        &self,
        user_id: &str,
    ) -> Result<Vec<String>, AccountError> {
        if !is_enrolled(&self.pool, user_id).await? {
            return Err(AccountError::Enrollment(
                "two-step verification is not set up",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let codes = replace_recovery_codes(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(codes)
    }

    async fn throttled(&self, scope: &str, now: i64) -> Result<(), AccountError> {
        let s = self.settings;
        throttle::check(
            &self.pool,
            scope,
            s.account_failures,
            s.failure_window_secs,
            now,
        )
        .await
    }

    async fn accept_code(
        &self,
        user_id: &str,
        email: &str,
        code: &str,
        now: i64,
    ) -> Result<bool, AccountError> {
        let row = sqlx::query(
            "select secret, last_step from totp_secret where user_id = $1 and confirmed <> 0",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let (secret, last_step): (String, i64) = (row.get(0), row.get(1));
        let Some(step) = matching_step(&totp(&secret, email)?, code, last_step, now) else {
            return Ok(false);
        };
        // Only a step newer than the stored one moves it: of two requests
        // with one code, one wins.
        let done = sqlx::query(
            "update totp_secret set last_step = $1 where user_id = $2 and last_step < $1",
        )
        .bind(step)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code: &str,
        now: i64,
    ) -> Result<bool, AccountError> {
        let done = sqlx::query(
            "update recovery_code set used_at = $1 where user_id = $2 and code_hash = $3 and used_at is null",
        )
        .bind(now)
        .bind(user_id)
        .bind(hash_token(code))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

async fn replace_recovery_codes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
) -> Result<Vec<String>, AccountError> {
    sqlx::query("delete from recovery_code where user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    let codes = new_recovery_codes();
    for code in &codes {
        sqlx::query(
            "insert into recovery_code (user_id, code_hash, used_at) values ($1, $2, null)",
        )
        .bind(user_id)
        .bind(hash_token(&normalize(code)))
        .execute(&mut **tx)
        .await?;
    }
    Ok(codes)
}

/// The code of `secret` (base32) at `time`, as an authenticator app shows
/// it (for tests and tools).
pub fn code_at(secret: &str, time: i64) -> Result<String, AccountError> {
    let totp = totp(secret, "x")?;
    let time = u64::try_from(time).map_err(|e| AccountError::Totp(e.to_string()))?;
    Ok(totp.generate(time).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

    #[test]
    fn codes_of_the_adjacent_steps_pass_once_and_older_ones_never() {
        let totp = totp(SECRET, "ann@example.com").unwrap_or_else(|e| panic!("{e}"));
        let now = 1_700_000_000;
        let step = now / 30;
        let code = code_at(SECRET, now).unwrap_or_default();
        assert_eq!(matching_step(&totp, &code, 0, now), Some(step));
        assert_eq!(matching_step(&totp, &code, step, now), None, "replay");
        let previous = code_at(SECRET, now - 30).unwrap_or_default();
        assert_eq!(matching_step(&totp, &previous, 0, now), Some(step - 1));
        let old = code_at(SECRET, now - 90).unwrap_or_default();
        assert_eq!(matching_step(&totp, &old, 0, now), None);
        assert_eq!(matching_step(&totp, "", 0, now), None);
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_typed_loosely() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 11 && c.as_bytes()[5] == b'-')
        );
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10);
        assert_eq!(normalize(" ABCDE-fghij "), "abcdefghij");
    }
}
