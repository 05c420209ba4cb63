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
//!
//! Layout: `service.rs` holds the service, its actor and settings; one file
//! per use case adds an `impl InviteService` block (`authorize.rs`,
//! `onboard.rs`, `orgs.rs`, `invite.rs`, `bulk.rs` and `jobs.rs` (its background jobs; `job_store.rs` is their SQL), `members.rs`,
//! `departments.rs`, `link.rs`, `status.rs`, `email_change.rs` (its SQL in `email_change_store.rs`)); `change.rs` is one write transaction and what it owes the
//! caches and the mailer at commit; `store.rs` is the SQL of the service's
//! own tables; `project.rs` and `uid.rs` are their Cedar projection.

mod authorize;
pub mod bulk;
mod change;
pub mod controls;
mod departments;
pub mod email_change;
mod email_change_store;
mod invite;
mod job_store;
pub mod jobs;
mod link;
mod members;
pub mod model;
mod onboard;
pub mod orgs;
mod project;
pub mod rules;
pub mod service;
pub mod status;
mod store;
pub mod token;
mod uid;

pub use model::{InvitationState, InviteState, Level, Permissions, Restrictions, Role, Status};
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
    #[error("unknown acting user `{name}`")]
    UnknownActor {
        /// The user id or e-mail the request named.
        name: String,
    },
    /// The change conflicts with the current state (e.g. already a member).
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// No such organization, member or invitation.
    #[error(transparent)]
    NotFound(#[from] NotFound),
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
    /// An e-mail change link that is unknown, used, expired or superseded:
    /// one answer for all, as for invitation links.
    #[error(
        "this e-mail change link is unavailable; ask your administrator to request the change again"
    )]
    EmailChangeLinkUnavailable,
    /// The service is not available with this schema.
    #[error(
        "the invitation service needs the cedargate schema (entity types User, Organization, Membership)"
    )]
    Unavailable,
    /// The database failed.
    #[error("database: {0}")]
    Store(#[from] sqlx::Error),
    /// Projecting rows into Cedar entities (or opening the write) failed.
    #[error("entity projection: {0}")]
    Projection(#[from] crate::entities::WriteError),
    /// Hashing a new password failed.
    #[error("password hashing failed: {source}")]
    PasswordHash {
        /// argon2's error.
        #[source]
        source: argon2::password_hash::Error,
    },
    /// The pool hashing new passwords was closed (it never is while the
    /// service lives).
    #[error("the password hashing pool is closed")]
    HashingPoolClosed,
    /// The blocking task hashing a new password panicked or was cancelled.
    #[error("the password hashing task did not finish: {source}")]
    HashingTask {
        /// tokio's error.
        #[source]
        source: tokio::task::JoinError,
    },
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

impl From<crate::entities::StoreError> for InviteError {
    fn from(e: crate::entities::StoreError) -> Self {
        InviteError::Projection(e.into())
    }
}

/// What a change conflicts with (HTTP 409).
#[derive(Debug, thiserror::Error)]
pub enum Conflict {
    /// The organization id is taken.
    #[error("organization `{org_id}` already exists")]
    OrganizationExists {
        /// The organization.
        org_id: String,
    },
    /// The person is an ACTIVE member already.
    #[error("`{email}` is already a member of `{org_id}`")]
    AlreadyMember {
        /// Their address.
        email: String,
        /// The organization.
        org_id: String,
    },
    /// The person is an INACTIVE member: reactivation, not an invitation.
    #[error(
        "`{email}` is an inactive member of `{org_id}`; reactivate them instead of inviting: `PUT /v1/orgs/{org_id}/members/{{user}}/status` with `{{\"status\":\"ACTIVE\",\"reactivate\":\"restore\"}}` gives back the permissions they held, `{{\"status\":\"ACTIVE\",\"reactivate\":\"fresh\",\"role\":…,\"permissions\":{{…}},\"restrictions\":{{…}}}}` starts from the set given"
    )]
    InactiveMember {
        /// Their address.
        email: String,
        /// The organization.
        org_id: String,
    },
    /// Only pending members have invitations.
    #[error("`{user_id}` is {status} in `{org_id}`; only pending members have invitations")]
    NotPending {
        /// The member.
        user_id: String,
        /// The organization.
        org_id: String,
        /// Their status.
        status: Status,
    },
    /// A pending member becomes ACTIVE by accepting, not by an administrator.
    #[error(
        "`{user_id}` has not accepted the invitation yet; a pending member becomes ACTIVE by accepting it"
    )]
    NotAccepted {
        /// The member.
        user_id: String,
    },
    /// Only an INACTIVE member is reactivated (R44).
    #[error(
        "`{user_id}` is {status} in `{org_id}`; only an inactive member is reactivated (change an active member's permissions with `PATCH /v1/orgs/{org_id}/members/{user_id}`)"
    )]
    NotInactive {
        /// The member.
        user_id: String,
        /// The organization.
        org_id: String,
        /// Their status.
        status: Status,
    },
    /// The address is already someone's login (R71). Says nothing of whose.
    #[error("`{email}` is already the e-mail address of an account")]
    EmailTaken {
        /// The address.
        email: String,
    },
    /// A pending member has no login of their own yet: the invitation is
    /// revoked and the right address invited instead.
    #[error(
        "`{user_id}` has not accepted the invitation to `{org_id}` yet; revoke it and invite the right address instead"
    )]
    EmailOfPendingMember {
        /// The member.
        user_id: String,
        /// The organization.
        org_id: String,
    },
    /// Only third-party agents have a designation to decide.
    #[error("`{user_id}` is not a third-party agent in `{org_id}`")]
    NotAnAgent {
        /// The member.
        user_id: String,
        /// The organization.
        org_id: String,
    },
    /// Every attempt of a member change met a concurrent change (E15).
    #[error("the members of `{org_id}` kept changing during the request; try again")]
    MembersKeptChanging {
        /// The organization.
        org_id: String,
    },
}

/// What does not exist (HTTP 404).
#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    /// No such organization.
    #[error("no organization `{org_id}`")]
    Organization {
        /// The organization.
        org_id: String,
    },
    /// No such membership.
    #[error("`{user_id}` is not a member of `{org_id}`")]
    Member {
        /// The organization.
        org_id: String,
        /// The user.
        user_id: String,
    },
    /// No such user.
    #[error("no user `{user_id}`")]
    User {
        /// The user.
        user_id: String,
    },
    /// The member has no live invitation.
    #[error("`{user_id}` has no live invitation in `{org_id}`")]
    LiveInvitation {
        /// The organization.
        org_id: String,
        /// The member.
        user_id: String,
    },
    /// No such department.
    #[error("no department `{department_id}` in `{org_id}`")]
    Department {
        /// The organization.
        org_id: String,
        /// The department.
        department_id: String,
    },
    /// No such bulk invitation job in the organization.
    #[error("no bulk invitation job `{job_id}` in `{org_id}`")]
    BulkJob {
        /// The organization.
        org_id: String,
        /// The job.
        job_id: String,
    },
}
