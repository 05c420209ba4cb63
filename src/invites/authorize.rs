//! Authorization of the service's operations through the Cedar policies:
//! the actor is the principal and nothing is checked in Rust. A refusal is
//! audited and returned in the policies' own words.
//!
//! Every request on an organization asks first whether the actor may act
//! on the organization at all ([`InviteService::authorize_org`]), before
//! anything of it (members, departments, accounts) is read: whoever may
//! not gets the same refusal whatever exists, including whether the
//! organization itself does. The detailed questions (the grant, the
//! member) come after the input is validated.

use serde_json::{Map, Value, json};

use super::InviteError;
use super::invite::Prepared;
use super::service::{Actor, InviteService};
use super::uid::ModelUid;
use crate::audit::{self, Event};
use crate::engine::{AuthzRequest, Describer, Shape, UidRef};
use crate::policy::{Decision, Explanation, PolicySnapshot};

/// The organization-level action asked before a request about an
/// organization's members or invitations reads anything of it.
pub(crate) const ADMINISTER_USERS: &str = "users.administer";

/// One question to the policies about the actor.
struct Question<'a> {
    action: &'a str,
    resource: ModelUid,
    context: Map<String, Value>,
    /// Entities the request supplies (ones not stored yet, e.g. an
    /// organization being created).
    entities: Vec<Value>,
    /// How to describe the resource should the store lack it (see
    /// [`absent_organization`]).
    if_absent: Option<Value>,
    /// The organization, for the audit record of a refusal.
    org: Option<&'a str>,
}

impl Question<'_> {
    /// A question that supplies no entity.
    fn new<'a>(action: &'a str, resource: ModelUid, org: Option<&'a str>) -> Question<'a> {
        Question {
            action,
            resource,
            context: Map::new(),
            entities: Vec::new(),
            if_absent: None,
            org,
        }
    }
}

impl InviteService {
    /// Asks the policies whether `actor` may do what `q` asks. The
    /// command-line operator is trusted (see [`Actor::cli`]).
    async fn authorize(&self, actor: &Actor, q: Question<'_>, now: i64) -> Result<(), InviteError> {
        let Some(user_id) = actor.user_id() else {
            return Ok(());
        };
        let mut context = q.context;
        context.insert("mfa".to_owned(), Value::Bool(actor.mfa));
        let mut request = AuthzRequest {
            principal: ModelUid::user(user_id).json().into(),
            action: UidRef::parts("Action", q.action),
            resource: q.resource.json().into(),
            context: Value::Object(context),
            entities: q.entities,
            described_by: Describer::Sidecar,
            shape: Shape::Cedar,
        };
        let request_id = actor.request_id.as_deref().unwrap_or("");
        let mut decided = self.engine.decide(&request, request_id).await;
        let absent = q.resource.typed().to_string();
        if let Some(described) = q.if_absent
            && !decided.decision.allow
            && decided.decision.unknown_entities.contains(&absent)
        {
            // The store lacks the resource, so the policies erred on it; ask
            // again about it as described, so that they, not the error,
            // decide (a description replaces a stored entity, hence only
            // when there is none).
            request.entities.push(described);
            decided = self.engine.decide(&request, request_id).await;
        }
        if decided.decision.allow {
            return Ok(());
        }
        // Refusals only: ask again with the explanation, which the cached
        // decision lacks. This second decision is the one reported (and
        // obeyed, should the store have changed in between).
        let decided = self.engine.decide_explained(&request, request_id).await;
        if decided.decision.allow {
            return Ok(());
        }
        let loaded = self.engine.current();
        let d = &decided.decision;
        let message = denial(&loaded.snapshot, q.action, d, decided.explanation.as_ref());
        audit::record_alone(
            &self.pool,
            now,
            Event {
                actor: user_id,
                org: q.org,
                target: Some(q.resource.to_string()),
                action: q.action,
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

    /// Authorizes system administration (`Platform::"cedargate"`).
    pub(crate) async fn authorize_platform(
        &self,
        actor: &Actor,
        action: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        let question = Question {
            entities: vec![super::project::platform_entity()],
            ..Question::new(action, ModelUid::platform(), None)
        };
        self.authorize(actor, question, now).await
    }

    /// Authorizes creating the organization `entity` (not stored yet, so the
    /// request supplies it).
    pub(crate) async fn authorize_new_org(
        &self,
        actor: &Actor,
        org_id: &str,
        entity: Value,
        now: i64,
    ) -> Result<(), InviteError> {
        let question = Question {
            entities: vec![entity],
            ..Question::new(
                "organizations.create",
                ModelUid::organization(org_id),
                Some(org_id),
            )
        };
        self.authorize(actor, question, now).await
    }

    /// Authorizes an action on the organization as a whole. Asked before
    /// anything of the organization is read, so that who may not act on it
    /// learns nothing of it: an organization the store lacks is asked about
    /// as [`absent_organization`] describes it, so that an outsider gets the
    /// refusal an existing one would give, and whoever the policies allow
    /// (a system administrator) goes on to the precise "no organization".
    pub(crate) async fn authorize_org(
        &self,
        actor: &Actor,
        action: &str,
        org_id: &str,
        now: i64,
    ) -> Result<(), InviteError> {
        let question = Question {
            if_absent: Some(absent_organization(org_id)),
            ..Question::new(action, ModelUid::organization(org_id), Some(org_id))
        };
        self.authorize(actor, question, now).await
    }

    /// Authorizes an action on one membership; `last_active_manager` goes
    /// into the context of the actions whose policies guard the last
    /// manager (E15).
    pub(crate) async fn authorize_member(
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
        let question = Question {
            context,
            ..Question::new(action, ModelUid::membership(org_id, user_id), Some(org_id))
        };
        self.authorize(actor, question, now).await
    }

    /// Authorizes an action on one membership with `context`, the facts
    /// the service computed for the policies (e.g. `otherOrganizations`).
    pub(crate) async fn authorize_member_with(
        &self,
        actor: &Actor,
        action: &str,
        org_id: &str,
        user_id: &str,
        context: Map<String, Value>,
        now: i64,
    ) -> Result<(), InviteError> {
        let question = Question {
            context,
            ..Question::new(action, ModelUid::membership(org_id, user_id), Some(org_id))
        };
        self.authorize(actor, question, now).await
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
        let grant = Grant {
            action: "users.invite",
            resource: ModelUid::organization(org_id),
            prepared,
            last_active_manager: None,
            org_id,
        };
        self.authorize_grant(actor, grant, now).await
    }

    /// Authorizes a user-administration action that grants permissions.
    pub(crate) async fn authorize_grant(
        &self,
        actor: &Actor,
        grant: Grant<'_>,
        now: i64,
    ) -> Result<(), InviteError> {
        let p = grant.prepared;
        let mut context = Map::new();
        context.insert(
            "grant".to_owned(),
            json!({"perms": p.permissions.to_cedar(), "restrictions": p.restrictions.to_cedar(), "agent": p.agent}),
        );
        if let Some(last) = grant.last_active_manager {
            context.insert("lastActiveManager".to_owned(), Value::Bool(last));
        }
        let question = Question {
            context,
            ..Question::new(grant.action, grant.resource, Some(grant.org_id))
        };
        self.authorize(actor, question, now).await
    }

    /// Whether the policies let `user_id` invite into `org_id`, asked as in
    /// a verified session, with `as_if` (entities a write in progress is
    /// about to store) in place of the stored ones (E26: who cannot, loses
    /// the links they sent, in that same write).
    pub(crate) async fn can_invite(&self, org_id: &str, user_id: &str, as_if: Vec<Value>) -> bool {
        let request = AuthzRequest {
            principal: ModelUid::user(user_id).json().into(),
            action: UidRef::parts("Action", "users.invite"),
            resource: ModelUid::organization(org_id).json().into(),
            context: json!({"mfa": true}),
            entities: as_if,
            described_by: Describer::Sidecar,
            shape: Shape::Cedar,
        };
        self.engine.decide(&request, "").await.decision.allow
    }
}

/// An organization the store lacks, as the policies are asked about it:
/// what every organization is (its tenant is its id) and nothing more, so
/// nobody is a member of it; it requires two-step verification, the
/// strictest reading should a membership in it appear meanwhile.
fn absent_organization(org_id: &str) -> Value {
    super::project::organization_entity(org_id, org_id, true)
}

/// A user-administration action granting what `prepared` describes.
pub(crate) struct Grant<'a> {
    /// The action.
    pub action: &'a str,
    /// The organization (invitations) or the membership (edits).
    pub resource: ModelUid,
    /// What would be granted.
    pub prepared: &'a Prepared,
    /// Whether the target is the last active manager (edits only, E15).
    pub last_active_manager: Option<bool>,
    /// The organization.
    pub org_id: &'a str,
}

/// Why the policies refused, missing permissions first: each permit in
/// scope with the first of its conditions that did not hold and the values
/// that made it false, then each forbid that fired in its own words
/// (`@message`), prefixed with the `@field` one names.
fn denial(
    snapshot: &PolicySnapshot,
    action: &str,
    decision: &Decision,
    explanation: Option<&Explanation>,
) -> String {
    let message = if !decision.errors.is_empty() {
        format!("`{action}` denied: {}", decision.errors.join("; "))
    } else {
        let missing = explanation
            .into_iter()
            .flat_map(|e| &e.unsatisfied)
            .map(|u| {
                format!(
                    "`{}` needs `{}` (was `{}`)",
                    u.policy, u.condition, u.evaluated
                )
            });
        let fired = decision
            .reasons
            .iter()
            .map(|id| match snapshot.annotation(id, "message") {
                Some(m) => format!("{m} (policy `{id}`)"),
                None => format!("denied by policy `{id}`"),
            });
        let all: Vec<String> = missing.chain(fired).collect();
        if all.is_empty() {
            format!("no policy allows `{action}` here")
        } else {
            format!("`{action}` not allowed: {}", all.join("; "))
        }
    };
    let field = decision
        .reasons
        .iter()
        .find_map(|id| snapshot.annotation(id, "field"));
    match field {
        Some(field) => format!("`{field}`: {message}"),
        None => message,
    }
}
