//! The invitee's side of a link: what the acceptance page shows, accepting
//! (with a new password for a new account) and declining. The link, not an
//! actor header, says who the invitee is.

use std::num::NonZeroUsize;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::change::{Change, RowsOnly};
use super::members::member_json;
use super::model::{InvitationState, Status};
use super::service::InviteService;
use super::store::{self, InvitationRow, MembershipRow};
use super::token::{hash_token, random_secret};
use super::uid::ModelUid;
use super::{Conflict, InviteError, project};
use crate::audit::Event;
use crate::entities::EntityStore;

/// Password length bounds at acceptance (stated on the acceptance page).
pub const PASSWORD_MIN_CHARS: usize = 10;
/// Longest accepted password.
pub const PASSWORD_MAX_CHARS: usize = 128;

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

/// The password an invitee chose when accepting. It counts only when they
/// have no password yet; otherwise it is ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewPassword<'a> {
    /// The password.
    pub password: Option<&'a str>,
    /// The acceptance page's second entry, which must match; `None` when
    /// the caller asks for one entry only (the API).
    pub confirmation: Option<Option<&'a str>>,
}

impl NewPassword<'_> {
    /// What is wrong with the choice, whoever makes it.
    pub(crate) fn problem(&self) -> Option<PasswordProblem> {
        if self
            .confirmation
            .is_some_and(|confirmation| confirmation != self.password)
        {
            return Some(PasswordProblem::Differs);
        }
        let chars = self.password.unwrap_or_default().chars().count();
        (!(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&chars))
            .then_some(PasswordProblem::Length)
    }
}

/// Why a chosen password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    /// The two entries differ.
    Differs,
    /// Too short or too long.
    Length,
}

impl PasswordProblem {
    /// The field at fault.
    pub fn field(self) -> &'static str {
        match self {
            PasswordProblem::Differs => "password_confirm",
            PasswordProblem::Length => "password",
        }
    }

    /// What is wrong, for people.
    pub fn describe(self) -> String {
        match self {
            PasswordProblem::Differs => "the two passwords differ".to_owned(),
            PasswordProblem::Length => {
                format!("use {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters")
            }
        }
    }

    /// As an input error.
    pub fn error(self) -> InviteError {
        InviteError::invalid(self.field(), self.describe())
    }
}

/// What became of an acceptance.
#[derive(Debug)]
pub enum Acceptance {
    /// The invitee joined.
    Accepted(Accepted),
    /// The link is live but the invitee must choose a (valid) password:
    /// nothing changed, and the link still works. `view` is what the page
    /// shows again.
    PasswordRefused {
        /// The invitation as the page shows it.
        view: InvitationView,
        /// What is wrong with the password.
        problem: PasswordProblem,
    },
}

impl Acceptance {
    /// The accepted invitation, or the password refusal as an error.
    pub fn into_result(self) -> Result<Accepted, InviteError> {
        match self {
            Acceptance::Accepted(accepted) => Ok(accepted),
            Acceptance::PasswordRefused { problem, .. } => Err(problem.error()),
        }
    }
}

impl InviteService {
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
        let needs_password =
            !joiner(&mut conn, &inv).await?.has_password && !self.settings.accept_without_password;
        invitation_view(&mut conn, inv, needs_password).await
    }

    /// Accepts an invitation. The link is claimed first (a short write; two
    /// concurrent accepts: exactly one gets it, E10, and the others are
    /// answered at once that it is unavailable), then the new password of
    /// a new account is hashed (argon2id, in the bounded pool, with no lock
    /// held), then one transaction consumes the claimed link, sets the
    /// password and activates the membership. When the invitee needs a
    /// password and the choice is refused, the claim is given back, so the
    /// link still works. Someone who has an account joins with it: a
    /// password sent along is ignored (never set over theirs), and a
    /// membership held by a placeholder moves to the account (R48, R60).
    pub async fn accept(
        &self,
        token: &str,
        choice: NewPassword<'_>,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<Acceptance, InviteError> {
        let token_hash = hash_token(token);
        let (claim, needs_password) = self.claim_link(&token_hash, now).await?;
        // With an external identity provider nobody needs a password here.
        let needs_password = needs_password && !self.settings.accept_without_password;
        let hash = match (needs_password, choice.problem(), choice.password) {
            // Someone with an account keeps their password.
            (false, ..) => None,
            (true, None, Some(password)) => Some(self.hashing.hash(password).await?),
            // A missing password is too short (`problem` says so already).
            (true, problem, _) => {
                let problem = problem.unwrap_or(PasswordProblem::Length);
                return self.refuse_password(claim, problem).await;
            }
        };
        let mut change = self.begin().await?;
        let consumed = store::consume_claimed(
            &mut change,
            &token_hash,
            &claim.id,
            InvitationState::Accepted,
            now,
        )
        .await?;
        let Some(inv) = consumed else {
            return Err(InviteError::LinkUnavailable);
        };
        let joiner = joiner(&mut change, &inv).await?;
        match &hash {
            // A no-op when the person set a password meanwhile (accepting
            // another organization's link).
            Some(hash) => {
                store::set_password_if_unset(&mut change, &joiner.user_id, hash).await?;
            }
            // Between the claim and now the address lost its account (its
            // e-mail changed): nobody joins without a password.
            None if !joiner.has_password && !self.settings.accept_without_password => {
                drop(change);
                return self.refuse_password(claim, PasswordProblem::Length).await;
            }
            None => {}
        }
        if joiner.promote {
            store::promote_placeholder(&mut change, &joiner.user_id).await?;
        }
        let (org, before) = self
            .load_member(&mut change, &inv.org_id, &inv.user_id)
            .await?;
        let mut after = MembershipRow {
            user_id: joiner.user_id.clone(),
            ..before.clone()
        };
        if before.status == Status::Pending {
            after.status = Status::Active;
        }
        let mut event = invitee_event(&inv, &joiner.user_id, "invitation.accepted", request_id);
        if joiner.user_id == inv.user_id {
            store::save_membership(&mut change, &after, now).await?;
        } else {
            self.move_to_account(&mut change, &after, &inv.user_id, now)
                .await?;
            event.outcome = format!(
                "ok: joined with an existing account; the pending member `{}` is now `{}`",
                inv.user_id, joiner.user_id
            );
        }
        change
            .audit(
                now,
                Event {
                    before: Some(member_json(&before)),
                    after: Some(member_json(&after)),
                    ..event
                },
            )
            .await?;
        project::user(&mut change, self.schema().schema(), &joiner.user_id).await?;
        self.commit(change).await?;
        claim.consumed();
        Ok(Acceptance::Accepted(Accepted {
            org_id: org.org_id,
            org_name: org.name,
            user_id: joiner.user_id,
            status: after.status,
        }))
    }

    /// Gives the claim back and answers that a (valid) password is needed:
    /// nothing changed, and the link still works.
    async fn refuse_password(
        &self,
        claim: LinkClaim,
        problem: PasswordProblem,
    ) -> Result<Acceptance, InviteError> {
        let inv = claim.inv.clone();
        claim.give_back().await?;
        let mut conn = self.pool.acquire().await?;
        let view = invitation_view(&mut conn, inv, true).await?;
        Ok(Acceptance::PasswordRefused { view, problem })
    }

    /// Moves the membership a placeholder held (`placeholder_id`) to the
    /// account of `to`, in the acceptance's transaction: the account's
    /// membership and entities are written, the placeholder's deleted, so
    /// the next decision sees the account as the member and the
    /// placeholder as nobody. The account's other memberships are only
    /// projected again, unchanged.
    async fn move_to_account(
        &self,
        change: &mut Change,
        to: &MembershipRow,
        placeholder_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        // Only possible if the account changed address meanwhile; the link
        // then stays as it was.
        if let Some(m) = store::membership_of(change, &to.org_id, &to.user_id).await? {
            let email = store::user_by_id(change, &m.user_id)
                .await?
                .map(|u| u.email)
                .unwrap_or_default();
            return Err(Conflict::AlreadyMember {
                email,
                org_id: to.org_id.clone(),
            }
            .into());
        }
        store::move_placeholder_membership(change, to, placeholder_id, now).await?;
        change
            .delete_entity(&ModelUid::membership(&to.org_id, placeholder_id))
            .await?;
        change.delete_entity(&ModelUid::user(placeholder_id)).await
    }

    /// Claims the live link of `token_hash` for one accept, and says
    /// whether its invitee has no password yet. Unavailable while another
    /// accept holds it.
    async fn claim_link(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<(LinkClaim, bool), InviteError> {
        let id = random_secret();
        let mut rows = self.begin_rows_only().await?;
        let claimed = store::claim(
            &mut rows,
            token_hash,
            &id,
            now,
            now.saturating_add(CLAIM_LEASE_SECS),
        )
        .await?;
        let Some(inv) = claimed else {
            return Err(InviteError::LinkUnavailable);
        };
        let joiner = joiner(&mut rows, &inv).await?;
        rows.commit().await?;
        let claim = LinkClaim {
            id,
            inv,
            store: Some(self.store.clone()),
        };
        Ok((claim, !joiner.has_password))
    }

    /// Declines an invitation: the link dies, the member stays PENDING until
    /// an administrator removes or re-invites them.
    pub async fn decline(
        &self,
        token: &str,
        request_id: Option<&str>,
        now: i64,
    ) -> Result<(), InviteError> {
        // The membership is unchanged and nothing is mailed: only the
        // invitation's row and the audit trail are written.
        let mut rows = self.begin_rows_only().await?;
        let consumed = store::consume(
            &mut rows,
            &hash_token(token),
            InvitationState::Declined,
            now,
        )
        .await?;
        let Some(inv) = consumed else {
            return Err(InviteError::LinkUnavailable);
        };
        let event = invitee_event(&inv, &inv.user_id, "invitation.declined", request_id);
        rows.audit(now, event).await?;
        rows.commit().await
    }
}

/// The page's view of the invitation `inv`.
async fn invitation_view(
    conn: &mut sqlx::AnyConnection,
    inv: InvitationRow,
    needs_password: bool,
) -> Result<InvitationView, InviteError> {
    let org = store::org_by_id(conn, &inv.org_id).await?;
    let inviter = store::user_by_id(conn, &inv.invited_by).await?;
    Ok(InvitationView {
        org_name: org.map(|o| o.name).unwrap_or(inv.org_id),
        inviter: inviter
            .map(|u| format!("{} {}", u.first_name, u.last_name))
            .unwrap_or_else(|| "The registry administrator".to_owned()),
        email: inv.email,
        needs_password,
        expires_at: inv.expires_at,
    })
}

/// Who joins when the link of `inv` is accepted.
struct Joiner {
    /// The user who becomes the member.
    user_id: String,
    /// They have a password already (and keep it).
    has_password: bool,
    /// The invitation's placeholder becomes the account of its address,
    /// which no user holds any more.
    promote: bool,
}

/// Who joins by accepting `inv`: its user; for a placeholder (the address
/// had a user row when invited), whoever holds the invited address now,
/// since the invitation is bound to the address (R58), or the placeholder
/// itself, as a new account, when nobody does.
async fn joiner(
    conn: &mut sqlx::AnyConnection,
    inv: &InvitationRow,
) -> Result<Joiner, InviteError> {
    let invited = store::user_by_id(conn, &inv.user_id).await?;
    if invited.as_ref().is_some_and(|u| u.placeholder) {
        if let Some(account) = store::user_by_email(conn, &inv.email).await? {
            return Ok(Joiner {
                user_id: account.user_id,
                has_password: account.has_password,
                promote: false,
            });
        }
        return Ok(Joiner {
            user_id: inv.user_id.clone(),
            has_password: false,
            promote: true,
        });
    }
    Ok(Joiner {
        user_id: inv.user_id.clone(),
        has_password: invited.is_some_and(|u| u.has_password),
        promote: false,
    })
}

/// The invitee `user_id` answering their invitation: the link, not an
/// actor header, says who they are.
fn invitee_event<'a>(
    inv: &'a InvitationRow,
    user_id: &'a str,
    action: &'a str,
    request_id: Option<&'a str>,
) -> Event<'a> {
    Event {
        actor: user_id,
        org: Some(&inv.org_id),
        target: Some(ModelUid::membership(&inv.org_id, user_id).to_string()),
        action,
        outcome: "ok".to_owned(),
        request_id,
        ..Event::default()
    }
}

/// How long an accept's claim on its link holds. Longer than an answer may
/// take (the request time limit is 10 s by default); short, because a link
/// whose accept died between claiming and finishing (a crash) stays
/// unavailable until then. An accept that fails or is cancelled (time
/// limit, client gone) gives its claim back at once.
const CLAIM_LEASE_SECS: i64 = 30;

/// An accept's hold on its link, from the claim to the commit. Dropped
/// unconsumed (an error, a cancelled request), it gives the claim back.
struct LinkClaim {
    /// The claimant's random id.
    id: String,
    /// The invitation as claimed.
    inv: InvitationRow,
    /// Where to give the claim back; `None` once consumed or given back.
    store: Option<Arc<EntityStore>>,
}

impl LinkClaim {
    /// Gives the claim back now: the link works again when this returns.
    async fn give_back(mut self) -> Result<(), InviteError> {
        match self.store.take() {
            Some(store) => release(&store, &self.inv.invitation_id, &self.id).await,
            None => Ok(()),
        }
    }

    /// The claimed link was consumed (the claim went with it).
    fn consumed(mut self) {
        self.store = None;
    }
}

impl Drop for LinkClaim {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        // Drop cannot wait: a task gives the claim back; without a runtime
        // (shutting down) the lease ends it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (invitation_id, id) = (self.inv.invitation_id.clone(), self.id.clone());
        runtime.spawn(async move {
            if let Err(e) = release(&store, &invitation_id, &id).await {
                tracing::warn!(error = %e, "cannot give an invitation link's claim back; its lease will end");
            }
        });
    }
}

/// Gives the claim `claim_id` on `invitation_id` back, if it still holds.
async fn release(
    store: &EntityStore,
    invitation_id: &str,
    claim_id: &str,
) -> Result<(), InviteError> {
    let mut rows = RowsOnly::begin(store).await?;
    store::release_claim(&mut rows, invitation_id, claim_id).await?;
    rows.commit().await
}

/// Hashes the passwords chosen at acceptance on tokio's blocking pool, at
/// most one per core at a time: argon2 is deliberately slow, and more
/// hashes at once would only make every one of them late. Counts the
/// hashes computed.
#[derive(Debug)]
pub(crate) struct PasswordHashing {
    permits: Arc<Semaphore>,
    computed: Counter,
}

impl PasswordHashing {
    fn new(computed: Counter) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self {
            permits: Arc::new(Semaphore::new(cores)),
            computed,
        }
    }

    /// Hashes `password` once a core is free.
    pub(crate) async fn hash(&self, password: &str) -> Result<String, InviteError> {
        // The permit moves into the task, so that a cancelled accept frees
        // its place only when its hash is done: the bound is on the work,
        // not on the waiting callers.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| InviteError::HashingPoolClosed)?;
        let password = password.to_owned();
        let computed = self.computed.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            computed.inc();
            hash_password(&password)
        })
        .await
        .map_err(|source| InviteError::HashingTask { source })?
    }
}

impl PasswordHashing {
    /// Whether `password` matches the PHC string `phc`, checked once a
    /// core is free (the same bound as hashing: a verification costs as
    /// much). A malformed `phc` matches nothing.
    pub(crate) async fn verify(&self, password: &str, phc: &str) -> Result<bool, InviteError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| InviteError::HashingPoolClosed)?;
        let (password, phc) = (password.to_owned(), phc.to_owned());
        tokio::task::spawn_blocking(move || {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            let _permit = permit;
            PasswordHash::new(&phc).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .map_err(|source| InviteError::HashingTask { source })
    }
}

impl Default for PasswordHashing {
    fn default() -> Self {
        Self::new(Counter::default())
    }
}

impl InviteService {
    /// The service counting the password hashes it computes in `counter`
    /// (the `password_hashes` metric).
    pub fn with_hash_counter(mut self, counter: Counter) -> Self {
        self.hashing = Arc::new(PasswordHashing::new(counter));
        self
    }
}

fn hash_password(password: &str) -> Result<String, InviteError> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|source| InviteError::PasswordHash { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_stored_as_argon2id_hashes() {
        let hash = hash_password("correct horse battery").unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
    }

    #[test]
    fn a_confirmation_must_match_before_the_length_counts() {
        let choice = |password, confirmation| NewPassword {
            password,
            confirmation,
        };
        assert_eq!(
            choice(Some("short"), Some(Some("other"))).problem(),
            Some(PasswordProblem::Differs)
        );
        assert_eq!(
            choice(Some("short"), Some(Some("short"))).problem(),
            Some(PasswordProblem::Length)
        );
        assert_eq!(choice(None, None).problem(), Some(PasswordProblem::Length));
        assert_eq!(choice(Some("long enough!"), None).problem(), None);
    }
}
