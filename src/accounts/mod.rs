//! Who is signed in: passwords checked against their argon2id hashes,
//! server-side console sessions, throttling of failed attempts (in the
//! database, so every sidecar sharing it counts the same attempts),
//! password reset links, and two-step verification (RFC 6238 TOTP with
//! recovery codes). No HTTP here: the console and the host API call these
//! functions. Time is a parameter (`now`, unix seconds), as in the
//! invitation service.

mod password;
mod reset;
mod session;
mod throttle;
mod totp;

use std::sync::Arc;

use sqlx::AnyPool;

use crate::invites::service::PasswordProblem;
use crate::invites::{InviteError, InviteService};

pub use password::{HostIdentity, MembershipSummary, Verified};
pub use session::{Opened, Session, Stage};
pub use totp::code_at;
pub use totp::{Enrollment, TwoStepStatus};

/// Limits and lifetimes of sign-in.
#[derive(Debug, Clone, Copy)]
pub struct AccountSettings {
    /// A session unused this long ends (seconds; default 30 min).
    pub idle_secs: i64,
    /// A session ends this long after sign-in, used or not (default 12 h).
    pub absolute_secs: i64,
    /// Failed attempts per account within the window before it is
    /// throttled (default 5).
    pub account_failures: i64,
    /// Failed attempts per client address within the window (default 20).
    pub address_failures: i64,
    /// The throttling window (seconds; default 15 min).
    pub failure_window_secs: i64,
    /// How long a password reset link works (seconds; default 1 h).
    pub reset_ttl_secs: i64,
    /// Reset links mailed per account per hour (default 3); further
    /// requests get the same answer and send nothing.
    pub resets_per_hour: i64,
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            idle_secs: 30 * 60,
            absolute_secs: 12 * 60 * 60,
            account_failures: 5,
            address_failures: 20,
            failure_window_secs: 15 * 60,
            reset_ttl_secs: 60 * 60,
            resets_per_hour: 3,
        }
    }
}

/// Why a sign-in call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Unknown e-mail, no password yet or a wrong password: one answer for
    /// all, so that accounts cannot be probed.
    #[error("e-mail or password is wrong")]
    InvalidCredentials,
    /// Too many failed attempts for the account or the address; nothing was
    /// checked.
    #[error("too many failed attempts; try again in {retry_after_secs} s")]
    Throttled {
        /// Seconds until an attempt counts again.
        retry_after_secs: i64,
    },
    /// The person uses two-step verification and sent no code.
    #[error("a two-step verification code is required")]
    TotpRequired,
    /// A wrong, expired or already used code (or recovery code).
    #[error("the two-step verification code is wrong or was already used")]
    InvalidTotp,
    /// A reset link that is unknown, used or expired: one answer for all.
    #[error("this password reset link is unavailable; ask for a new one")]
    ResetLinkUnavailable,
    /// The chosen password breaks the acceptance page's rules.
    #[error("`{}`: {}", .0.field(), .0.describe())]
    Password(PasswordProblem),
    /// Confirming two-step verification without an enrollment in progress,
    /// or enrolling while already enrolled.
    #[error("{0}")]
    Enrollment(&'static str),
    /// The invitation service failed (hashing, its writes).
    #[error(transparent)]
    Service(#[from] InviteError),
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] sqlx::Error),
    /// A TOTP secret could not be built or drawn.
    #[error("two-step verification: {0}")]
    Totp(String),
}

/// Sign-in over the invitation service's people.
#[derive(Debug, Clone)]
pub struct Accounts {
    service: Arc<InviteService>,
    pool: AnyPool,
    settings: AccountSettings,
}

impl Accounts {
    /// Sign-in for the people of `service`, with `settings`.
    pub fn new(service: Arc<InviteService>, settings: AccountSettings) -> Self {
        let pool = service.pool.clone();
        Self {
            service,
            pool,
            settings,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &AccountSettings {
        &self.settings
    }
}
