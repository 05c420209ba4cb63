//! Changing a person's e-mail address, which is their login in every
//! organization they belong to (R71-R74).
//!
//! ```text
//!  administrator asks ──▶ PENDING ──the new address confirms──▶ CONFIRMED (the login changed)
//!                            ├─ a newer request ─▶ SUPERSEDED (its link dead)
//!                            └─ time ─▶ expired (derived from expires_at)
//! ```
//!
//! An administrator asks on a membership: the organization-level question
//! first, then `users.changeEmail` with how many other organizations the
//! person belongs to, which the policies use to keep a manager of one
//! organization from moving a login others rely on. The request queues a
//! confirmation link to the new address (its secret minted when the
//! message is sent, as an invitation's) and a notice to the old one.
//! Confirming asks the policies again, as the requester and on the
//! person's memberships then, and changes the login, its Cedar projection
//! and the audit trail of every organization the person belongs to in one
//! write. Unknown, used, expired and superseded links get one answer.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::Row;

use super::authorize::ADMINISTER_USERS;
use super::change::Change;
use super::email_change_store::{ChangeRow, consume, insert, live, set_login, supersede};
use super::model::{InvitationState, Status};
use super::service::{Actor, InviteService};
use super::store::{self, MembershipRow};
use super::token::{InviteToken, hash_token};
use super::uid::ModelUid;
use super::{Conflict, InviteError, project, rules};
use crate::audit::Event;
use crate::mail::{self, Outgoing, SECRET_PLACEHOLDER};

/// The action asked on the membership, after the organization-level one.
const CHANGE_EMAIL: &str = "users.changeEmail";

/// Attempts of a confirmation whose person's memberships changed between
/// the policies' decision and the write (each attempt decides again).
const CONFIRM_ATTEMPTS: usize = 3;

/// A new address for a member.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeInput {
    /// The new address (compared trimmed and lower-cased).
    pub email: String,
}

/// A change waiting for the new address to confirm it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EmailChangeRequested {
    /// The person.
    pub user_id: String,
    /// The new address, normalized; the login changes only once it confirms.
    pub email: String,
    /// When the confirmation link expires (unix seconds).
    pub expires_at: i64,
}

/// What the confirmation page shows.
#[derive(Debug, Clone, Serialize)]
pub struct EmailChangeView {
    /// The person, "First Last".
    pub name: String,
    /// Their login now.
    pub old_email: String,
    /// Their login once confirmed.
    pub new_email: String,
    /// The organization the change was asked in.
    pub org_name: String,
    /// Who asked, "First Last".
    pub requester: String,
    /// Expiry (unix seconds).
    pub expires_at: i64,
}

/// A confirmed change.
#[derive(Debug, Clone, Serialize)]
pub struct EmailChanged {
    /// The person.
    pub user_id: String,
    /// Their login now.
    pub email: String,
}

impl InviteService {
    /// Asks for `user_id`'s login to become `input.email`. Whoever may not
    /// administer `org_id`'s users is refused before anything of it is
    /// read; then come the organization and the member (404), the address
    /// (422), a member who has not joined yet (409), the policies on this
    /// person (403) and, only to whoever they allow, whether the address is
    /// taken (409). Nothing changes until the new address confirms.
    pub async fn request_email_change(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        input: &EmailChangeInput,
        now: i64,
    ) -> Result<EmailChangeRequested, InviteError> {
        self.authorize_org(actor, ADMINISTER_USERS, org_id, now)
            .await?;
        let attempt = async {
            let mut conn = self.pool.acquire().await?;
            let (_, member) = self.load_member(&mut conn, org_id, user_id).await?;
            let email = self.check_email(&input.email)?;
            if member.status == Status::Pending {
                return Err(Conflict::EmailOfPendingMember {
                    user_id: user_id.to_owned(),
                    org_id: org_id.to_owned(),
                }
                .into());
            }
            let memberships = store::memberships_of_user(&mut conn, user_id).await?;
            drop(conn);
            let context = other_organizations(&memberships, org_id);
            self.authorize_member_with(actor, CHANGE_EMAIL, org_id, user_id, context, now)
                .await?;
            self.write_request(actor, org_id, user_id, email, now).await
        };
        match attempt.await {
            Err(e) => Err(self
                .audit_email_refusal(actor, org_id, user_id, &input.email, e, now)
                .await),
            ok => ok,
        }
    }

    /// The writing half of a request: the change, superseding any pending
    /// one, its two messages and its audit record.
    async fn write_request(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        email: String,
        now: i64,
    ) -> Result<EmailChangeRequested, InviteError> {
        let mut change = self.begin().await?;
        let (org, _) = self.load_member(&mut change, org_id, user_id).await?;
        let Some(user) = store::user_by_id(&mut change, user_id).await? else {
            return Err(super::NotFound::User {
                user_id: user_id.to_owned(),
            }
            .into());
        };
        // R71: one login per person. Asked only now, of whoever may change
        // this person's address, in the words of any taken address.
        if store::user_by_email(&mut change, &email).await?.is_some() {
            return Err(Conflict::EmailTaken { email }.into());
        }
        supersede(&mut change, user_id, now).await?;
        // A hash of a secret nobody will ever hold: the link's secret is
        // minted when its message is sent (see `crate::mail`).
        let unrevealed = InviteToken::generate();
        let row = ChangeRow {
            change_id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.to_owned(),
            org_id: org_id.to_owned(),
            old_email: user.email.clone(),
            new_email: email,
            requested_by: actor.id().to_owned(),
            requested_mfa: actor.mfa,
            expires_at: now.saturating_add(self.settings.ttl_secs),
        };
        insert(&mut change, &row, &unrevealed.hash(), now).await?;
        let requester = self.person_name(&mut change, actor.user_id()).await?;
        let messages = Messages {
            first_name: &user.first_name,
            requester: &requester,
            org_name: &org.name,
            row: &row,
        };
        let key = confirmation_key(user_id);
        let link = messages.confirmation(&self.settings.public_url, self.settings.ttl_secs);
        change.enqueue(now, &link).await?;
        mail::carry_email_change(&mut change, &key, &row.change_id).await?;
        change.enqueue(now, &messages.notice()).await?;
        change
            .audit(
                now,
                Event {
                    before: Some(json!({"email": row.old_email})),
                    after: Some(json!({"email": row.new_email, "expiresAt": row.expires_at})),
                    ..actor.event(
                        Some(org_id),
                        &ModelUid::membership(org_id, user_id),
                        "user.emailChangeRequested",
                    )
                },
            )
            .await?;
        self.commit(change).await?;
        Ok(EmailChangeRequested {
            user_id: row.user_id,
            email: row.new_email,
            expires_at: row.expires_at,
        })
    }

    /// Records a request an input rule refused (a policy refusal is
    /// recorded where it is decided), and answers the refusal.
    async fn audit_email_refusal(
        &self,
        actor: &Actor,
        org_id: &str,
        user_id: &str,
        email: &str,
        refused: InviteError,
        now: i64,
    ) -> InviteError {
        let rule = match &refused {
            InviteError::Invalid { field, message } => format!("{field}: {message}"),
            InviteError::Conflict(c) => c.to_string(),
            _ => return refused,
        };
        let event = Event {
            actor: actor.id(),
            org: Some(org_id),
            target: Some(ModelUid::membership(org_id, user_id).to_string()),
            action: "user.emailChangeRequested",
            outcome: format!("refused: {rule}"),
            after: Some(json!({"email": rules::normalize_email(email)})),
            request_id: actor.request_id.as_deref(),
            ..Event::default()
        };
        match crate::audit::record_alone(&self.pool, now, event).await {
            Ok(()) => refused,
            Err(e) => InviteError::Store(e),
        }
    }

    /// What the confirmation page shows for a live link.
    pub async fn view_email_change(
        &self,
        token: &str,
        now: i64,
    ) -> Result<EmailChangeView, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let Some(row) = live(&mut conn, &hash_token(token), now).await? else {
            tracing::debug!(
                "e-mail change link unavailable (unknown, used, expired or superseded)"
            );
            return Err(InviteError::EmailChangeLinkUnavailable);
        };
        let user = store::user_by_id(&mut conn, &row.user_id).await?;
        let org = store::org_by_id(&mut conn, &row.org_id).await?;
        let requester = self.person_name(&mut conn, Some(&row.requested_by)).await?;
        Ok(EmailChangeView {
            name: user
                .map(|u| format!("{} {}", u.first_name, u.last_name))
                .unwrap_or_default(),
            old_email: row.old_email,
            new_email: row.new_email,
            org_name: org.map(|o| o.name).unwrap_or(row.org_id),
            requester,
            expires_at: row.expires_at,
        })
    }

    /// Confirms the change of a live link: the link is consumed, the
    /// address checked free again, the login changed and re-projected, the
    /// person's live invitations (sent to the old address) revoked, and the
    /// change audited in every organization they belong to, in one write.
    /// The policies are asked again first, as the requester, on the
    /// person's memberships as they are now: a person who joined another
    /// organization meanwhile, or a requester who lost the right, leaves
    /// the login as it is (403).
    pub async fn confirm_email_change(
        &self,
        token: &str,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<EmailChanged, InviteError> {
        let token_hash = hash_token(token);
        let mut org_id = String::new();
        for _ in 0..CONFIRM_ATTEMPTS {
            match self.try_confirm(&token_hash, request_id, now).await? {
                Confirmation::Done(done) => return Ok(done),
                Confirmation::MembershipsChanged(org) => org_id = org,
            }
        }
        Err(Conflict::MembersKeptChanging { org_id }.into())
    }

    /// One attempt of [`InviteService::confirm_email_change`].
    async fn try_confirm(
        &self,
        token_hash: &str,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<Confirmation, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let Some(pending) = live(&mut conn, token_hash, now).await? else {
            return Err(InviteError::EmailChangeLinkUnavailable);
        };
        let memberships = store::memberships_of_user(&mut conn, &pending.user_id).await?;
        drop(conn);
        // The command line asks for no e-mail change, so the requester is
        // a user; should it not be, the policies refuse them.
        let requester = Actor::user(
            &pending.requested_by,
            pending.requested_mfa,
            request_id.map(str::to_owned),
        );
        let context = other_organizations(&memberships, &pending.org_id);
        self.authorize_member_with(
            &requester,
            CHANGE_EMAIL,
            &pending.org_id,
            &pending.user_id,
            context,
            now,
        )
        .await?;

        let mut change = self.begin().await?;
        if store::memberships_of_user(&mut change, &pending.user_id).await? != memberships {
            return Ok(Confirmation::MembershipsChanged(pending.org_id));
        }
        let Some(confirmed) = consume(&mut change, token_hash, now).await? else {
            return Err(InviteError::EmailChangeLinkUnavailable);
        };
        // Taken since the request: the write is dropped, so the link stays
        // live (until it expires or a newer request replaces it).
        if store::user_by_email(&mut change, &confirmed.new_email)
            .await?
            .is_some()
        {
            return Err(Conflict::EmailTaken {
                email: confirmed.new_email,
            }
            .into());
        }
        let user_id = confirmed.user_id.as_str();
        let Some(before) = store::user_by_id(&mut change, user_id).await? else {
            return Err(InviteError::EmailChangeLinkUnavailable);
        };
        set_login(&mut change, user_id, &confirmed.new_email).await?;
        revoke_invitations(&mut change, user_id, now).await?;
        project::user(&mut change, self.schema().schema(), user_id).await?;
        for m in &memberships {
            change
                .audit(
                    now,
                    Event {
                        actor: user_id,
                        org: Some(&m.org_id),
                        target: Some(ModelUid::membership(&m.org_id, user_id).to_string()),
                        action: "user.emailChanged",
                        outcome: "ok".to_owned(),
                        before: Some(json!({"email": before.email})),
                        after: Some(
                            json!({"email": confirmed.new_email, "requestedBy": confirmed.requested_by}),
                        ),
                        request_id,
                    },
                )
                .await?;
        }
        self.commit(change).await?;
        Ok(Confirmation::Done(EmailChanged {
            user_id: confirmed.user_id,
            email: confirmed.new_email,
        }))
    }

    /// "First Last" of `user_id`, for messages and the page.
    async fn person_name(
        &self,
        conn: &mut sqlx::AnyConnection,
        user_id: Option<&str>,
    ) -> Result<String, InviteError> {
        Ok(match user_id {
            Some(id) => store::user_by_id(conn, id)
                .await?
                .map(|u| format!("{} {}", u.first_name, u.last_name))
                .unwrap_or_else(|| "An administrator".to_owned()),
            None => "The registry administrator".to_owned(),
        })
    }
}

/// What became of one attempt at confirming.
enum Confirmation {
    Done(EmailChanged),
    /// The person's memberships changed after the policies decided: decide
    /// again (the organization the change was asked in).
    MembershipsChanged(String),
}

/// The context of `users.changeEmail`: how many organizations besides
/// `org_id` the person of `memberships` belongs to, whatever the status.
fn other_organizations(memberships: &[MembershipRow], org_id: &str) -> Map<String, Value> {
    let others = memberships.iter().filter(|m| m.org_id != org_id).count();
    let mut context = Map::new();
    context.insert("otherOrganizations".to_owned(), json!(others));
    context
}

/// The two messages of a request.
struct Messages<'a> {
    first_name: &'a str,
    requester: &'a str,
    org_name: &'a str,
    row: &'a ChangeRow,
}

impl Messages<'_> {
    /// The link to the new address, its secret left for the mailer to mint.
    /// It replaces an unsent one of an earlier request for the same person.
    fn confirmation(&self, public_url: &str, ttl_secs: i64) -> Outgoing {
        let row = self.row;
        let link = format!(
            "{}/email-change/{SECRET_PLACEHOLDER}",
            public_url.trim_end_matches('/')
        );
        Outgoing {
            to: row.new_email.clone(),
            subject: "Confirm your new e-mail address".to_owned(),
            body: format!(
                "Hello {first},\n\n{requester} ({org}) asked to change the e-mail address you \
                 sign in with from {old} to {new}.\n\n\
                 Open this link to confirm that {new} is yours:\n{link}\n\n\
                 Nothing changes until you confirm. The link works once and expires in {life}. \
                 If you did not expect this, you can ignore this message.\n",
                first = self.first_name,
                requester = self.requester,
                org = self.org_name,
                old = row.old_email,
                new = row.new_email,
                life = lifetime(ttl_secs),
            ),
            invitation_id: None,
            dedupe_key: Some(confirmation_key(&row.user_id)),
        }
    }

    /// The notice to the old address: no link, nothing to do unless the
    /// change is unexpected.
    fn notice(&self) -> Outgoing {
        let row = self.row;
        Outgoing {
            to: row.old_email.clone(),
            subject: "Your sign-in e-mail address is about to change".to_owned(),
            body: format!(
                "Hello {first},\n\n{requester} ({org}) asked to change the e-mail address you \
                 sign in with, {old}, to {new}. The change takes effect only once it is \
                 confirmed from {new}.\n\n\
                 If you did not expect this, contact your administrator.\n",
                first = self.first_name,
                requester = self.requester,
                org = self.org_name,
                old = row.old_email,
                new = row.new_email,
            ),
            invitation_id: None,
            dedupe_key: Some(format!("email-change-notice:{}", row.user_id)),
        }
    }
}

/// The outbox key of a person's confirmation message: one unsent at a
/// time, the newest request's.
fn confirmation_key(user_id: &str) -> String {
    format!("email-change:{user_id}")
}

/// A link's lifetime in words: "7 days", "1 day", "36 hours", "15 minutes".
fn lifetime(secs: i64) -> String {
    let (n, unit) = match secs {
        s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        s => ((s / 60).max(1), "minute"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Revokes the live invitations of `user_id` in every organization and
/// audits each: they were sent to an address that is no longer the login.
async fn revoke_invitations(
    change: &mut Change,
    user_id: &str,
    now: i64,
) -> Result<(), InviteError> {
    let revoked: Vec<String> = sqlx::query(
        "update invitation set state = $1, decided_at = $2 where user_id = $3 and state = $4
         returning org_id",
    )
    .bind(InvitationState::Revoked.as_str())
    .bind(now)
    .bind(user_id)
    .bind(InvitationState::Pending.as_str())
    .fetch_all(&mut ***change)
    .await?
    .into_iter()
    .map(|r| r.get(0))
    .collect();
    for org_id in &revoked {
        change
            .audit(
                now,
                Event {
                    actor: "system",
                    org: Some(org_id),
                    target: Some(ModelUid::membership(org_id, user_id).to_string()),
                    action: "invitation.revoked",
                    outcome: "ok: sent to an address that is no longer this person's login"
                        .to_owned(),
                    ..Event::default()
                },
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_as_people_say_them() {
        assert_eq!(lifetime(7 * 86_400), "7 days");
        assert_eq!(lifetime(86_400), "1 day");
        assert_eq!(lifetime(36 * 3_600), "36 hours");
        assert_eq!(lifetime(15 * 60), "15 minutes");
        assert_eq!(lifetime(30), "1 minute");
    }
}
