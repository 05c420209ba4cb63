//! Checking an e-mail and password: throttled first, then argon2id on the
//! invitation service's hashing pool. An unknown e-mail, or an account
//! without a password yet, is checked against a fixed dummy hash, so the
//! answer takes as long as for a wrong password and says the same.

use std::net::IpAddr;

use serde::Serialize;
use sqlx::Row;
use tokio::sync::OnceCell;

use super::{AccountError, Accounts, throttle, totp};
use crate::invites::rules::normalize_email;

/// A person whose password matched.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Their user id.
    pub user_id: String,
    /// Their login (normalized).
    pub email: String,
    /// They confirmed two-step verification: a code is asked next.
    pub enrolled: bool,
    /// They are not enrolled but an organization they are an active member
    /// of requires two-step verification: they must enroll first.
    pub must_enroll: bool,
}

/// One membership of a person, as the host API tells it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MembershipSummary {
    /// The organization's id.
    pub org: String,
    /// `PENDING`, `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// The role preset of the membership.
    pub role: String,
}

/// Who a host application's user is, once their credentials checked out.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HostIdentity {
    /// Their user id (the Cedar `User` id).
    pub user_id: String,
    /// Their login e-mail.
    pub email: String,
    /// A two-step verification code was checked: what to pass as
    /// `context.mfa`.
    pub mfa: bool,
    /// Their memberships, whatever their status.
    pub memberships: Vec<MembershipSummary>,
}

/// A person with a login.
struct Login {
    user_id: String,
    email: String,
    password_hash: Option<String>,
}

/// A hash of a random password with the real hashes' parameters, computed
/// once on the blocking pool.
async fn dummy_hash() -> &'static str {
    static DUMMY: OnceCell<String> = OnceCell::const_new();
    DUMMY
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
                let salt = SaltString::generate(&mut OsRng);
                let password = crate::invites::token::random_secret();
                argon2::Argon2::default()
                    .hash_password(password.as_bytes(), &salt)
                    .map(|h| h.to_string())
                    .unwrap_or_default()
            })
            .await
            .unwrap_or_default()
        })
        .await
}

impl Accounts {
    /// Checks `email` and `password`, from the client `address` when known.
    /// Refused at once while the account or the address is throttled; a
    /// mismatch counts against both; a match forgets the account's
    /// failures.
    pub async fn check_password(
        &self,
        email: &str,
        password: &str,
        address: Option<IpAddr>,
        now: i64,
    ) -> Result<Verified, AccountError> {
        let email = normalize_email(email);
        let s = self.settings;
        let account_scope = throttle::account(&email);
        let address_scope = address.map(throttle::address);
        throttle::check(
            &self.pool,
            &account_scope,
            s.account_failures,
            s.failure_window_secs,
            now,
        )
        .await?;
        if let Some(scope) = &address_scope {
            throttle::check(
                &self.pool,
                scope,
                s.address_failures,
                s.failure_window_secs,
                now,
            )
            .await?;
        }
        let login = self.login(&email).await?;
        let stored = login.as_ref().and_then(|l| l.password_hash.clone());
        let phc = match &stored {
            Some(phc) => phc.as_str(),
            None => dummy_hash().await,
        };
        let matched = self.service.hashing.verify(password, phc).await? && stored.is_some();
        let Some(login) = login.filter(|_| matched) else {
            self.failed(&account_scope, address_scope.as_deref(), now)
                .await?;
            return Err(AccountError::InvalidCredentials);
        };
        throttle::clear(&self.pool, &account_scope).await?;
        let enrolled = totp::is_enrolled(&self.pool, &login.user_id).await?;
        let must_enroll = !enrolled && self.mfa_required(&login.user_id).await?;
        Ok(Verified {
            user_id: login.user_id,
            email: login.email,
            enrolled,
            must_enroll,
        })
    }

    /// Counts a failure against the account and, when known, the address.
    pub(super) async fn failed(
        &self,
        account_scope: &str,
        address_scope: Option<&str>,
        now: i64,
    ) -> Result<(), AccountError> {
        let window = self.settings.failure_window_secs;
        throttle::record(&self.pool, account_scope, window, now).await?;
        if let Some(scope) = address_scope {
            throttle::record(&self.pool, scope, window, now).await?;
        }
        Ok(())
    }

    /// For a host application: checks `email`, `password` and, for a person
    /// enrolled in two-step verification, `totp` (a code or a recovery
    /// code), under the same throttling and replay rules as the console
    /// (per account only: the caller is the host, not the person's device).
    pub async fn verify_for_host(
        &self,
        email: &str,
        password: &str,
        totp: Option<&str>,
        now: i64,
    ) -> Result<HostIdentity, AccountError> {
        let verified = self.check_password(email, password, None, now).await?;
        let mfa = if verified.enrolled {
            let Some(code) = totp.filter(|c| !c.trim().is_empty()) else {
                return Err(AccountError::TotpRequired);
            };
            self.check_second_step(&verified.user_id, &verified.email, code, now)
                .await?;
            true
        } else {
            false
        };
        let memberships = self.memberships(&verified.user_id).await?;
        Ok(HostIdentity {
            user_id: verified.user_id,
            email: verified.email,
            mfa,
            memberships,
        })
    }

    /// The memberships of `user_id`.
    pub async fn memberships(&self, user_id: &str) -> Result<Vec<MembershipSummary>, AccountError> {
        let rows = sqlx::query(
            "select org_id, status, role from membership where user_id = $1 order by org_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| MembershipSummary {
                org: row.get(0),
                status: row.get(1),
                role: row.get(2),
            })
            .collect())
    }

    /// Whether an organization `user_id` is an active member of requires
    /// two-step verification.
    pub(super) async fn mfa_required(&self, user_id: &str) -> Result<bool, AccountError> {
        let row = sqlx::query(
            "select 1 from membership m join organization o on o.org_id = m.org_id
             where m.user_id = $1 and m.status = 'ACTIVE' and o.require_mfa <> 0 limit 1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// The person whose login is `email` (normalized), if any: a
    /// placeholder has none.
    async fn login(&self, email: &str) -> Result<Option<Login>, AccountError> {
        let row = sqlx::query(
            "select user_id, email, password_hash from app_user
             where email = $1 and invited_email is null",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| Login {
            user_id: row.get(0),
            email: row.get(1),
            password_hash: row.get(2),
        }))
    }
}
