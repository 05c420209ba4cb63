//! Invitations: inviting one person (R45-R57, E1-E5), resending and
//! revoking a link, and the per-organization rate limit (E23).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::authorize::ADMINISTER_USERS;
use super::change::Change;
use super::departments::existing_department;
use super::members::{existing_org, member_json};
use super::model::{InvitationState, Permissions, Restrictions, Role, Status};
use super::onboard::new_user_id;
use super::rules::check_names;
use super::service::{Actor, InviteService};
use super::store::{self, InvitationRow, MembershipRow, OrgRow};
use super::token::InviteToken;
use super::uid::ModelUid;
use super::{Conflict, InviteError, NotFound, project, rules};
use crate::audit::Event;
use crate::entities::EntityStore;
use crate::mail::Outgoing;

/// A day, the invitation rate-limit window.
const DAY_SECS: i64 = 24 * 3600;

/// Inviting, asked on the organization first (no grant yet), then with
/// what the invitation would grant.
pub(crate) const INVITE: &str = "users.invite";

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

/// What an invitation did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InviteOutcome {
    /// `invited` (link sent), `saved` (not sent), or `resent` (pending
    /// member: new link, old one dead); the same whether or not the
    /// address has an account elsewhere.
    pub outcome: &'static str,
    /// The pending member's user id. For an address with an account
    /// elsewhere, an id of its own: the account's id is never revealed,
    /// and the member appears under it once they accept.
    pub user_id: String,
    /// The membership's status.
    pub status: Status,
    /// The live invitation, if one was sent.
    pub invitation_id: Option<String>,
    /// When its link expires (unix seconds).
    pub expires_at: Option<i64>,
}

impl InviteOutcome {
    /// A person saved, with no invitation link sent.
    fn without_link(outcome: &'static str, user_id: String, status: Status) -> Self {
        Self {
            outcome,
            user_id,
            status,
            invitation_id: None,
            expires_at: None,
        }
    }

    /// The same link, reported as a resend (E5, R51).
    fn resent(self) -> Self {
        Self {
            outcome: "resent",
            ..self
        }
    }
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
    /// Invites one person into `org` (R45-R57, E1-E5). Whoever may not
    /// invite into `org` is refused before anything of it is read; whoever
    /// may, learns whether it exists, then what is wrong with the input.
    pub async fn invite(
        &self,
        actor: &Actor,
        org_id: &str,
        input: &InviteInput,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        let attempt = async {
            self.authorize_org(actor, INVITE, org_id, now).await?;
            existing_org(&mut *self.pool.acquire().await?, org_id).await?;
            let prepared = self.prepare(org_id, input).await?;
            self.authorize_invite(actor, org_id, &prepared, now).await?;
            self.invite_prepared(actor, org_id, prepared, now).await
        };
        match attempt.await {
            Err(e) => Err(self
                .audit_refusal(actor, org_id, &input.email, e, now)
                .await),
            ok => ok,
        }
    }

    /// Records an invitation an input rule refused (a policy refusal is
    /// recorded where it is decided), and answers the refusal. The trail
    /// shows every attempt, not only those that reached the policies.
    async fn audit_refusal(
        &self,
        actor: &Actor,
        org_id: &str,
        email: &str,
        refused: InviteError,
        now: i64,
    ) -> InviteError {
        let rule = match &refused {
            InviteError::Invalid { field, message } => format!("{field}: {message}"),
            InviteError::Conflict(c) => c.to_string(),
            InviteError::RateLimited { .. } => refused.to_string(),
            _ => return refused,
        };
        let event = crate::audit::Event {
            actor: actor.id(),
            org: Some(org_id),
            target: Some(rules::normalize_email(email)),
            action: "invitation.created",
            outcome: format!("refused: {rule}"),
            request_id: actor.request_id.as_deref(),
            ..crate::audit::Event::default()
        };
        match crate::audit::record_alone(&self.pool, now, event).await {
            Ok(()) => refused,
            Err(e) => InviteError::from(crate::entities::StoreError::from(e)),
        }
    }

    /// Writes a validated, authorized invitation.
    pub(crate) async fn invite_prepared(
        &self,
        actor: &Actor,
        org_id: &str,
        prepared: Prepared,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        let mut change = self.begin().await?;
        let org = existing_org(&mut change, org_id).await?;
        let outcome = self
            .write_invite(&mut change, actor, &org, prepared, now)
            .await?;
        self.commit(change).await?;
        Ok(outcome)
    }

    /// Validates invitation input (no authorization, no writes).
    pub(crate) async fn prepare(
        &self,
        org_id: &str,
        input: &InviteInput,
    ) -> Result<Prepared, InviteError> {
        let email = self.check_email(&input.email)?;
        let (first_name, last_name) = check_names(&input.first_name, &input.last_name)?;
        let (role, permissions, restrictions) = parse_grant(
            input.role.as_deref(),
            input.permissions.as_ref(),
            input.restrictions.as_ref(),
        )?;
        let mut conn = self.pool.acquire().await?;
        // For an organization's owner too (E19): accounts are the host's,
        // and may be stored before the organization is created.
        check_restrictions(&mut conn, org_id, &restrictions).await?;
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

    /// A normalized, valid address that is not a generic mailbox (unless
    /// the settings allow those).
    pub(crate) fn check_email(&self, raw: &str) -> Result<String, InviteError> {
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

    /// The writing half of an invitation, inside `change`. An address that
    /// already has a user row (an account, or someone invited elsewhere)
    /// is invited under a placeholder of its own, exactly as an unknown
    /// address is under a new user (R48 with consent): the inviter's answer,
    /// member list and audit trail are the same either way and never name
    /// the account; the person joins with their account by accepting.
    pub(crate) async fn write_invite(
        &self,
        change: &mut Change,
        actor: &Actor,
        org: &OrgRow,
        p: Prepared,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        let schema = self.schema();
        let existing = store::user_by_email(change, &p.email).await?;
        if let Some(m) = membership_of_address(change, &org.org_id, &p.email).await? {
            let (email, org_id) = (p.email, org.org_id.clone());
            return match m.status {
                Status::Active => Err(Conflict::AlreadyMember { email, org_id }.into()),
                Status::Inactive => Err(Conflict::InactiveMember { email, org_id }.into()),
                // E5: inviting a pending member again is a resend.
                Status::Pending => Ok(self
                    .send_link(change, actor, org, &m, &email, now)
                    .await?
                    .resent()),
            };
        }
        let user_id = new_user_id();
        if existing.is_some() {
            store::insert_placeholder(change, &user_id, &p.email, &p.first_name, &p.last_name, now)
                .await?;
        } else {
            store::insert_user(
                change,
                &user_id,
                &p.email,
                &p.first_name,
                &p.last_name,
                false,
                now,
            )
            .await?;
        }
        let membership = MembershipRow {
            org_id: org.org_id.clone(),
            user_id: user_id.clone(),
            status: Status::Pending,
            role: p.role.as_str().to_owned(),
            permissions: p.permissions.clone(),
            restrictions: p.restrictions.clone(),
            department_id: p.department.clone(),
            agent: p.agent,
            agent_approved: false,
            agent_designation: None,
            invited_by: actor.user_id().map(str::to_owned),
        };
        store::save_membership(change, &membership, now).await?;
        change
            .audit(
                now,
                Event {
                    after: Some(member_json(&membership)),
                    ..actor.event(
                        Some(&org.org_id),
                        &ModelUid::membership(&org.org_id, &user_id),
                        "membership.added",
                    )
                },
            )
            .await?;
        if !p.send {
            project::user(change, schema.schema(), &user_id).await?;
            return Ok(InviteOutcome::without_link(
                "saved",
                user_id,
                Status::Pending,
            ));
        }
        self.send_link(change, actor, org, &membership, &p.email, now)
            .await
    }

    /// Revokes any live link of `membership`, creates a new invitation and
    /// queues its e-mail (rate-limited per organization, E23).
    async fn send_link(
        &self,
        change: &mut Change,
        actor: &Actor,
        org: &OrgRow,
        membership: &MembershipRow,
        email: &str,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        self.check_rate(change, &org.org_id, 1, now).await?;
        store::revoke_pending(change, &org.org_id, &membership.user_id, now).await?;
        // A hash of a secret nobody will ever hold: the link's secret is
        // minted when the message is sent (see `crate::mail`), so the
        // outbox never holds a working link.
        let unrevealed = InviteToken::generate();
        let invitation = InvitationRow {
            invitation_id: uuid::Uuid::new_v4().to_string(),
            org_id: org.org_id.clone(),
            user_id: membership.user_id.clone(),
            email: email.to_owned(),
            state: InvitationState::Pending,
            invited_by: actor.id().to_owned(),
            created_at: now,
            expires_at: now + self.settings.ttl_secs,
        };
        store::insert_invitation(change, &invitation, &unrevealed.hash()).await?;
        let inviter = match actor.user_id() {
            Some(id) => store::user_by_id(change, id)
                .await?
                .map(|u| format!("{} {}", u.first_name, u.last_name))
                .unwrap_or_else(|| "An administrator".to_owned()),
            None => "The registry administrator".to_owned(),
        };
        // Only the invitee reads this: the inviter's answer is the same.
        let has_account = store::user_by_email(change, email)
            .await?
            .is_some_and(|u| u.has_password);
        let message = self.invitation_message(&invitation, &inviter, &org.name, has_account);
        change.enqueue(now, &message).await?;
        change
            .audit(
                now,
                Event {
                    after: Some(json!({"invitation": invitation.invitation_id, "email": email, "expiresAt": invitation.expires_at})),
                    ..actor.event(
                        Some(&org.org_id),
                        &ModelUid::membership(&org.org_id, &membership.user_id),
                        "invitation.created",
                    )
                },
            )
            .await?;
        project::user(change, self.schema().schema(), &membership.user_id).await?;
        Ok(InviteOutcome {
            outcome: "invited",
            user_id: membership.user_id.clone(),
            status: membership.status,
            invitation_id: Some(invitation.invitation_id),
            expires_at: Some(invitation.expires_at),
        })
    }

    /// The e-mail carrying an invitation's link, its secret left for the
    /// mailer to mint. It replaces any unsent message of an earlier
    /// invitation of the same member: many invitations queued at once
    /// send one message, with the newest link. Someone who has an account
    /// (`has_account`) is told to join with it, without a new password.
    fn invitation_message(
        &self,
        invitation: &InvitationRow,
        inviter: &str,
        org_name: &str,
        has_account: bool,
    ) -> Outgoing {
        let link = format!(
            "{}/invite/{}",
            self.settings.public_url.trim_end_matches('/'),
            crate::mail::SECRET_PLACEHOLDER
        );
        let what = if has_account {
            format!(
                "Open this link to join {org_name} with your existing account (no new password), or to decline"
            )
        } else {
            "Open this link to set your password and accept, or to decline".to_owned()
        };
        Outgoing {
            to: invitation.email.clone(),
            subject: format!("Invitation to join {org_name}"),
            body: format!(
                "{inviter} invited you to join {org_name} on cedargate.\n\n\
                 {what}:\n{link}\n\n\
                 The link works once and expires in {days} days. If you did not expect \
                 this invitation, you can ignore this message.\n",
                days = (self.settings.ttl_secs / DAY_SECS).max(1),
            ),
            invitation_id: Some(invitation.invitation_id.clone()),
            dedupe_key: Some(format!(
                "invitation:{}/{}",
                invitation.org_id, invitation.user_id
            )),
        }
    }

    /// Resends (or, after "save", sends) the invitation of a pending member:
    /// a new link, the old one dead (R51), whether or not the address has
    /// an account.
    pub async fn resend(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<InviteOutcome, InviteError> {
        self.authorize_org(actor, ADMINISTER_USERS, org_id, now)
            .await?;
        self.load_member(&mut *self.pool.acquire().await?, org_id, user_id)
            .await?;
        self.authorize_member(actor, "invitations.resend", org_id, user_id, None, now)
            .await?;
        let mut change = self.begin().await?;
        let (org, membership) = self.load_member(&mut change, org_id, user_id).await?;
        if membership.status != Status::Pending {
            return Err(Conflict::NotPending {
                user_id: user_id.to_owned(),
                org_id: org_id.to_owned(),
                status: membership.status,
            }
            .into());
        }
        let Some(user) = store::user_by_id(&mut change, user_id).await? else {
            return Err(NotFound::User {
                user_id: user_id.to_owned(),
            }
            .into());
        };
        // Someone with an account joins by accepting too (R48 with consent).
        let outcome = self
            .send_link(&mut change, actor, &org, &membership, &user.email, now)
            .await?
            .resent();
        self.commit(change).await?;
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
        self.authorize_org(actor, ADMINISTER_USERS, org_id, now)
            .await?;
        self.load_member(&mut *self.pool.acquire().await?, org_id, user_id)
            .await?;
        self.authorize_member(actor, "invitations.revoke", org_id, user_id, None, now)
            .await?;
        // Invitations have no Cedar projection and revoking sends no mail.
        let mut rows = self.begin_rows_only().await?;
        self.load_member(&mut rows, org_id, user_id).await?;
        if store::revoke_pending(&mut rows, org_id, user_id, now).await? == 0 {
            return Err(NotFound::LiveInvitation {
                org_id: org_id.to_owned(),
                user_id: user_id.to_owned(),
            }
            .into());
        }
        rows.audit(
            now,
            actor.event(
                Some(org_id),
                &ModelUid::membership(org_id, user_id),
                "invitation.revoked",
            ),
        )
        .await?;
        rows.commit().await
    }

    /// `email` already has a membership (any status) in `org`, as the
    /// user who logs in with it or as a placeholder invited at it.
    pub(crate) async fn is_member(&self, org_id: &str, email: &str) -> Result<bool, InviteError> {
        let mut conn = self.pool.acquire().await?;
        Ok(membership_of_address(&mut conn, org_id, email)
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
}

/// The membership in `org_id` of whoever `email` names there: the user who
/// logs in with it, or a placeholder invited at it.
async fn membership_of_address(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    email: &str,
) -> Result<Option<MembershipRow>, InviteError> {
    if let Some(user) = store::user_by_email(conn, email).await?
        && let Some(m) = store::membership_of(conn, org_id, &user.user_id).await?
    {
        return Ok(Some(m));
    }
    Ok(store::placeholder_membership(conn, org_id, email).await?)
}

/// E19: every restricted account exists and belongs to `org` (its stored
/// `Account` entity's `tenant`). Another organization's account is refused
/// in the words of a missing one: the caller has no business knowing it.
pub(crate) async fn check_restrictions(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    restrictions: &Restrictions,
) -> Result<(), InviteError> {
    for (ty, ids) in &restrictions.0 {
        for id in ids {
            let account = ModelUid::account(id).typed();
            let tenant = EntityStore::string_attribute(&mut *conn, &account, "tenant").await?;
            if tenant.as_deref() != Some(org_id) {
                return Err(InviteError::invalid(
                    &format!("restrictions.{ty}"),
                    format!("no account `{id}` in `{org_id}`"),
                ));
            }
        }
    }
    Ok(())
}

/// A grant as a request gives it: what it leaves out is what a new
/// invitation gets (GeneralUser, the role's preset levels, no restriction).
pub(crate) fn parse_grant(
    role: Option<&str>,
    permissions: Option<&Value>,
    restrictions: Option<&Value>,
) -> Result<(Role, Permissions, Restrictions), InviteError> {
    let role = role.map_or(Ok(Role::GeneralUser), Role::parse)?;
    let permissions = match permissions {
        Some(p) => Permissions::parse(p, Some(&role.preset()))?,
        None => role.preset(),
    };
    let restrictions = restrictions.map_or(Ok(Restrictions::default()), Restrictions::parse)?;
    Ok((role, permissions, restrictions))
}
