//! The invitation service: organizations, members, invitations with
//! one-time links, and the lifecycle around them.
//!
//! ```text
//!  invite ──▶ membership PENDING + invitation PENDING ──accept──▶ ACTIVE
//!                 │                    ├─ decline ─▶ DECLINED (member stays PENDING)
//!                 │                    ├─ revoke / resend ─▶ REVOKED (resend: a new link)
//!                 │                    └─ time ─▶ EXPIRED (resend gives a new link)
//!  an existing account is added ACTIVE at once and notified (no link)
//!  ACTIVE ⇄ INACTIVE by an administrator; removal deletes the membership
//! ```
//!
//! Every change is authorized through the Cedar policies first (the actor
//! is the principal; nothing is checked in Rust), written with its Cedar
//! projection, audit record and outbox message in one transaction, and the
//! engine's caches are invalidated before the call returns.

pub mod bulk;
pub mod model;
mod project;
pub mod rules;
pub mod service;
mod store;
pub mod token;

pub use model::{InviteState, Level, Permissions, Restrictions, Role, Status};
pub use service::{Actor, InviteService, InviteSettings};

/// Why an invitation-service call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    /// Bad input: names the field and the rule.
    #[error("`{field}`: {message}")]
    Invalid {
        /// The offending field, e.g. `permissions.billing`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The policies deny the actor this action.
    #[error("{message}")]
    Forbidden {
        /// The determining policy ids.
        policies: Vec<String>,
        /// Why, in words (from the policies' `@message` annotations).
        message: String,
    },
    /// The acting user is unknown.
    #[error("unknown acting user `{0}`")]
    UnknownActor(String),
    /// The change conflicts with the current state (e.g. already a member).
    #[error("{0}")]
    Conflict(String),
    /// No such organization, member or invitation.
    #[error("{0}")]
    NotFound(String),
    /// Too many invitations in 24 hours.
    #[error(
        "the organization sent {limit} invitations in the last 24 hours; try again in {retry_after_secs} s"
    )]
    RateLimited {
        /// The configured limit.
        limit: i64,
        /// Seconds until a slot frees.
        retry_after_secs: i64,
    },
    /// An invitation link that is unknown, used, expired, revoked or
    /// declined: one answer for all, so that links cannot be probed (R59).
    #[error("this invitation link is unavailable; ask your administrator for a new invitation")]
    LinkUnavailable,
    /// The service is not available with this schema.
    #[error(
        "the invitation service needs the cedargate schema (entity types User, Organization, Membership)"
    )]
    Unavailable,
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] sqlx::Error),
    /// Projecting rows into Cedar entities failed.
    #[error("entity projection: {0}")]
    Projection(#[from] crate::entities::WriteError),
    /// Anything else internal.
    #[error("{0}")]
    Internal(String),
}

impl InviteError {
    /// An `Invalid` error.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        InviteError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}
