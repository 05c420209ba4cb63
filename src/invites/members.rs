//! Members: the "Users" tab, permission edits, removal, agent decisions
//! (R33, R53, E15, E25, E26), and the organization's audit trail. Status
//! changes are in `status.rs`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::authorize::{ADMINISTER_USERS, Grant};
use super::change::{Change, Tx};
use super::departments::existing_department;
use super::invite::{Prepared, check_restrictions};
use super::model::{InviteState, Level, Permissions, Restrictions, Role, Status};
use super::service::{Actor, InviteService};
use super::store::{self, InvitationRow, MembershipRow, OrgRow};
use super::uid::ModelUid;
use super::{Conflict, InviteError, NotFound, project};
use crate::audit::{self, Event};
use crate::mail;

/// Attempts of a member change whose organization changed between the
/// policy decision and the write (each attempt decides again).
const MEMBER_CHANGE_ATTEMPTS: usize = 5;

/// Deciding a third-party agent's designation, asked on the organization
/// first, then on the membership.
const APPROVE_AGENTS: &str = "agents.approve";

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

impl InviteService {
    /// The organization and the membership of `user_id` in it.
    pub(crate) async fn load_member(
        &self,
        conn: &mut sqlx::AnyConnection,
        org_id: &str,
        user_id: &str,
    ) -> Result<(OrgRow, MembershipRow), InviteError> {
        let org = existing_org(conn, org_id).await?;
        let Some(m) = store::membership_of(conn, org_id, user_id).await? else {
            return Err(NotFound::Member {
                org_id: org_id.to_owned(),
                user_id: user_id.to_owned(),
            }
            .into());
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
        self.authorize_org(actor, ADMINISTER_USERS, org_id, now)
            .await?;
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
                check_restrictions(&mut conn, org_id, &r).await?;
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
        let grant = Grant {
            action,
            resource: ModelUid::membership(org_id, user_id),
            prepared: &prepared,
            last_active_manager: Some(is_last_active_manager(&members, user_id)),
            org_id,
        };
        self.authorize_grant(actor, grant, now).await?;

        let Some((mut change, before)) =
            self.begin_member_change(org_id, user_id, &members).await?
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
        self.apply_member_change(
            &mut change,
            actor,
            "membership.permissions_changed",
            &before,
            &after,
            now,
        )
        .await?;
        self.revoke_if_cannot_invite(&mut change, &after, now)
            .await?;
        self.commit(change).await?;
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
        self.authorize_org(actor, ADMINISTER_USERS, org_id, now)
            .await?;
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
        let Some((mut change, before)) =
            self.begin_member_change(org_id, user_id, &members).await?
        else {
            return Ok(false);
        };
        // Invitations this member sent die with their right to send them (E26).
        let revoked = store::revoke_sent_by(&mut change, org_id, user_id, now).await?;
        store::delete_membership(&mut change, org_id, user_id).await?;
        let gone = ModelUid::membership(org_id, user_id);
        change.delete_entity(&gone).await?;
        change
            .audit(
                now,
                Event {
                    before: Some(member_json(&before)),
                    ..actor.event(Some(org_id), &gone, "membership.removed")
                },
            )
            .await?;
        audit_revoked(&mut change, org_id, &revoked, now).await?;
        project::user(&mut change, self.schema().schema(), user_id).await?;
        self.commit(change).await?;
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
        self.authorize_org(actor, APPROVE_AGENTS, org_id, now)
            .await?;
        let designation = designation.map(str::trim).filter(|d| !d.is_empty());
        if approve && designation.is_none() {
            return Err(InviteError::invalid(
                "designation",
                "approving an agent needs the reference of the signed Notice of Agent Designation",
            ));
        }
        self.load_member(&mut *self.pool.acquire().await?, org_id, user_id)
            .await?;
        self.authorize_member(actor, APPROVE_AGENTS, org_id, user_id, None, now)
            .await?;
        let mut change = self.begin().await?;
        let (_, before) = self.load_member(&mut change, org_id, user_id).await?;
        if !before.agent {
            return Err(Conflict::NotAnAgent {
                user_id: user_id.to_owned(),
                org_id: org_id.to_owned(),
            }
            .into());
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
        self.apply_member_change(&mut change, actor, action, &before, &after, now)
            .await?;
        self.commit(change).await?;
        self.member_view(org_id, user_id, now).await
    }

    /// Opens the write of a member change the policies allowed on
    /// `members`, with the member as stored now; `None` when another change
    /// (say, to the other manager or to the actor) committed after the
    /// policies decided, so the caller decides again (E15).
    pub(super) async fn begin_member_change(
        &self,
        org_id: &str,
        user_id: &str,
        members: &[MembershipRow],
    ) -> Result<Option<(Change, MembershipRow)>, InviteError> {
        let mut change = self.begin().await?;
        if store::memberships_of_org(&mut change, org_id).await? != members {
            return Ok(None);
        }
        let (_, before) = self.load_member(&mut change, org_id, user_id).await?;
        Ok(Some((change, before)))
    }

    /// Saves `after` over `before`, audits the change and rewrites the
    /// member's entities, all in `change`.
    pub(crate) async fn apply_member_change(
        &self,
        change: &mut Change,
        actor: &Actor,
        action: &str,
        before: &MembershipRow,
        after: &MembershipRow,
        now: i64,
    ) -> Result<(), InviteError> {
        let target = ModelUid::membership(&after.org_id, &after.user_id);
        let event = actor.event(Some(&after.org_id), &target, action);
        self.record_member_change(change, event, before, after, now)
            .await
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

    pub(super) async fn member_view(
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
}

/// Audits invitations revoked because their inviter can no longer invite.
pub(super) async fn audit_revoked(
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
                target: Some(ModelUid::membership(org_id, &inv.user_id).to_string()),
                action: "invitation.revoked",
                outcome: format!("ok: the inviter `{}` can no longer invite", inv.invited_by),
                ..Event::default()
            },
        )
        .await?;
    }
    Ok(())
}

async fn view(
    conn: &mut sqlx::AnyConnection,
    m: MembershipRow,
    now: i64,
) -> Result<MemberView, InviteError> {
    let user = store::user_by_id(conn, &m.user_id).await?;
    let invitation = store::latest_invitation(conn, &m.org_id, &m.user_id).await?;
    let failed = match &invitation {
        Some(inv) => mail::delivery_failed(conn, &inv.invitation_id).await?,
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
            .map(|i| InviteState::derive(i.state, i.expires_at, now)),
        invitation_expires_at: invitation.map(|i| i.expires_at),
        invitation_delivery_failed: failed,
    })
}

/// The organization, or `NotFound`.
pub(crate) async fn existing_org(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
) -> Result<OrgRow, InviteError> {
    store::org_by_id(conn, org_id).await?.ok_or_else(|| {
        NotFound::Organization {
            org_id: org_id.to_owned(),
        }
        .into()
    })
}

/// A member change that kept meeting concurrent changes of the organization.
/// Runs `attempt` until it completes (`Some`): an attempt answers `None`
/// when the organization's members changed after the policies decided, so
/// the decision is taken again on the current members (E15 under races).
pub(super) async fn until_members_stable<T, F, Fut>(
    org_id: &str,
    mut attempt: F,
) -> Result<T, InviteError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, InviteError>>,
{
    for _ in 0..MEMBER_CHANGE_ATTEMPTS {
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
    }
    Err(Conflict::MembersKeptChanging {
        org_id: org_id.to_owned(),
    }
    .into())
}

/// E15: the target is the only ACTIVE, non-agent member with Organization=Manage.
pub(super) fn is_last_active_manager(members: &[MembershipRow], user_id: &str) -> bool {
    let manages = |m: &&MembershipRow| {
        m.status == Status::Active
            && !m.agent
            && m.permissions.level("organization") == Level::Manage
    };
    let managers: Vec<&MembershipRow> = members.iter().filter(manages).collect();
    managers.len() == 1 && managers[0].user_id == user_id
}

/// A membership as the audit trail records it before and after a change.
pub(crate) fn member_json(m: &MembershipRow) -> Value {
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
}
