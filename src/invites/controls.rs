//! What the console shows a person: one batch decision per page. A page
//! lists the controls it could offer as (action, resource) pairs, asks the
//! policies about all of them for the actor in one batch against one
//! snapshot, and shows a control only when its pair is allowed. Whatever a
//! page shows, the action itself is authorized again by the service when
//! it is posted; this only keeps controls the person may not use out of
//! sight. These questions are not attempts, so refusals are not audited.
//!
//! Also the reads the console's forms need (departments, accounts), each
//! authorized as the request it prepares, and the organizations a person
//! sees on the console's first page.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sqlx::Row;

use super::members::is_last_active_manager;
use super::model::{ACCOUNT_TYPES, Status};
use super::service::{Actor, InviteService};
use super::store;
use super::uid::ModelUid;
use super::{InviteError, project};
use crate::engine::{AuthzRequest, Describer, Shape, UidRef};

/// The id a not-yet-created organization is asked about as (one no
/// organization can have: ids are lower-case letters, digits, `-`, `_`).
const NEW_ORGANIZATION: &str = "(new organization)";

/// What a control acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// An organization as a whole.
    Organization(String),
    /// One membership. `last_active_manager` is the fact the service gives
    /// the policies for the actions that guard the last manager.
    Member {
        /// The organization.
        org_id: String,
        /// The member.
        user_id: String,
        /// Whether the member is the organization's last active manager.
        last_active_manager: bool,
    },
    /// An organization not created yet (organization creation).
    NewOrganization,
}

/// One control a page may show: an action on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The Cedar action, e.g. `users.changeStatus`.
    pub action: &'static str,
    /// What it acts on.
    pub resource: Resource,
}

impl Control {
    /// `action` on the organization `org_id`.
    pub fn org(action: &'static str, org_id: &str) -> Self {
        Self {
            action,
            resource: Resource::Organization(org_id.to_owned()),
        }
    }

    /// `action` on a membership.
    pub fn member(action: &'static str, member: &MemberRef) -> Self {
        Self {
            action,
            resource: Resource::Member {
                org_id: member.org_id.clone(),
                user_id: member.user_id.clone(),
                last_active_manager: member.last_active_manager,
            },
        }
    }
}

/// A membership as the controls ask about it.
#[derive(Debug, Clone)]
pub struct MemberRef {
    /// The organization.
    pub org_id: String,
    /// The member.
    pub user_id: String,
    /// Whether they are the organization's last active manager.
    pub last_active_manager: bool,
}

/// The batch's answers, looked up by control.
#[derive(Debug, Clone, Default)]
pub struct Allowed(Vec<(Control, bool)>);

impl Allowed {
    /// Whether `control` was asked and allowed (fail closed: a control not
    /// asked is not shown).
    pub fn allows(&self, control: &Control) -> bool {
        self.0.iter().any(|(c, allowed)| c == control && *allowed)
    }

    /// Whether `action` on the organization was allowed.
    pub fn on_org(&self, action: &'static str, org_id: &str) -> bool {
        self.allows(&Control::org(action, org_id))
    }

    /// Whether `action` on the membership was allowed.
    pub fn on_member(&self, action: &'static str, member: &MemberRef) -> bool {
        self.allows(&Control::member(action, member))
    }
}

/// One organization on the console's first page.
#[derive(Debug, Clone)]
pub struct OrgEntry {
    /// Its id.
    pub org_id: String,
    /// Its name.
    pub name: String,
    /// The person's membership status there (`None`: not a member, e.g. a
    /// system administrator overseeing it).
    pub status: Option<Status>,
}

/// A third-party agent awaiting a system administrator's decision.
#[derive(Debug, Clone)]
pub struct PendingAgent {
    /// The organization.
    pub org_id: String,
    /// The agent.
    pub user_id: String,
    /// Their e-mail.
    pub email: String,
    /// Their name.
    pub name: String,
}

/// The console's first page, decided in one batch.
#[derive(Debug, Clone)]
pub struct Home {
    /// The organizations the person belongs to or may oversee.
    pub orgs: Vec<OrgEntry>,
    /// Agents the person may approve.
    pub pending_agents: Vec<PendingAgent>,
    /// The answers (per organization: `members.list`, `users.invite`,
    /// `organization.manage`, `audit.read`; organization creation).
    pub allowed: Allowed,
}

/// What the member forms offer to choose from.
#[derive(Debug, Clone, Default)]
pub struct FormChoices {
    /// Departments: (id, name), by id.
    pub departments: Vec<(String, String)>,
    /// Accounts per account type (`active`, ...): (id, name), by id.
    pub accounts: BTreeMap<String, Vec<(String, String)>>,
}

/// The actions asked per organization on the console's first page.
pub const HOME_ORG_ACTIONS: [&str; 4] = [
    "members.list",
    "users.invite",
    "organization.manage",
    "audit.read",
];

impl InviteService {
    /// Asks the policies about every control for `actor`, in one batch
    /// against one snapshot. The command-line operator is allowed all.
    pub async fn allowed(&self, actor: &Actor, controls: Vec<Control>) -> Allowed {
        let Some(user_id) = actor.user_id() else {
            return Allowed(controls.into_iter().map(|c| (c, true)).collect());
        };
        let requests: Vec<AuthzRequest> = controls
            .iter()
            .map(|c| request(user_id, actor.mfa, c))
            .collect();
        let request_id = actor.request_id.as_deref().unwrap_or("");
        let decided = self.engine.decide_batch(&requests, request_id).await;
        // A missing answer is a refusal (fail closed).
        let mut answers = decided.into_iter().map(|d| d.decision.allow);
        Allowed(
            controls
                .into_iter()
                .map(|c| {
                    let allowed = answers.next().unwrap_or(false);
                    (c, allowed)
                })
                .collect(),
        )
    }

    /// The console's first page for `actor`: the organizations they belong
    /// to (any status) or may list the members of, the agents they may
    /// approve, and whether they may create organizations, in one batch.
    pub async fn console_home(&self, actor: &Actor) -> Result<Home, InviteError> {
        let user_id = actor.user_id().unwrap_or_default();
        let mut conn = self.pool.acquire().await?;
        let own = store::memberships_of_user(&mut conn, user_id).await?;
        let all = sqlx::query("select org_id, name from organization order by org_id")
            .fetch_all(&mut *conn)
            .await?;
        let agents = sqlx::query(
            "select m.org_id, m.user_id, u.email, u.first_name, u.last_name
             from membership m join app_user u on u.user_id = m.user_id
             where m.agent = 1 and m.agent_approved = 0 and m.status <> 'INACTIVE'
             order by m.org_id, u.email",
        )
        .fetch_all(&mut *conn)
        .await?;
        drop(conn);
        let orgs: Vec<OrgEntry> = all
            .iter()
            .map(|row| {
                let org_id: String = row.get(0);
                let status = own.iter().find(|m| m.org_id == org_id).map(|m| m.status);
                OrgEntry {
                    org_id,
                    name: row.get(1),
                    status,
                }
            })
            .collect();
        let agents: Vec<PendingAgent> = agents
            .iter()
            .map(|row| PendingAgent {
                org_id: row.get(0),
                user_id: row.get(1),
                email: row.get(2),
                name: format!("{} {}", row.get::<String, _>(3), row.get::<String, _>(4)),
            })
            .collect();
        let mut controls: Vec<Control> = vec![Control {
            action: "organizations.create",
            resource: Resource::NewOrganization,
        }];
        for org in &orgs {
            controls.extend(HOME_ORG_ACTIONS.map(|a| Control::org(a, &org.org_id)));
        }
        for agent in &agents {
            controls.push(Control::member("agents.approve", &agent.member_ref()));
        }
        let allowed = self.allowed(actor, controls).await;
        Ok(Home {
            orgs: orgs
                .into_iter()
                .filter(|o| o.status.is_some() || allowed.on_org("members.list", &o.org_id))
                .collect(),
            pending_agents: agents
                .into_iter()
                .filter(|a| allowed.on_member("agents.approve", &a.member_ref()))
                .collect(),
            allowed,
        })
    }

    /// The controls of the Users tab's rows: each membership of `org_id`
    /// with whether it is the last active manager (a fact the policies are
    /// given, as the service gives it when the action is posted).
    pub async fn member_refs(&self, org_id: &str) -> Result<Vec<MemberRef>, InviteError> {
        let mut conn = self.pool.acquire().await?;
        let members = store::memberships_of_org(&mut conn, org_id).await?;
        Ok(members
            .iter()
            .map(|m| MemberRef {
                org_id: org_id.to_owned(),
                user_id: m.user_id.clone(),
                last_active_manager: is_last_active_manager(&members, &m.user_id),
            })
            .collect())
    }

    /// The departments and accounts of `org_id` to choose from on a member
    /// form, for whoever the policies let do `action` (`users.invite`,
    /// `users.administer`) on the organization; asked before anything of it
    /// is read, as the request the form prepares would be.
    pub async fn form_choices(
        &self,
        actor: &Actor,
        action: &str,
        org_id: &str,
        now: i64,
    ) -> Result<FormChoices, InviteError> {
        self.authorize_org(actor, action, org_id, now).await?;
        let mut conn = self.pool.acquire().await?;
        super::members::existing_org(&mut conn, org_id).await?;
        let departments = department_rows(&mut conn, org_id).await?;
        let rows = sqlx::query(
            "select entity_id, body from entity where entity_type = 'Account' and body like $1
             order by entity_id",
        )
        .bind(format!("%{org_id}%"))
        .fetch_all(&mut *conn)
        .await?;
        let mut accounts: BTreeMap<String, Vec<(String, String)>> = ACCOUNT_TYPES
            .iter()
            .map(|t| ((*t).to_owned(), Vec::new()))
            .collect();
        for row in rows {
            let id: String = row.get(0);
            let body: String = row.get(1);
            let Ok(body) = serde_json::from_str::<Value>(&body) else {
                continue;
            };
            let attrs = &body["attrs"];
            if attrs["tenant"].as_str() != Some(org_id) {
                continue;
            }
            let ty = attrs["accountType"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let name = attrs["name"].as_str().unwrap_or(&id).to_owned();
            if let Some(list) = accounts.get_mut(&ty) {
                list.push((id, name));
            }
        }
        Ok(FormChoices {
            departments,
            accounts,
        })
    }

    /// The departments of `org_id` (id, name), for whoever may list its
    /// members.
    pub async fn departments(
        &self,
        actor: &Actor,
        org_id: &str,
        now: i64,
    ) -> Result<Vec<(String, String)>, InviteError> {
        self.authorize_org(actor, "members.list", org_id, now)
            .await?;
        let mut conn = self.pool.acquire().await?;
        super::members::existing_org(&mut conn, org_id).await?;
        department_rows(&mut conn, org_id).await
    }
}

impl PendingAgent {
    fn member_ref(&self) -> MemberRef {
        MemberRef {
            org_id: self.org_id.clone(),
            user_id: self.user_id.clone(),
            last_active_manager: false,
        }
    }
}

async fn department_rows(
    conn: &mut sqlx::AnyConnection,
    org_id: &str,
) -> Result<Vec<(String, String)>, InviteError> {
    let rows = sqlx::query(
        "select department_id, name from department where org_id = $1 order by department_id",
    )
    .bind(org_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The question a control asks, as the service asks it when the action is
/// posted (the actor's MFA; the last-manager fact on a membership).
fn request(user_id: &str, mfa: bool, control: &Control) -> AuthzRequest {
    let mut context = Map::new();
    context.insert("mfa".to_owned(), Value::Bool(mfa));
    let mut entities = Vec::new();
    let resource = match &control.resource {
        Resource::Organization(org_id) => ModelUid::organization(org_id),
        Resource::Member {
            org_id,
            user_id,
            last_active_manager,
        } => {
            if matches!(
                control.action,
                "users.changeStatus" | "users.remove" | "users.editPermissions"
            ) {
                context.insert(
                    "lastActiveManager".to_owned(),
                    Value::Bool(*last_active_manager),
                );
            }
            ModelUid::membership(org_id, user_id)
        }
        Resource::NewOrganization => {
            entities.push(project::organization_entity(
                NEW_ORGANIZATION,
                NEW_ORGANIZATION,
                false,
            ));
            ModelUid::organization(NEW_ORGANIZATION)
        }
    };
    AuthzRequest {
        principal: ModelUid::user(user_id).json().into(),
        action: UidRef::parts("Action", control.action),
        resource: resource.json().into(),
        context: Value::Object(context),
        entities,
        described_by: Describer::Sidecar,
        shape: Shape::Cedar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_control_not_asked_is_not_allowed() {
        let asked = Control::org("users.invite", "acme");
        let allowed = Allowed(vec![(asked.clone(), true)]);
        assert!(allowed.allows(&asked));
        assert!(!allowed.on_org("users.invite", "globex"));
        assert!(!allowed.on_org("organization.manage", "acme"));
    }

    #[test]
    fn the_last_manager_fact_goes_only_to_the_actions_that_guard_it() {
        let member = MemberRef {
            org_id: "acme".to_owned(),
            user_id: "u1".to_owned(),
            last_active_manager: true,
        };
        let status = request("me", true, &Control::member("users.changeStatus", &member));
        assert_eq!(status.context["lastActiveManager"], json!(true));
        assert_eq!(status.context["mfa"], json!(true));
        let resend = request("me", false, &Control::member("invitations.resend", &member));
        assert!(resend.context.get("lastActiveManager").is_none());
        assert_eq!(
            resend.resource.to_json(),
            json!({"type": "Membership", "id": "acme/u1"})
        );
    }
}
