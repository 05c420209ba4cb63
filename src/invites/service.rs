//! The invitation service: its type, who acts, and its settings. The
//! operations are in one file per use case, each an `impl InviteService`
//! block: `authorize.rs`, `onboard.rs` (system administrators and
//! organizations), `invite.rs`, `bulk.rs` (and `jobs.rs`, its background
//! jobs), `members.rs`, `departments.rs` and `link.rs` (the invitee's side). Each one asks Cedar whether the
//! actor may act on the organization at all (before reading anything of
//! it), validates the input, asks the detailed question (the grant, the
//! member), then writes rows, their Cedar projection, the audit record and
//! any outbox message in one [`Change`], which invalidates the engine's
//! caches before returning.
//! Time is a parameter (`now`, unix seconds) so tests control it.

use std::sync::Arc;

use sqlx::AnyPool;

use super::change::{Change, RowsOnly};
use super::uid::ModelUid;
use super::{InviteError, rules, store};
use crate::audit::Event;
use crate::engine::Engine;
use crate::entities::EntityStore;
use crate::mail::Mailer;

pub use super::invite::{InviteInput, InviteOutcome};
pub use super::link::{
    Acceptance, Accepted, InvitationView, NewPassword, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
    PasswordProblem,
};
pub use super::members::{EditInput, MemberView};

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct InviteSettings {
    /// How long a link works, in seconds (default 7 days).
    pub ttl_secs: i64,
    /// Invitations per organization per 24 hours.
    pub rate_limit: i64,
    /// Local parts refused as generic mailboxes.
    pub generic_local_parts: Vec<String>,
    /// `false` accepts generic addresses (the list is then unused).
    pub block_generic: bool,
    /// Base URL of the acceptance page in e-mails, e.g. `https://authz.example.com`.
    pub public_url: String,
    /// Bulk invitations writing more rows than this run as a background
    /// job (see `jobs.rs`); smaller ones are written within the request.
    pub bulk_sync_rows: usize,
    /// People sign in elsewhere (an identity provider): accepting needs no
    /// password, and none is set.
    pub accept_without_password: bool,
}

/// Who performs an operation.
#[derive(Debug, Clone)]
pub struct Actor {
    kind: ActorKind,
    /// The actor's session passed two-step verification.
    pub mfa: bool,
    /// The HTTP request id, for the audit trail.
    pub request_id: Option<String>,
}

#[derive(Debug, Clone)]
enum ActorKind {
    /// A user, authorized through the policies.
    User(String),
    /// The operator at the command line: whoever can open the database is
    /// trusted, since the first administrator cannot be invited by anyone.
    Cli,
}

impl Actor {
    /// A user (by id), authorized through the policies.
    pub fn user(user_id: impl Into<String>, mfa: bool, request_id: Option<String>) -> Self {
        Self {
            kind: ActorKind::User(user_id.into()),
            mfa,
            request_id,
        }
    }

    /// The command-line operator.
    pub fn cli() -> Self {
        Self {
            kind: ActorKind::Cli,
            mfa: true,
            request_id: None,
        }
    }

    /// The acting user; `None` for the command-line operator, who is not
    /// authorized through the policies and invites no one in person.
    pub(crate) fn user_id(&self) -> Option<&str> {
        match &self.kind {
            ActorKind::User(id) => Some(id),
            ActorKind::Cli => None,
        }
    }

    /// The actor as the audit trail and `invited_by` name it.
    pub(crate) fn id(&self) -> &str {
        self.user_id().unwrap_or("cli")
    }

    /// A successful audit event done by this actor in this request; the
    /// caller adds what changed.
    pub(crate) fn event<'a>(
        &'a self,
        org: Option<&'a str>,
        target: &ModelUid,
        action: &'a str,
    ) -> Event<'a> {
        Event {
            actor: self.id(),
            org,
            target: Some(target.to_string()),
            action,
            outcome: "ok".to_owned(),
            request_id: self.request_id.as_deref(),
            ..Event::default()
        }
    }
}

/// The invitation service.
#[derive(Debug, Clone)]
pub struct InviteService {
    /// Decides the actors' requests; its snapshot's schema validates the
    /// projection.
    pub(crate) engine: Arc<Engine>,
    /// Where the projection is written and whose caches a commit empties.
    pub(crate) store: Arc<EntityStore>,
    /// The store's pool, for reads outside a write.
    pub(crate) pool: AnyPool,
    /// Woken after commits that queued mail.
    mailer: Option<Arc<Mailer>>,
    pub(crate) settings: Arc<InviteSettings>,
    /// Hashes the passwords chosen at acceptance (see `link.rs`).
    pub(crate) hashing: Arc<super::link::PasswordHashing>,
    /// Wakes the bulk-job worker when a job is queued (see `jobs.rs`).
    pub(crate) jobs_queued: Arc<tokio::sync::Notify>,
}

impl InviteService {
    /// The service deciding with `engine` and writing to `store` (the
    /// engine's store). `mailer` is woken after commits that queued mail.
    pub fn new(
        engine: Arc<Engine>,
        store: Arc<EntityStore>,
        mailer: Option<Arc<Mailer>>,
        settings: InviteSettings,
    ) -> Self {
        let pool = store.pool().clone();
        Self {
            engine,
            store,
            pool,
            mailer,
            settings: Arc::new(settings),
            hashing: Arc::default(),
            jobs_queued: Arc::default(),
        }
    }

    /// Resolves the acting user named by a request (user id or e-mail).
    pub async fn resolve_actor(
        &self,
        name: &str,
        mfa: bool,
        request_id: Option<String>,
    ) -> Result<Actor, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let user = if name.contains('@') {
            store::user_by_email(&mut conn, &rules::normalize_email(name)).await?
        } else {
            store::user_by_id(&mut conn, name.trim()).await?
        };
        match user {
            Some(u) => Ok(Actor::user(u.user_id, mfa, request_id)),
            None => Err(InviteError::UnknownActor {
                name: name.to_owned(),
            }),
        }
    }

    /// Opens a write that may rewrite entities and queue mail.
    pub(crate) async fn begin(&self) -> Result<Change, InviteError> {
        Change::begin(&self.store).await
    }

    /// Opens a write of unprojected rows only (see [`RowsOnly`]).
    pub(crate) async fn begin_rows_only(&self) -> Result<RowsOnly, InviteError> {
        RowsOnly::begin(&self.store).await
    }

    /// Commits `change`, invalidating what it touched and waking the mailer
    /// if it queued mail.
    pub(crate) async fn commit(&self, change: Change) -> Result<(), InviteError> {
        change.commit(&self.store, self.mailer.as_deref()).await
    }

    /// The schema in force, kept alive while borrowed.
    pub(crate) fn schema(&self) -> SchemaRef {
        SchemaRef(self.engine.current())
    }
}

/// Keeps the snapshot alive while its schema is borrowed.
pub(crate) struct SchemaRef(Arc<crate::engine::Loaded>);

impl SchemaRef {
    /// The schema.
    pub(crate) fn schema(&self) -> &cedar_policy::Schema {
        self.0.snapshot.schema()
    }
}
