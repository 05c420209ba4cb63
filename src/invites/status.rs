//! A member's status: deactivation and reactivation (R36, R39, R44, R62,
//! E15, E25, E26). A reactivation either restores the permissions held
//! before deactivation or starts fresh with a given set; either way the
//! resulting grant is asked of the policies as an edit's is, and meets the
//! input rules in force. Whoever can no longer invite after the change
//! loses the links they sent in the same transaction.

use serde::Deserialize;
use serde_json::Value;

use super::authorize::{ADMINISTER_USERS, Grant};
use super::change::Change;
use super::invite::{Prepared, check_restrictions, parse_grant};
use super::members::{
    MemberView, audit_revoked, is_last_active_manager, member_json, until_members_stable,
};
use super::model::{Role, Status};
use super::service::{Actor, InviteService};
use super::store::{self, MembershipRow};
use super::uid::ModelUid;
use super::{Conflict, InviteError, project};
use crate::audit::Event;

/// A status change (`PUT /v1/orgs/{org}/members/{user}/status`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `ACTIVE` or `INACTIVE`.
    pub status: String,
    /// Reactivation only: `restore` (the default) gives back the
    /// permissions held before deactivation; `fresh` replaces them with
    /// `role`, `permissions` and `restrictions`, as a new invitation would.
    #[serde(default)]
    pub reactivate: Option<String>,
    /// `fresh` only: the role preset (default GeneralUser).
    #[serde(default)]
    pub role: Option<String>,
    /// `fresh` only: module levels over the role's preset.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub permissions: Option<Value>,
    /// `fresh` only: account restrictions (default unrestricted).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub restrictions: Option<Value>,
}

/// What a reactivation does with the member's permissions (R44).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reactivation {
    /// The role, levels and restrictions held before deactivation.
    Restore,
    /// The set the request gives; what it leaves out is None/unrestricted.
    Fresh,
}

impl Reactivation {
    fn as_str(self) -> &'static str {
        match self {
            Reactivation::Restore => "restore",
            Reactivation::Fresh => "fresh",
        }
    }
}

/// A [`StatusChange`] read.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    status: Status,
    /// For a reactivation, the choice.
    reactivation: Option<Reactivation>,
    /// The request named the choice (rather than taking the default).
    named: bool,
}

impl StatusChange {
    /// The fields of a fresh start that the request gives.
    fn fresh_fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        [
            ("role", self.role.is_some()),
            ("permissions", self.permissions.is_some()),
            ("restrictions", self.restrictions.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
    }

    /// Reads the request; a choice where it does not apply is refused
    /// rather than ignored.
    fn read(&self) -> Result<Wanted, InviteError> {
        let status = Status::parse(&self.status)?;
        match status {
            Status::Pending => Err(InviteError::invalid("status", "allowed: ACTIVE, INACTIVE")),
            Status::Inactive => {
                let given = self.reactivate.is_some().then_some("reactivate");
                match given.into_iter().chain(self.fresh_fields()).next() {
                    Some(field) => Err(InviteError::invalid(
                        field,
                        format!("only a reactivation (`\"status\": \"ACTIVE\"`) takes `{field}`"),
                    )),
                    None => Ok(Wanted {
                        status,
                        reactivation: None,
                        named: false,
                    }),
                }
            }
            Status::Active => {
                let choice = match self.reactivate.as_deref().map(str::trim) {
                    None => Reactivation::Restore,
                    Some(c) if c.eq_ignore_ascii_case("restore") => Reactivation::Restore,
                    Some(c) if c.eq_ignore_ascii_case("fresh") => Reactivation::Fresh,
                    Some(c) => {
                        return Err(InviteError::invalid(
                            "reactivate",
                            format!(
                                "`{c}` is not a choice; allowed: restore (the permissions held before deactivation), fresh (the role, permissions and restrictions given)"
                            ),
                        ));
                    }
                };
                if choice == Reactivation::Restore
                    && let Some(field) = self.fresh_fields().next()
                {
                    return Err(InviteError::invalid(
                        field,
                        format!(
                            "restoring gives back the permissions held before deactivation; to give `{field}`, reactivate with `\"reactivate\": \"fresh\"`"
                        ),
                    ));
                }
                Ok(Wanted {
                    status,
                    reactivation: Some(choice),
                    named: self.reactivate.is_some(),
                })
            }
        }
    }
}

impl InviteService {
    /// Sets a member ACTIVE or INACTIVE (R36, R39, R44, E15, E25, E26, R62).
    pub async fn set_status(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        request: &StatusChange,
        now: i64,
    ) -> Result<MemberView, InviteError> {
        self.authorize_org(actor, ADMINISTER_USERS, org_id, now)
            .await?;
        let wanted = request.read()?;
        until_members_stable(org_id, || {
            self.try_set_status(actor, org_id, user_id, request, wanted, now)
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
        request: &StatusChange,
        wanted: Wanted,
        now: i64,
    ) -> Result<Option<MemberView>, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let (_, current) = self.load_member(&mut conn, org_id, user_id).await?;
        let members = store::memberships_of_org(&mut conn, org_id).await?;
        if wanted.status == Status::Active && current.status == Status::Pending {
            return Err(Conflict::NotAccepted {
                user_id: user_id.to_owned(),
            }
            .into());
        }
        if wanted.named && current.status != Status::Inactive {
            return Err(Conflict::NotInactive {
                user_id: user_id.to_owned(),
                org_id: org_id.to_owned(),
                status: current.status,
            }
            .into());
        }
        let granted = match wanted.reactivation {
            Some(choice) => Some(granted(&mut conn, org_id, &current, choice, request).await?),
            None => None,
        };
        // Someone who never accepted an invitation (no password: a new
        // person, or the placeholder of an existing account) has not
        // consented to membership: reactivated, they are invited again,
        // PENDING until they accept a new link (R47, R48).
        let never_accepted = store::user_by_id(&mut conn, user_id)
            .await?
            .is_none_or(|u| !u.has_password || u.placeholder);
        let status = match wanted.status {
            Status::Active if never_accepted => Status::Pending,
            other => other,
        };
        drop(conn);
        let last = wanted.status == Status::Inactive && is_last_active_manager(&members, user_id);
        match &granted {
            // Reactivating grants the set it restores or starts with: asked
            // with the grant in context, as an edit is.
            Some(prepared) => {
                let grant = Grant {
                    action: "users.changeStatus",
                    resource: ModelUid::membership(org_id, user_id),
                    prepared,
                    last_active_manager: Some(last),
                    org_id,
                };
                self.authorize_grant(actor, grant, now).await?;
            }
            None => {
                self.authorize_member(
                    actor,
                    "users.changeStatus",
                    org_id,
                    user_id,
                    Some(last),
                    now,
                )
                .await?;
            }
        }
        let Some((mut change, before)) =
            self.begin_member_change(org_id, user_id, &members).await?
        else {
            return Ok(None);
        };
        let mut after = before.clone();
        after.status = status;
        if let Some(prepared) = &granted {
            after.role = prepared.role.as_str().to_owned();
            after.permissions = prepared.permissions.clone();
            after.restrictions = prepared.restrictions.clone();
        }
        if wanted.status == Status::Inactive {
            // R62: no link may grant access to a deactivated member.
            store::revoke_pending(&mut change, org_id, user_id, now).await?;
        }
        let (action, outcome) = match wanted.reactivation {
            Some(choice) => ("membership.reactivated", format!("ok: {}", choice.as_str())),
            None => ("membership.deactivated", "ok".to_owned()),
        };
        let target = ModelUid::membership(org_id, user_id);
        let event = Event {
            outcome,
            ..actor.event(Some(org_id), &target, action)
        };
        self.record_member_change(&mut change, event, &before, &after, now)
            .await?;
        self.revoke_if_cannot_invite(&mut change, &after, now)
            .await?;
        self.commit(change).await?;
        self.member_view(org_id, user_id, now).await.map(Some)
    }

    /// E26: when the member, as `after` leaves them, can no longer invite
    /// (asked of the policies about that state, as in a verified session),
    /// the invitations they sent are revoked in the same write, so that no
    /// committed state has an inviter without the right and links of theirs
    /// that still work.
    pub(super) async fn revoke_if_cannot_invite(
        &self,
        change: &mut Change,
        after: &MembershipRow,
        now: i64,
    ) -> Result<(), InviteError> {
        // The engine reads committed state only: it is told the member's
        // entities as this write leaves them.
        let as_if = project::user_entities(change, &after.user_id).await?;
        if self.can_invite(&after.org_id, &after.user_id, as_if).await {
            return Ok(());
        }
        let revoked = store::revoke_sent_by(change, &after.org_id, &after.user_id, now).await?;
        audit_revoked(change, &after.org_id, &revoked, now).await
    }

    /// Saves `after` over `before`, audits the change as `event` with both,
    /// and rewrites the member's entities, all in `change`.
    pub(super) async fn record_member_change(
        &self,
        change: &mut Change,
        event: Event<'_>,
        before: &MembershipRow,
        after: &MembershipRow,
        now: i64,
    ) -> Result<(), InviteError> {
        store::save_membership(change, after, now).await?;
        change
            .audit(
                now,
                Event {
                    before: Some(member_json(before)),
                    after: Some(member_json(after)),
                    ..event
                },
            )
            .await?;
        project::user(change, self.schema().schema(), &after.user_id).await
    }
}

/// What a reactivation would grant, checked against the input rules in
/// force: the set held before (whose restrictions may name accounts since
/// deleted) or the one the request gives, with the rest None and
/// unrestricted as in a new invitation. Department and agent designation
/// are the member's, not the grant's: both stay.
async fn granted(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
    current: &MembershipRow,
    choice: Reactivation,
    request: &StatusChange,
) -> Result<Prepared, InviteError> {
    let (role, permissions, restrictions) = match choice {
        Reactivation::Restore => {
            check_restrictions(conn, org_id, &current.restrictions)
                .await
                .map_err(|e| match e {
                    InviteError::Invalid { field, message } => InviteError::Invalid {
                        field,
                        message: format!(
                            "{message}: the restrictions held before deactivation name an account that is gone; reactivate with `\"reactivate\": \"fresh\"` and the restrictions to give"
                        ),
                    },
                    other => other,
                })?;
            (
                Role::parse(&current.role).unwrap_or(Role::GeneralUser),
                current.permissions.clone(),
                current.restrictions.clone(),
            )
        }
        Reactivation::Fresh => {
            let (role, permissions, restrictions) = parse_grant(
                request.role.as_deref(),
                request.permissions.as_ref(),
                request.restrictions.as_ref(),
            )?;
            check_restrictions(conn, org_id, &restrictions).await?;
            (role, permissions, restrictions)
        }
    };
    Ok(Prepared {
        email: String::new(),
        first_name: String::new(),
        last_name: String::new(),
        role,
        permissions,
        restrictions,
        department: current.department_id.clone(),
        agent: current.agent,
        send: false,
    })
}
