//! The invitation service's operations. Each one: validate the input,
//! authorize the actor through Cedar, then write rows, their Cedar
//! projection, the audit record and any outbox message in one transaction,
//! and invalidate the engine's caches before returning. Time is a
//! parameter (`now`, unix seconds) so tests control it.

use std::sync::Arc;

use cedar_policy::EntityUid;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::AnyPool;

use super::model::{InviteState, Level, Permissions, Restrictions, Role, Status};
use super::store::{self, InvitationRow, MembershipRow, OrgRow};
use super::token::{InviteToken, hash_token};
use super::{InviteError, project, rules};
use crate::audit::{self, Event};
use crate::engine::{AuthzRequest, Describer, Engine, Shape};
use crate::mail::{self, Mailer, Outgoing};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A day, the invitation rate-limit window.
const DAY_SECS: i64 = 24 * 3600;
/// Password length bounds at acceptance (stated on the acceptance page).
pub const PASSWORD_MIN_CHARS: usize = 10;
/// Longest accepted password.
pub const PASSWORD_MAX_CHARS: usize = 128;
/// Longest first or last name.
const NAME_MAX_CHARS: usize = 100;
/// Attempts of a member change whose organization changed between the
/// policy decision and the write (each attempt decides again).
const MEMBER_CHANGE_ATTEMPTS: usize = 5;

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

    fn id(&self) -> &str {
        match &self.kind {
            ActorKind::User(id) => id,
            ActorKind::Cli => "cli",
        }
    }

    /// A successful audit event done by this actor in this request; the
    /// caller adds what changed.
    fn event<'a>(&'a self, org: Option<&'a str>, target: String, action: &'a str) -> Event<'a> {
        Event {
            actor: self.id(),
            org,
            target: Some(target),
            action,
            outcome: "ok".to_owned(),
            request_id: self.request_id.as_deref(),
            ..Event::default()
        }
    }
}

/// A person to invite.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct InviteInput {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// E-mail address (the login; compared trimmed and lower-cased).
    pub email: String,
    /// Role preset: Owner, AccountAdmin, UserAdmin, Admin, GeneralUser (default).
    #[serde(default)]
    pub role: Option<String>,
    /// Module levels overriding the preset, e.g. `{"billing": "Manage", "uploadGenerations": "Yes"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub permissions: Option<Value>,
    /// Department id in the organization.
    #[serde(default)]
    pub department: Option<String>,
    /// Account restrictions per type, e.g. `{"active": ["a1"], "retirement": []}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub restrictions: Option<Value>,
    /// Third-party agent.
    #[serde(default)]
    pub agent: bool,
    /// `true`: save and send the invitation; `false`: save only.
    #[serde(default = "default_send")]
    pub send: bool,
}

fn default_send() -> bool {
    true
}

/// A change to a member.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct EditInput {
    /// New role preset (its levels become the base of `permissions`).
    #[serde(default)]
    pub role: Option<String>,
    /// Module levels to change.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub permissions: Option<Value>,
    /// New department; `""` removes it.
    #[serde(default)]
    pub department: Option<String>,
    /// New account restrictions (replace the old ones).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub restrictions: Option<Value>,
    /// Third-party agent flag.
    #[serde(default)]
    pub agent: Option<bool>,
}

/// What an invitation did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InviteOutcome {
    /// `invited` (link sent), `saved` (not sent), `resent` (pending member:
    /// new link, old one dead), or `added` (existing account added and notified).
    pub outcome: &'static str,
    /// The person's user id.
    pub user_id: String,
    /// The membership's status.
    pub status: Status,
    /// The live invitation, if one was sent.
    pub invitation_id: Option<String>,
    /// When its link expires (unix seconds).
    pub expires_at: Option<i64>,
}

impl InviteOutcome {
    /// A person added or saved, with no invitation link sent.
    fn without_link(outcome: &'static str, user_id: String, status: Status) -> Self {
        Self {
            outcome,
            user_id,
            status,
            invitation_id: None,
            expires_at: None,
        }
    }
}

/// One member as the "Users" tab shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    /// User id.
    pub user_id: String,
    /// E-mail.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// PENDING, ACTIVE or INACTIVE.
    pub status: Status,
    /// Role preset.
    pub role: String,
    /// Module levels.
    #[schema(value_type = Object)]
    pub permissions: Value,
    /// Account restrictions per type.
    #[schema(value_type = Object)]
    pub restrictions: Value,
    /// Department id.
    pub department: Option<String>,
    /// Third-party agent.
    pub agent: bool,
    /// Agent designation approved.
    pub agent_approved: bool,
    /// Reference of the Notice of Agent Designation.
    pub agent_designation: Option<String>,
    /// State of the newest invitation, if any.
    pub invitation: Option<InviteState>,
    /// Its expiry.
    pub invitation_expires_at: Option<i64>,
    /// Its e-mail could not be delivered (R55).
    pub invitation_delivery_failed: bool,
}

/// What the acceptance page shows.
#[derive(Debug, Clone, Serialize)]
pub struct InvitationView {
    /// The organization's name.
    pub org_name: String,
    /// Who invited, "First Last".
    pub inviter: String,
    /// The invited address.
    pub email: String,
    /// The person has no password yet and must choose one.
    pub needs_password: bool,
    /// Expiry (unix seconds).
    pub expires_at: i64,
}

/// An accepted invitation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The organization joined.
    pub org_id: String,
    /// Its name.
    pub org_name: String,
    /// The user.
    pub user_id: String,
    /// The membership's status now.
    pub status: Status,
}

/// The invitation service.
#[derive(Debug, Clone)]
pub struct InviteService {
    engine: Arc<Engine>,
    pool: AnyPool,
    mailer: Option<Arc<Mailer>>,
    settings: Arc<InviteSettings>,
}

/// Validated invitation input.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: Role,
    pub permissions: Permissions,
    pub restrictions: Restrictions,
    pub department: Option<String>,
    pub agent: bool,
    pub send: bool,
}

impl InviteService {
    /// The service over the engine's database. `mailer` is woken after
    /// commits that queued mail.
    pub fn new(engine: Arc<Engine>, mailer: Option<Arc<Mailer>>, settings: InviteSettings) -> Self {
        let pool = engine.store().pool().clone();
        Self {
            engine,
            pool,
            mailer,
            settings: Arc::new(settings),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &InviteSettings {
        &self.settings
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
            None => Err(InviteError::UnknownActor(name.to_owned())),
        }
    }

    // ------------------------------------------------------------ authorization

    /// Asks the policies whether `actor` may do `action` on `resource`.
    /// A refusal is audited and returned with the policies' own words.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site shape per operation; a struct would only rename them"
    )]
    async fn authorize(
        &self,
        actor: &Actor,
        action: &str,
        resource: Value,
        mut context: Map<String, Value>,
        entities: Vec<Value>,
        org: Option<&str>,
        now: i64,
    ) -> Result<(), InviteError> {
        let ActorKind::User(user_id) = &actor.kind else {
            return Ok(());
        };
        context.insert("mfa".to_owned(), Value::Bool(actor.mfa));
        let request = AuthzRequest {
            principal: json!({"type": "User", "id": user_id}),
            action: json!({"type": "Action", "id": action}),
            resource: resource.clone(),
            context: Value::Object(context),
            entities,
            described_by: Describer::Sidecar,
            shape: Shape::Cedar,
        };
        let decided = self
            .engine
            .decide(&request, actor.request_id.as_deref().unwrap_or(""))
            .await;
        if decided.decision.allow {
            return Ok(());
        }
        let loaded = self.engine.current();
        let snapshot = &loaded.snapshot;
        let d = &decided.decision;
        let message = if !d.errors.is_empty() {
            format!("denied: {}", d.errors.join("; "))
        } else if d.reasons.is_empty() {
            format!(
                "no policy allows `{action}` for this user here (user administration needs an ACTIVE membership with Organization=Manage)"
            )
        } else {
            d.reasons
                .iter()
                .map(|id| match snapshot.annotation(id, "message") {
                    Some(m) => format!("{m} (policy `{id}`)"),
                    None => format!("denied by policy `{id}`"),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let field = d
            .reasons
            .iter()
            .find_map(|id| snapshot.annotation(id, "field"));
        let message = match field {
            Some(field) => format!("`{field}`: {message}"),
            None => message,
        };
        audit::record_alone(
            &self.pool,
            now,
            Event {
                actor: user_id,
                org,
                target: Some(uid_text(&resource)),
                action,
                outcome: format!("denied: {message}"),
                request_id: actor.request_id.as_deref(),
                ..Event::default()
            },
        )
        .await?;
        Err(InviteError::Forbidden {
            policies: d.reasons.clone(),
            message,
        })
    }

    /// Authorizes an action on the organization as a whole.
    async fn authorize_org(
        &self,
        actor: &Actor,
        action: &str,
        org_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        self.authorize(
            actor,
            action,
            json!({"type": "Organization", "id": org_id}),
            Map::new(),
            Vec::new(),
            Some(org_id),
            now,
        )
        .await
    }

    /// Authorizes an action on one membership; `last_active_manager` goes
    /// into the context of the actions whose policies guard the last
    /// manager (E15).
    async fn authorize_member(
        &self,
        actor: &Actor,
        action: &str,
        org_id: &str,
        user_id: &str,
        last_active_manager: Option<bool>,
        now: i64,
    ) -> Result<(), InviteError> {
        let mut context = Map::new();
        if let Some(last) = last_active_manager {
            context.insert("lastActiveManager".to_owned(), Value::Bool(last));
        }
        self.authorize(
            actor,
            action,
            membership_uid_json(org_id, user_id),
            context,
            Vec::new(),
            Some(org_id),
            now,
        )
        .await
    }

    /// Starts a write transaction, unless the database file in use was
    /// deleted or replaced (the write would be lost).
    async fn begin_write(&self) -> Result<Tx, InviteError> {
        self.engine
            .store()
            .check_file()
            .map_err(crate::entities::WriteError::from)?;
        Ok(store::begin_write(&self.pool).await?)
    }

    /// Commits, then drops the cached entities the transaction rewrote and
    /// wakes the mailer if it queued mail: only after the commit, so neither
    /// a cache fill nor the mailer can read the state before it.
    async fn commit(&self, tx: Tx, uids: Vec<EntityUid>, mailed: bool) -> Result<(), InviteError> {
        self.engine
            .store()
            .commit(tx, &uids)
            .await
            .map_err(crate::entities::WriteError::from)?;
        if mailed && let Some(mailer) = &self.mailer {
            mailer.wake();
        }
        Ok(())
    }

    // ------------------------------------------------------------ bootstrap

    /// Creates (or promotes) a system administrator.
    pub async fn create_admin(
        &self,
        actor: &Actor,
        email: &str,
        first_name: &str,
        last_name: &str,
        now: i64,
    ) -> Result<String, InviteError> {
        let email = self.check_email(email)?;
        let (first_name, last_name) = check_names(first_name, last_name)?;
        self.authorize(
            actor,
            "admins.create",
            json!({"type": "Platform", "id": "cedargate"}),
            Map::new(),
            vec![platform_entity()],
            None,
            now,
        )
        .await?;
        let schema = self.schema();
        let mut tx = self.begin_write().await?;
        let user_id = match store::user_by_email(&mut tx, &email).await? {
            Some(u) => {
                sqlx::query("update app_user set system_admin = 1 where user_id = $1")
                    .bind(&u.user_id)
                    .execute(&mut *tx)
                    .await?;
                u.user_id
            }
            None => {
                let id = new_user_id();
                store::insert_user(&mut tx, &id, &email, &first_name, &last_name, true, now)
                    .await?;
                id
            }
        };
        let uids = project::user(&mut tx, schema.schema(), &user_id).await?;
        audit::record(
            &mut tx,
            now,
            Event {
                after: Some(json!({"email": email, "systemAdmin": true})),
                ..actor.event(None, format!("User::\"{user_id}\""), "admin.created")
            },
        )
        .await?;
        self.commit(tx, uids, false).await?;
        Ok(user_id)
    }

    /// Creates an organization and invites its first owner.
    pub async fn create_org(
        &self,
        actor: &Actor,
        org_id: &str,
        name: &str,
        require_mfa: bool,
        owner: InviteInput,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        let org_id = check_org_id(org_id)?;
        let name = check_name("name", name)?;
        let org_entity = json!({
            "uid": {"type": "Organization", "id": org_id},
            "attrs": {"tenant": org_id, "name": name, "requireMfa": require_mfa},
            "parents": [],
        });
        self.authorize(
            actor,
            "organizations.create",
            json!({"type": "Organization", "id": org_id}),
            Map::new(),
            vec![org_entity],
            Some(&org_id),
            now,
        )
        .await?;
        let owner = InviteInput {
            role: Some("Owner".to_owned()),
            permissions: None,
            agent: false,
            ..owner
        };
        let prepared = self.prepare(&org_id, &owner, true).await?;
        let schema = self.schema();
        let mut tx = self.begin_write().await?;
        if store::org_by_id(&mut tx, &org_id).await?.is_some() {
            return Err(InviteError::Conflict(format!(
                "organization `{org_id}` already exists"
            )));
        }
        let org = OrgRow {
            org_id: org_id.clone(),
            name: name.clone(),
            require_mfa,
        };
        store::insert_org(&mut tx, &org, now).await?;
        let mut uids =
            project::organization(&mut tx, schema.schema(), &org_id, &name, require_mfa).await?;
        audit::record(
            &mut tx,
            now,
            Event {
                after: Some(json!({"name": name, "requireMfa": require_mfa})),
                ..actor.event(
                    Some(&org_id),
                    format!("Organization::\"{org_id}\""),
                    "organization.created",
                )
            },
        )
        .await?;
        let (outcome, more, mailed) = self
            .write_invite(&mut tx, actor, &org, prepared, now)
            .await?;
        uids.extend(more);
        self.commit(tx, uids, mailed).await?;
        Ok(outcome)
    }

    fn schema(&self) -> SchemaRef {
        SchemaRef(self.engine.current())
    }

    // ------------------------------------------------------------ invitations

    /// Invites one person into `org` (R45-R57, E1-E5).
    pub async fn invite(
        &self,
        actor: &Actor,
        org_id: &str,
        input: &InviteInput,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        let prepared = self.prepare(org_id, input, false).await?;
        self.authorize_invite(actor, org_id, &prepared, now).await?;
        self.invite_prepared(actor, org_id, prepared, now).await
    }

    /// Writes a validated, authorized invitation.
    pub(crate) async fn invite_prepared(
        &self,
        actor: &Actor,
        org_id: &str,
        prepared: Prepared,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        let mut tx = self.begin_write().await?;
        let org = existing_org(&mut tx, org_id).await?;
        let (outcome, uids, mailed) = self
            .write_invite(&mut tx, actor, &org, prepared, now)
            .await?;
        self.commit(tx, uids, mailed).await?;
        Ok(outcome)
    }

    /// Validates invitation input (no authorization, no writes).
    pub(crate) async fn prepare(
        &self,
        org_id: &str,
        input: &InviteInput,
        owner: bool,
    ) -> Result<Prepared, InviteError> {
        let email = self.check_email(&input.email)?;
        let (first_name, last_name) = check_names(&input.first_name, &input.last_name)?;
        let role = match &input.role {
            Some(r) => Role::parse(r)?,
            None => Role::GeneralUser,
        };
        let permissions = match &input.permissions {
            Some(p) => Permissions::parse(p, Some(&role.preset()))?,
            None => role.preset(),
        };
        let restrictions = match &input.restrictions {
            Some(r) => Restrictions::parse(r)?,
            None => Restrictions::default(),
        };
        let mut conn = self.pool.acquire().await?;
        if !owner {
            self.check_restrictions(&mut conn, org_id, &restrictions)
                .await?;
        }
        let department = match input
            .department
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            Some(d) => Some(existing_department(&mut conn, org_id, d).await?),
            None => None,
        };
        Ok(Prepared {
            email,
            first_name,
            last_name,
            role,
            permissions,
            restrictions,
            department,
            agent: input.agent,
            send: input.send,
        })
    }

    fn check_email(&self, raw: &str) -> Result<String, InviteError> {
        let email = rules::normalize_email(raw);
        rules::validate_email(&email)?;
        if self.settings.block_generic
            && rules::is_generic(&email, &self.settings.generic_local_parts)
        {
            return Err(InviteError::invalid(
                "email",
                format!(
                    "`{email}` is a shared or generic mailbox; invite each person by their own address"
                ),
            ));
        }
        Ok(email)
    }

    /// E19: every restricted account exists and belongs to `org`.
    async fn check_restrictions(
        &self,
        conn: &mut sqlx::AnyConnection,
        org_id: &str,
        restrictions: &Restrictions,
    ) -> Result<(), InviteError> {
        for (ty, ids) in &restrictions.0 {
            for id in ids {
                match store::account_tenant(conn, id).await? {
                    Some(tenant) if tenant == org_id => {}
                    Some(_) => {
                        return Err(InviteError::invalid(
                            &format!("restrictions.{ty}"),
                            format!("account `{id}` belongs to another organization"),
                        ));
                    }
                    None => {
                        return Err(InviteError::invalid(
                            &format!("restrictions.{ty}"),
                            format!("no account `{id}`"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Authorizes inviting the person of `prepared` into `org` with what
    /// they would be granted.
    pub(crate) async fn authorize_invite(
        &self,
        actor: &Actor,
        org_id: &str,
        prepared: &Prepared,
        now: i64,
    ) -> Result<(), InviteError> {
        self.authorize_grant(
            actor,
            "users.invite",
            json!({"type": "Organization", "id": org_id}),
            prepared,
            None,
            org_id,
            now,
        )
        .await
    }

    /// Authorizes a user-administration action that grants permissions.
    #[expect(clippy::too_many_arguments, reason = "the grant's parts")]
    async fn authorize_grant(
        &self,
        actor: &Actor,
        action: &str,
        resource: Value,
        prepared: &Prepared,
        last_active_manager: Option<bool>,
        org_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        let mut context = Map::new();
        context.insert(
            "grant".to_owned(),
            grant(
                &prepared.permissions,
                &prepared.restrictions,
                prepared.agent,
            ),
        );
        if let Some(last) = last_active_manager {
            context.insert("lastActiveManager".to_owned(), Value::Bool(last));
        }
        self.authorize(
            actor,
            action,
            resource,
            context,
            Vec::new(),
            Some(org_id),
            now,
        )
        .await
    }

    /// The writing half of an invitation, inside `tx`.
    async fn write_invite(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        org: &OrgRow,
        p: Prepared,
        now: i64,
    ) -> Result<(InviteOutcome, Vec<EntityUid>, bool), InviteError> {
        let schema = self.schema();
        let existing = store::user_by_email(tx, &p.email).await?;
        let (user_id, has_account) = match &existing {
            Some(u) => (u.user_id.clone(), u.has_password),
            None => {
                let id = new_user_id();
                store::insert_user(tx, &id, &p.email, &p.first_name, &p.last_name, false, now)
                    .await?;
                (id, false)
            }
        };
        if let Some(m) = store::membership_of(tx, &org.org_id, &user_id).await? {
            match m.status {
                Status::Active => {
                    return Err(InviteError::Conflict(format!(
                        "`{}` is already a member of `{}`",
                        p.email, org.org_id
                    )));
                }
                Status::Inactive => {
                    return Err(InviteError::Conflict(format!(
                        "`{}` is an inactive member of `{}`; reactivate them instead of inviting",
                        p.email, org.org_id
                    )));
                }
                // E5: inviting a pending member again is a resend.
                Status::Pending => {
                    let (outcome, uids, mailed) =
                        self.send_link(tx, actor, org, &m, &p.email, now).await?;
                    return Ok((
                        InviteOutcome {
                            outcome: "resent",
                            ..outcome
                        },
                        uids,
                        mailed,
                    ));
                }
            }
        }
        // R48: an existing account is added directly and notified.
        let status = if has_account && p.send {
            Status::Active
        } else {
            Status::Pending
        };
        let membership = MembershipRow {
            org_id: org.org_id.clone(),
            user_id: user_id.clone(),
            status,
            role: p.role.as_str().to_owned(),
            permissions: p.permissions.clone(),
            restrictions: p.restrictions.clone(),
            department_id: p.department.clone(),
            agent: p.agent,
            agent_approved: false,
            agent_designation: None,
            invited_by: Some(actor.id().to_owned())
                .filter(|_| matches!(actor.kind, ActorKind::User(_))),
        };
        store::save_membership(tx, &membership, now).await?;
        audit::record(
            tx,
            now,
            Event {
                after: Some(member_json(&membership)),
                ..actor.event(
                    Some(&org.org_id),
                    membership_target(&org.org_id, &user_id),
                    "membership.added",
                )
            },
        )
        .await?;
        if status == Status::Active {
            mail::enqueue(tx, now, &added_notice(&p.email, &p.first_name, &org.name)).await?;
            let uids = project::user(tx, schema.schema(), &user_id).await?;
            return Ok((
                InviteOutcome::without_link("added", user_id, status),
                uids,
                true,
            ));
        }
        if !p.send {
            let uids = project::user(tx, schema.schema(), &user_id).await?;
            return Ok((
                InviteOutcome::without_link("saved", user_id, status),
                uids,
                false,
            ));
        }
        self.send_link(tx, actor, org, &membership, &p.email, now)
            .await
    }

    /// Revokes any live link of `membership`, creates a new invitation and
    /// queues its e-mail (rate-limited per organization, E23).
    async fn send_link(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        org: &OrgRow,
        membership: &MembershipRow,
        email: &str,
        now: i64,
    ) -> Result<(InviteOutcome, Vec<EntityUid>, bool), InviteError> {
        self.check_rate(tx, &org.org_id, 1, now).await?;
        store::revoke_pending(tx, &org.org_id, &membership.user_id, now).await?;
        let token = InviteToken::generate();
        let invitation = InvitationRow {
            invitation_id: uuid::Uuid::new_v4().to_string(),
            org_id: org.org_id.clone(),
            user_id: membership.user_id.clone(),
            email: email.to_owned(),
            state: "PENDING".to_owned(),
            invited_by: actor.id().to_owned(),
            created_at: now,
            expires_at: now + self.settings.ttl_secs,
        };
        store::insert_invitation(tx, &invitation, &token.hash()).await?;
        let inviter = match &actor.kind {
            ActorKind::User(id) => store::user_by_id(tx, id)
                .await?
                .map(|u| format!("{} {}", u.first_name, u.last_name))
                .unwrap_or_else(|| "An administrator".to_owned()),
            ActorKind::Cli => "The registry administrator".to_owned(),
        };
        let link = format!(
            "{}/invite/{}",
            self.settings.public_url.trim_end_matches('/'),
            token.expose()
        );
        let message = Outgoing {
            to: email.to_owned(),
            subject: format!("Invitation to join {}", org.name),
            body: format!(
                "{inviter} invited you to join {org} on cedargate.\n\n\
                 Open this link to set your password and accept, or to decline:\n{link}\n\n\
                 The link works once and expires in {days} days. If you did not expect \
                 this invitation, you can ignore this message.\n",
                org = org.name,
                days = (self.settings.ttl_secs / DAY_SECS).max(1),
            ),
            invitation_id: Some(invitation.invitation_id.clone()),
        };
        mail::enqueue(tx, now, &message).await?;
        audit::record(
            tx,
            now,
            Event {
                after: Some(json!({"invitation": invitation.invitation_id, "email": email, "expiresAt": invitation.expires_at})),
                ..actor.event(
                    Some(&org.org_id),
                    membership_target(&org.org_id, &membership.user_id),
                    "invitation.created",
                )
            },
        )
        .await?;
        let uids = project::user(tx, self.schema().schema(), &membership.user_id).await?;
        let outcome = InviteOutcome {
            outcome: "invited",
            user_id: membership.user_id.clone(),
            status: membership.status,
            invitation_id: Some(invitation.invitation_id),
            expires_at: Some(invitation.expires_at),
        };
        Ok((outcome, uids, true))
    }

    /// Resends (or, after "save", sends) the invitation of a pending member:
    /// a new link, the old one dead (R51). An existing account is added.
    pub async fn resend(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        self.authorize_member(actor, "invitations.resend", org_id, user_id, None, now)
            .await?;
        let mut tx = self.begin_write().await?;
        let (org, membership) = self.load_member(&mut tx, org_id, user_id).await?;
        if membership.status != Status::Pending {
            return Err(InviteError::Conflict(format!(
                "`{user_id}` is {} in `{org_id}`; only pending members have invitations",
                membership.status
            )));
        }
        let Some(user) = store::user_by_id(&mut tx, user_id).await? else {
            return Err(InviteError::NotFound(format!("no user `{user_id}`")));
        };
        let (outcome, uids, mailed) = if user.has_password {
            let mut m = membership.clone();
            m.status = Status::Active;
            mail::enqueue(
                &mut tx,
                now,
                &added_notice(&user.email, &user.first_name, &org.name),
            )
            .await?;
            let uids = self
                .apply_member_change(&mut tx, actor, "membership.added", &membership, &m, now)
                .await?;
            let outcome = InviteOutcome::without_link("added", user_id.to_owned(), Status::Active);
            (outcome, uids, true)
        } else {
            let (o, uids, mailed) = self
                .send_link(&mut tx, actor, &org, &membership, &user.email, now)
                .await?;
            (
                InviteOutcome {
                    outcome: "resent",
                    ..o
                },
                uids,
                mailed,
            )
        };
        self.commit(tx, uids, mailed).await?;
        Ok(outcome)
    }

    /// Revokes the live invitation of a pending member (R53).
    pub async fn revoke(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        self.authorize_member(actor, "invitations.revoke", org_id, user_id, None, now)
            .await?;
        let mut tx = self.begin_write().await?;
        self.load_member(&mut tx, org_id, user_id).await?;
        if store::revoke_pending(&mut tx, org_id, user_id, now).await? == 0 {
            return Err(InviteError::NotFound(format!(
                "`{user_id}` has no live invitation in `{org_id}`"
            )));
        }
        audit::record(
            &mut tx,
            now,
            actor.event(
                Some(org_id),
                membership_target(org_id, user_id),
                "invitation.revoked",
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `email` already has a membership (any status) in `org`.
    pub(crate) async fn is_member(&self, org_id: &str, email: &str) -> Result<bool, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let Some(user) = store::user_by_email(&mut conn, email).await? else {
            return Ok(false);
        };
        Ok(store::membership_of(&mut conn, org_id, &user.user_id)
            .await?
            .is_some())
    }

    /// E23: a bulk invitation that would cross the 24-hour cap is refused
    /// before anything is sent.
    pub(crate) async fn check_bulk_rate(
        &self,
        org_id: &str,
        n: usize,
        now: i64,
    ) -> Result<(), InviteError> {
        let mut conn = self.pool.acquire().await?;
        self.check_rate(&mut conn, org_id, n as i64, now).await
    }

    /// Refuses `adding` more invitations when they would cross the
    /// organization's cap for the last 24 hours.
    async fn check_rate(
        &self,
        conn: &mut sqlx::AnyConnection,
        org_id: &str,
        adding: i64,
        now: i64,
    ) -> Result<(), InviteError> {
        let (count, oldest) = store::invitations_since(conn, org_id, now - DAY_SECS).await?;
        if count + adding > self.settings.rate_limit {
            let retry_after_secs = oldest
                .map(|o| o + DAY_SECS - now)
                .unwrap_or(DAY_SECS)
                .max(1);
            return Err(InviteError::RateLimited {
                limit: self.settings.rate_limit,
                retry_after_secs,
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------ members

    async fn load_member(
        &self,
        conn: &mut sqlx::AnyConnection,
        org_id: &str,
        user_id: &str,
    ) -> Result<(OrgRow, MembershipRow), InviteError> {
        let org = existing_org(conn, org_id).await?;
        let Some(m) = store::membership_of(conn, org_id, user_id).await? else {
            return Err(InviteError::NotFound(format!(
                "`{user_id}` is not a member of `{org_id}`"
            )));
        };
        Ok((org, m))
    }

    /// Changes a member's role, levels, department, restrictions or agent
    /// flag (for a pending member: edits the pending invitation, R53).
    pub async fn edit_member(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        input: &EditInput,
        now: i64,
    ) -> Result<MemberView, InviteError> {
        until_members_stable(org_id, || {
            self.try_edit_member(actor, org_id, user_id, input, now)
        })
        .await
    }

    /// One attempt of [`InviteService::edit_member`]; `None` when the
    /// organization's members changed after the policies decided.
    async fn try_edit_member(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        input: &EditInput,
        now: i64,
    ) -> Result<Option<MemberView>, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let (_, current) = self.load_member(&mut conn, org_id, user_id).await?;
        let members = store::memberships_of_org(&mut conn, org_id).await?;
        let role = match &input.role {
            Some(r) => Role::parse(r)?,
            None => Role::parse(&current.role).unwrap_or(Role::GeneralUser),
        };
        let base = if input.role.is_some() {
            role.preset()
        } else {
            current.permissions.clone()
        };
        let permissions = match &input.permissions {
            Some(p) => Permissions::parse(p, Some(&base))?,
            None => base,
        };
        let restrictions = match &input.restrictions {
            Some(r) => {
                let r = Restrictions::parse(r)?;
                self.check_restrictions(&mut conn, org_id, &r).await?;
                r
            }
            None => current.restrictions.clone(),
        };
        let department = match input.department.as_deref().map(str::trim) {
            None => current.department_id.clone(),
            Some("") => None,
            Some(d) => Some(existing_department(&mut conn, org_id, d).await?),
        };
        drop(conn);
        let agent = input.agent.unwrap_or(current.agent);
        let prepared = Prepared {
            email: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            role,
            permissions: permissions.clone(),
            restrictions: restrictions.clone(),
            department: department.clone(),
            agent,
            send: false,
        };
        let action = if current.status == Status::Pending {
            "invitations.edit"
        } else {
            "users.editPermissions"
        };
        let last = is_last_active_manager(&members, user_id);
        self.authorize_grant(
            actor,
            action,
            membership_uid_json(org_id, user_id),
            &prepared,
            Some(last),
            org_id,
            now,
        )
        .await?;

        let Some((mut tx, before)) = self.begin_member_change(org_id, user_id, &members).await?
        else {
            return Ok(None);
        };
        let mut after = before.clone();
        after.role = role.as_str().to_owned();
        after.permissions = permissions;
        after.restrictions = restrictions;
        after.department_id = department;
        if agent != before.agent {
            after.agent = agent;
            // A changed designation needs a fresh approval.
            after.agent_approved = false;
        }
        let uids = self
            .apply_member_change(
                &mut tx,
                actor,
                "membership.permissions_changed",
                &before,
                &after,
                now,
            )
            .await?;
        self.commit(tx, uids, false).await?;
        self.revoke_if_cannot_invite(org_id, user_id, now).await?;
        self.member_view(org_id, user_id, now).await.map(Some)
    }

    /// Sets a member ACTIVE or INACTIVE (R36, R39, E15, E25, E26, R62).
    pub async fn set_status(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        status: Status,
        now: i64,
    ) -> Result<MemberView, InviteError> {
        until_members_stable(org_id, || {
            self.try_set_status(actor, org_id, user_id, status, now)
        })
        .await
    }

    /// One attempt of [`InviteService::set_status`]; `None` when the
    /// organization's members changed after the policies decided.
    async fn try_set_status(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        status: Status,
        now: i64,
    ) -> Result<Option<MemberView>, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let (_, current) = self.load_member(&mut conn, org_id, user_id).await?;
        let members = store::memberships_of_org(&mut conn, org_id).await?;
        drop(conn);
        if status == Status::Pending {
            return Err(InviteError::invalid("status", "allowed: ACTIVE, INACTIVE"));
        }
        if status == Status::Active && current.status == Status::Pending {
            return Err(InviteError::Conflict(format!(
                "`{user_id}` has not accepted the invitation yet; a pending member becomes ACTIVE by accepting it"
            )));
        }
        let last = status == Status::Inactive && is_last_active_manager(&members, user_id);
        self.authorize_member(
            actor,
            "users.changeStatus",
            org_id,
            user_id,
            Some(last),
            now,
        )
        .await?;
        let Some((mut tx, before)) = self.begin_member_change(org_id, user_id, &members).await?
        else {
            return Ok(None);
        };
        let mut after = before.clone();
        after.status = status;
        if status == Status::Inactive {
            // R62: no link may grant access to a deactivated member.
            store::revoke_pending(&mut tx, org_id, user_id, now).await?;
        }
        let action = if status == Status::Active {
            "membership.reactivated"
        } else {
            "membership.deactivated"
        };
        let uids = self
            .apply_member_change(&mut tx, actor, action, &before, &after, now)
            .await?;
        self.commit(tx, uids, false).await?;
        self.revoke_if_cannot_invite(org_id, user_id, now).await?;
        self.member_view(org_id, user_id, now).await.map(Some)
    }

    /// Removes a membership (its invitations die with it).
    pub async fn remove_member(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        until_members_stable(org_id, || async {
            let removed = self.try_remove_member(actor, org_id, user_id, now).await?;
            Ok(removed.then_some(()))
        })
        .await
    }

    /// One attempt of [`InviteService::remove_member`]; `false` when the
    /// organization's members changed after the policies decided.
    async fn try_remove_member(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<bool, InviteError> {
        let mut conn = self.pool.acquire().await?;
        self.load_member(&mut conn, org_id, user_id).await?;
        let members = store::memberships_of_org(&mut conn, org_id).await?;
        drop(conn);
        let last = is_last_active_manager(&members, user_id);
        self.authorize_member(actor, "users.remove", org_id, user_id, Some(last), now)
            .await?;
        let Some((mut tx, before)) = self.begin_member_change(org_id, user_id, &members).await?
        else {
            return Ok(false);
        };
        // Invitations this member sent die with their right to send them (E26).
        let revoked = store::revoke_sent_by(&mut tx, org_id, user_id, now).await?;
        store::delete_membership(&mut tx, org_id, user_id).await?;
        let gone = project::membership_uid(org_id, user_id);
        delete_entity(&mut tx, &gone).await?;
        audit::record(
            &mut tx,
            now,
            Event {
                before: Some(member_json(&before)),
                ..actor.event(
                    Some(org_id),
                    membership_target(org_id, user_id),
                    "membership.removed",
                )
            },
        )
        .await?;
        self.audit_revoked(&mut tx, org_id, &revoked, now).await?;
        let mut uids = project::user(&mut tx, self.schema().schema(), user_id).await?;
        uids.push(gone);
        self.commit(tx, uids, false).await?;
        Ok(true)
    }

    /// Approves or rejects a third-party agent's designation (R33).
    pub async fn decide_agent(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        approve: bool,
        designation: Option<&str>,
        now: i64,
    ) -> Result<MemberView, InviteError> {
        let designation = designation.map(str::trim).filter(|d| !d.is_empty());
        if approve && designation.is_none() {
            return Err(InviteError::invalid(
                "designation",
                "approving an agent needs the reference of the signed Notice of Agent Designation",
            ));
        }
        self.authorize_member(actor, "agents.approve", org_id, user_id, None, now)
            .await?;
        let mut tx = self.begin_write().await?;
        let (_, before) = self.load_member(&mut tx, org_id, user_id).await?;
        if !before.agent {
            return Err(InviteError::Conflict(format!(
                "`{user_id}` is not a third-party agent in `{org_id}`"
            )));
        }
        let mut after = before.clone();
        after.agent_approved = approve;
        after.agent_designation = designation
            .map(str::to_owned)
            .or(before.agent_designation.clone());
        let action = if approve {
            "agent.approved"
        } else {
            "agent.rejected"
        };
        let uids = self
            .apply_member_change(&mut tx, actor, action, &before, &after, now)
            .await?;
        self.commit(tx, uids, false).await?;
        self.member_view(org_id, user_id, now).await
    }

    /// E26: when a member can no longer invite (asked of the policies, as
    /// in a verified session), the invitations they sent are revoked.
    async fn revoke_if_cannot_invite(
        &self,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        let request = AuthzRequest {
            principal: json!({"type": "User", "id": user_id}),
            action: json!({"type": "Action", "id": "users.invite"}),
            resource: json!({"type": "Organization", "id": org_id}),
            context: json!({"mfa": true}),
            entities: Vec::new(),
            described_by: Describer::Sidecar,
            shape: Shape::Cedar,
        };
        if self.engine.decide(&request, "").await.decision.allow {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let revoked = store::revoke_sent_by(&mut tx, org_id, user_id, now).await?;
        self.audit_revoked(&mut tx, org_id, &revoked, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_revoked(
        &self,
        tx: &mut Tx,
        org_id: &str,
        revoked: &[InvitationRow],
        now: i64,
    ) -> Result<(), InviteError> {
        for inv in revoked {
            audit::record(
                tx,
                now,
                Event {
                    actor: "system",
                    org: Some(org_id),
                    target: Some(membership_target(org_id, &inv.user_id)),
                    action: "invitation.revoked",
                    outcome: format!("ok: the inviter `{}` can no longer invite", inv.invited_by),
                    ..Event::default()
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Opens the write of a member change the policies allowed on
    /// `members`, with the member as stored now; `None` when another change
    /// (say, to the other manager or to the actor) committed after the
    /// policies decided, so the caller decides again (E15).
    async fn begin_member_change(
        &self,
        org_id: &str,
        user_id: &str,
        members: &[MembershipRow],
    ) -> Result<Option<(Tx, MembershipRow)>, InviteError> {
        let mut tx = self.begin_write().await?;
        if store::memberships_of_org(&mut tx, org_id).await? != members {
            return Ok(None);
        }
        let (_, before) = self.load_member(&mut tx, org_id, user_id).await?;
        Ok(Some((tx, before)))
    }

    /// Saves `after` over `before`, audits the change and rewrites the
    /// member's entities; returns the uids to invalidate after the commit.
    async fn apply_member_change(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        action: &str,
        before: &MembershipRow,
        after: &MembershipRow,
        now: i64,
    ) -> Result<Vec<EntityUid>, InviteError> {
        store::save_membership(tx, after, now).await?;
        audit::record(
            tx,
            now,
            Event {
                before: Some(member_json(before)),
                after: Some(member_json(after)),
                ..actor.event(
                    Some(&after.org_id),
                    membership_target(&after.org_id, &after.user_id),
                    action,
                )
            },
        )
        .await?;
        project::user(tx, self.schema().schema(), &after.user_id).await
    }

    /// The organization's members (the "Users" tab).
    pub async fn list_members(
        &self,
        actor: &Actor,
        org_id: &str,
        now: i64,
    ) -> Result<Vec<MemberView>, InviteError> {
        self.authorize_org(actor, "members.list", org_id, now)
            .await?;
        let mut conn = self.pool.acquire().await?;
        existing_org(&mut conn, org_id).await?;
        let members = store::memberships_of_org(&mut conn, org_id).await?;
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            out.push(view(&mut conn, m, now).await?);
        }
        Ok(out)
    }

    async fn member_view(
        &self,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<MemberView, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let (_, m) = self.load_member(&mut conn, org_id, user_id).await?;
        view(&mut conn, m, now).await
    }

    /// The audit trail of an organization.
    pub async fn audit_trail(
        &self,
        actor: &Actor,
        org_id: &str,
        filter: &audit::Filter,
        now: i64,
    ) -> Result<Vec<audit::Record>, InviteError> {
        self.authorize_org(actor, "audit.read", org_id, now).await?;
        Ok(audit::query(&self.pool, org_id, filter).await?)
    }

    /// Creates or renames a department.
    pub async fn save_department(
        &self,
        actor: &Actor,
        org_id: &str,
        department_id: &str,
        name: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        let department_id = check_org_id(department_id).map_err(|_| {
            InviteError::invalid(
                "department",
                "ids are 1-64 characters of a-z, 0-9, `-` and `_`",
            )
        })?;
        let name = check_name("name", name)?;
        self.authorize_org(actor, "organization.manage", org_id, now)
            .await?;
        let mut tx = self.begin_write().await?;
        existing_org(&mut tx, org_id).await?;
        store::save_department(&mut tx, org_id, &department_id, &name).await?;
        let uids = project::department(
            &mut tx,
            self.schema().schema(),
            org_id,
            &department_id,
            &name,
        )
        .await?;
        audit::record(
            &mut tx,
            now,
            Event {
                after: Some(json!({"name": name})),
                ..actor.event(
                    Some(org_id),
                    department_target(org_id, &department_id),
                    "department.saved",
                )
            },
        )
        .await?;
        self.commit(tx, uids, false).await?;
        Ok(())
    }

    /// Deletes a department; its members keep no department (E29), so they
    /// see no department-only item rather than all of them.
    pub async fn delete_department(
        &self,
        actor: &Actor,
        org_id: &str,
        department_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        self.authorize_org(actor, "organization.manage", org_id, now)
            .await?;
        let mut tx = self.begin_write().await?;
        let Some(members) = store::delete_department(&mut tx, org_id, department_id).await? else {
            return Err(InviteError::NotFound(format!(
                "no department `{department_id}` in `{org_id}`"
            )));
        };
        let mut uids = Vec::new();
        for user_id in &members {
            uids.extend(project::user(&mut tx, self.schema().schema(), user_id).await?);
        }
        let gone = project::department_uid(org_id, department_id);
        delete_entity(&mut tx, &gone).await?;
        uids.push(gone);
        audit::record(
            &mut tx,
            now,
            Event {
                outcome: format!("ok: {} members now have no department", members.len()),
                ..actor.event(
                    Some(org_id),
                    department_target(org_id, department_id),
                    "department.deleted",
                )
            },
        )
        .await?;
        self.commit(tx, uids, false).await?;
        Ok(())
    }

    // ------------------------------------------------------------ the link

    /// What the acceptance page shows for a live link.
    pub async fn view_invitation(
        &self,
        token: &str,
        now: i64,
    ) -> Result<InvitationView, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let Some(inv) = store::live_invitation(&mut conn, &hash_token(token), now).await? else {
            tracing::debug!(
                "invitation link unavailable (unknown, used, expired, revoked or declined)"
            );
            return Err(InviteError::LinkUnavailable);
        };
        let org = store::org_by_id(&mut conn, &inv.org_id).await?;
        let inviter = store::user_by_id(&mut conn, &inv.invited_by).await?;
        let user = store::user_by_id(&mut conn, &inv.user_id).await?;
        Ok(InvitationView {
            org_name: org.map(|o| o.name).unwrap_or(inv.org_id),
            inviter: inviter
                .map(|u| format!("{} {}", u.first_name, u.last_name))
                .unwrap_or_else(|| "The registry administrator".to_owned()),
            email: inv.email,
            needs_password: user.is_none_or(|u| !u.has_password),
            expires_at: inv.expires_at,
        })
    }

    /// Accepts an invitation: consumes the link atomically (two concurrent
    /// accepts: exactly one succeeds, E10), sets the password of a new
    /// account (argon2id), activates the membership, in one transaction.
    pub async fn accept(
        &self,
        token: &str,
        password: Option<&str>,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<Accepted, InviteError> {
        let view = self.view_invitation(token, now).await?;
        let hash = if view.needs_password {
            let password = password.unwrap_or_default();
            let chars = password.chars().count();
            if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars) {
                return Err(InviteError::invalid(
                    "password",
                    format!("use {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"),
                ));
            }
            let password = password.to_owned();
            // Hashing is deliberately slow: keep it off the async workers.
            let hashed = tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|e| InviteError::Internal(e.to_string()))??;
            Some(hashed)
        } else {
            None
        };
        let mut tx = self.begin_write().await?;
        let Some(inv) = store::consume(&mut tx, &hash_token(token), "ACCEPTED", now).await? else {
            return Err(InviteError::LinkUnavailable);
        };
        if let Some(hash) = &hash {
            store::set_password_if_unset(&mut tx, &inv.user_id, hash).await?;
        }
        let (org, before) = self.load_member(&mut tx, &inv.org_id, &inv.user_id).await?;
        let mut after = before.clone();
        if before.status == Status::Pending {
            after.status = Status::Active;
            store::save_membership(&mut tx, &after, now).await?;
        }
        audit::record(
            &mut tx,
            now,
            Event {
                before: Some(member_json(&before)),
                after: Some(member_json(&after)),
                ..invitee_event(&inv, "invitation.accepted", request_id)
            },
        )
        .await?;
        let uids = project::user(&mut tx, self.schema().schema(), &inv.user_id).await?;
        self.commit(tx, uids, false).await?;
        Ok(Accepted {
            org_id: org.org_id,
            org_name: org.name,
            user_id: inv.user_id,
            status: after.status,
        })
    }

    /// Declines an invitation: the link dies, the member stays PENDING until
    /// an administrator removes or re-invites them.
    pub async fn decline(
        &self,
        token: &str,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<(), InviteError> {
        let mut tx = self.begin_write().await?;
        let Some(inv) = store::consume(&mut tx, &hash_token(token), "DECLINED", now).await? else {
            return Err(InviteError::LinkUnavailable);
        };
        audit::record(
            &mut tx,
            now,
            invitee_event(&inv, "invitation.declined", request_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Keeps the snapshot alive while its schema is borrowed.
struct SchemaRef(Arc<crate::engine::Loaded>);

impl SchemaRef {
    fn schema(&self) -> &cedar_policy::Schema {
        self.0.snapshot.schema()
    }
}

async fn view(
    conn: &mut sqlx::AnyConnection,
    m: MembershipRow,
    now: i64,
) -> Result<MemberView, InviteError> {
    let user = store::user_by_id(conn, &m.user_id).await?;
    let invitation = store::latest_invitation(conn, &m.org_id, &m.user_id).await?;
    let failed = match &invitation {
        Some(inv) => sqlx::query(
            "select 1 from outbox where invitation_id = $1 and sent_at is null and attempts >= $2",
        )
        .bind(&inv.invitation_id)
        .bind(mail::MAX_ATTEMPTS)
        .fetch_optional(&mut *conn)
        .await?
        .is_some(),
        None => false,
    };
    let (email, first_name, last_name) = user
        .map(|u| (u.email, u.first_name, u.last_name))
        .unwrap_or_default();
    Ok(MemberView {
        user_id: m.user_id,
        email,
        first_name,
        last_name,
        status: m.status,
        role: m.role,
        permissions: m.permissions.to_json(),
        restrictions: serde_json::to_value(&m.restrictions).unwrap_or_default(),
        department: m.department_id,
        agent: m.agent,
        agent_approved: m.agent_approved,
        agent_designation: m.agent_designation,
        invitation: invitation
            .as_ref()
            .map(|i| InviteState::derive(&i.state, i.expires_at, now)),
        invitation_expires_at: invitation.map(|i| i.expires_at),
        invitation_delivery_failed: failed,
    })
}

async fn existing_org(conn: &mut sqlx::AnyConnection, org_id: &str) -> Result<OrgRow, InviteError> {
    store::org_by_id(conn, org_id)
        .await?
        .ok_or_else(|| InviteError::NotFound(format!("no organization `{org_id}`")))
}

async fn existing_department(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    department: &str,
) -> Result<String, InviteError> {
    if store::department_exists(conn, org_id, department).await? {
        Ok(department.to_owned())
    } else {
        Err(InviteError::invalid(
            "department",
            format!("no department `{department}` in `{org_id}`"),
        ))
    }
}

async fn delete_entity(tx: &mut Tx, uid: &EntityUid) -> Result<(), InviteError> {
    crate::entities::EntityStore::delete_in(tx, std::slice::from_ref(uid))
        .await
        .map_err(|e| crate::entities::WriteError::from(e).into())
}

/// A member change that kept meeting concurrent changes of the organization.
/// Runs `attempt` until it completes (`Some`): an attempt answers `None`
/// when the organization's members changed after the policies decided, so
/// the decision is taken again on the current members (E15 under races).
async fn until_members_stable<T, F, Fut>(org_id: &str, mut attempt: F) -> Result<T, InviteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, InviteError>>,
{
    for _ in 0..MEMBER_CHANGE_ATTEMPTS {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
    }
    Err(InviteError::Conflict(format!(
        "the members of `{org_id}` kept changing during the request; try again"
    )))
}

/// The notice to a person with an account who was added to an organization
/// directly (R48): no link, nothing to accept.
fn added_notice(email: &str, first_name: &str, org_name: &str) -> Outgoing {
    Outgoing {
        to: email.to_owned(),
        subject: format!("You were added to {org_name}"),
        body: format!(
            "Hello {first_name},\n\nYou now have access to {org_name} with your existing account.\n"
        ),
        invitation_id: None,
    }
}

/// E15: the target is the only ACTIVE, non-agent member with Organization=Manage.
fn is_last_active_manager(members: &[MembershipRow], user_id: &str) -> bool {
    let manages = |m: &&MembershipRow| {
        m.status == Status::Active
            && !m.agent
            && m.permissions.level("organization") == Level::Manage
    };
    let managers: Vec<&MembershipRow> = members.iter().filter(manages).collect();
    managers.len() == 1 && managers[0].user_id == user_id
}

fn grant(permissions: &Permissions, restrictions: &Restrictions, agent: bool) -> Value {
    json!({"perms": permissions.to_cedar(), "restrictions": restrictions.to_cedar(), "agent": agent})
}

fn membership_uid_json(org_id: &str, user_id: &str) -> Value {
    json!({"type": "Membership", "id": project::membership_id(org_id, user_id)})
}

fn membership_target(org_id: &str, user_id: &str) -> String {
    format!(
        "Membership::\"{}\"",
        project::membership_id(org_id, user_id)
    )
}

/// The invitee answering their invitation: the link, not an actor header,
/// says who they are.
fn invitee_event<'a>(
    inv: &'a InvitationRow,
    action: &'a str,
    request_id: Option<&'a str>,
) -> Event<'a> {
    Event {
        actor: &inv.user_id,
        org: Some(&inv.org_id),
        target: Some(membership_target(&inv.org_id, &inv.user_id)),
        action,
        outcome: "ok".to_owned(),
        request_id,
        ..Event::default()
    }
}

fn department_target(org_id: &str, department_id: &str) -> String {
    format!("Department::\"{org_id}/{department_id}\"")
}

fn uid_text(uid: &Value) -> String {
    match (
        uid.get("type").and_then(Value::as_str),
        uid.get("id").and_then(Value::as_str),
    ) {
        (Some(t), Some(i)) => format!("{t}::\"{i}\""),
        _ => uid.to_string(),
    }
}

fn member_json(m: &MembershipRow) -> Value {
    json!({
        "status": m.status,
        "role": m.role,
        "permissions": m.permissions.to_json(),
        "restrictions": m.restrictions,
        "department": m.department_id,
        "agent": m.agent,
        "agentApproved": m.agent_approved,
    })
}

fn platform_entity() -> Value {
    json!({"uid": {"type": "Platform", "id": "cedargate"}, "attrs": {"tenant": "platform:cedargate"}, "parents": []})
}

fn new_user_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn check_names(first: &str, last: &str) -> Result<(String, String), InviteError> {
    Ok((
        check_name("first_name", first)?,
        check_name("last_name", last)?,
    ))
}

fn check_name(field: &str, value: &str) -> Result<String, InviteError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(InviteError::invalid(field, "required"));
    }
    if value.chars().count() > NAME_MAX_CHARS || value.chars().any(char::is_control) {
        return Err(InviteError::invalid(
            field,
            format!("at most {NAME_MAX_CHARS} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Organization and department ids: 1-64 of `a-z 0-9 - _`.
fn check_org_id(id: &str) -> Result<String, InviteError> {
    let id = id.trim().to_ascii_lowercase();
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(id)
    } else {
        Err(InviteError::invalid(
            "id",
            "organization ids are 1-64 characters of a-z, 0-9, `-` and `_`",
        ))
    }
}

fn hash_password(password: &str) -> Result<String, InviteError> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| InviteError::Internal(format!("password hashing failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user: &str, status: Status, org_level: Level, agent: bool) -> MembershipRow {
        let mut permissions = Permissions::all(Level::Read, false);
        permissions
            .levels
            .insert("organization".to_owned(), org_level);
        MembershipRow {
            org_id: "acme".to_owned(),
            user_id: user.to_owned(),
            status,
            role: "GeneralUser".to_owned(),
            permissions,
            restrictions: Restrictions::default(),
            department_id: None,
            agent,
            agent_approved: false,
            agent_designation: None,
            invited_by: None,
        }
    }

    #[test]
    fn the_last_manager_is_the_only_active_non_agent_with_organization_manage() {
        let members = vec![
            member("a", Status::Active, Level::Manage, false),
            member("b", Status::Inactive, Level::Manage, false),
            member("c", Status::Active, Level::Manage, true),
            member("d", Status::Active, Level::Read, false),
        ];
        assert!(is_last_active_manager(&members, "a"));
        assert!(!is_last_active_manager(&members, "d"));
        let mut two = members.clone();
        two.push(member("e", Status::Active, Level::Manage, false));
        assert!(!is_last_active_manager(&two, "a"));
    }

    #[test]
    fn passwords_are_stored_as_argon2id_hashes() {
        let hash = hash_password("correct horse battery").unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
    }

    #[test]
    fn organization_ids_are_slugs() {
        assert_eq!(check_org_id(" Acme ").ok().as_deref(), Some("acme"));
        assert!(check_org_id("acme corp").is_err());
        assert!(check_org_id("").is_err());
    }
}
