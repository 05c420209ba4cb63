//! The Users tab (`/console/orgs/{org}/users`) and its rows' buttons:
//! deactivate, reactivate (restore or fresh), resend, revoke, remove and
//! the agent decision.

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Query};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

use super::super::super::admin::InviteApp;
use super::super::super::extract::Path;
use super::super::session::SignedIn;
use super::{
    Fields, Refusal, nav_controls, notice_text, org_nav, refused, render, see_other, verified,
};
use crate::invites::controls::{Control, MemberRef};
use crate::invites::model::{ACCOUNT_TYPES, MODULES};
use crate::invites::service::MemberView;
use crate::invites::status::StatusChange;

/// The actions each row may offer, asked on the member.
const ROW_ACTIONS: [&str; 7] = [
    "users.editPermissions",
    "invitations.edit",
    "users.changeStatus",
    "invitations.resend",
    "invitations.revoke",
    "users.remove",
    "agents.approve",
];

/// The Users tab's query.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    /// Only members with this status (`ACTIVE`, `PENDING`, `INACTIVE`).
    #[serde(default)]
    status: Option<String>,
    /// A notice after a redirect.
    #[serde(default)]
    notice: Option<String>,
}

/// `GET /console/orgs/{org}/users`.
pub async fn list(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let actor = me.actor();
    let now = app.clock.now();
    let members = match app.service.list_members(&actor, &org, now).await {
        Ok(members) => members,
        Err(e) => return refused(&me, Refusal::from(e)),
    };
    let (refs, departments) = match (
        app.service.member_refs(&org).await,
        app.service.departments(&actor, &org, now).await,
    ) {
        (Ok(refs), Ok(departments)) => (refs, departments),
        (Err(e), _) | (_, Err(e)) => return refused(&me, Refusal::from(e)),
    };
    let mut controls = nav_controls(&org);
    for member in &refs {
        controls.extend(ROW_ACTIONS.map(|a| Control::member(a, member)));
    }
    let allowed = app.service.allowed(&actor, controls).await;
    let wanted = query
        .status
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_uppercase);
    let rows: Vec<Value> = members
        .iter()
        .filter(|m| wanted.as_deref().is_none_or(|s| m.status.as_str() == s))
        .map(|m| {
            let member = refs
                .iter()
                .find(|r| r.user_id == m.user_id)
                .cloned()
                .unwrap_or(MemberRef {
                    org_id: org.clone(),
                    user_id: m.user_id.clone(),
                    last_active_manager: false,
                });
            let can = |action| allowed.on_member(action, &member);
            let edit = if m.status.as_str() == "PENDING" {
                can("invitations.edit")
            } else {
                can("users.editPermissions")
            };
            let department = m.department.as_ref().map(|d| {
                departments
                    .iter()
                    .find(|(id, _)| id == d)
                    .map_or(d.clone(), |(_, name)| name.clone())
            });
            context! {
                user_id => &m.user_id,
                name => format!("{} {}", m.first_name, m.last_name),
                email => &m.email,
                status => m.status.as_str(),
                role => &m.role,
                levels => levels(m),
                upload => m.permissions["uploadGenerations"].as_str().unwrap_or("No"),
                restrictions => restrictions(m),
                department,
                invitation => m.invitation,
                delivery_failed => m.invitation_delivery_failed,
                agent => m.agent,
                agent_approved => m.agent_approved,
                can_edit => edit,
                can_status => can("users.changeStatus"),
                can_resend => can("invitations.resend"),
                can_revoke => can("invitations.revoke"),
                can_remove => can("users.remove"),
                can_approve => can("agents.approve"),
            }
        })
        .collect();
    let ctx = context! {
        me => &me.email, csrf => &me.csrf,
        nav => org_nav(&org, &allowed, "users"),
        org, rows, modules => MODULES,
        status => wanted.unwrap_or_default(),
        notice => query.notice.as_deref().and_then(notice_text),
        can_invite => allowed.on_org("users.invite", &org),
    };
    render("console/pages/users.html", StatusCode::OK, ctx)
}

/// The member's level per module, in display order.
fn levels(m: &MemberView) -> Vec<String> {
    MODULES
        .iter()
        .map(|module| m.permissions[*module].as_str().unwrap_or("None").to_owned())
        .collect()
}

/// The member's account restrictions in words, per restricted type.
fn restrictions(m: &MemberView) -> Vec<String> {
    ACCOUNT_TYPES
        .iter()
        .filter_map(|ty| {
            let ids = m.restrictions.get(*ty)?.as_array()?;
            let ids: Vec<&str> = ids.iter().filter_map(|v| v.as_str()).collect();
            Some(if ids.is_empty() {
                format!("{ty}: none")
            } else {
                format!("{ty}: {}", ids.join(", "))
            })
        })
        .collect()
}

fn users_page(org: &str, notice: &str) -> Response {
    see_other(&format!("/console/orgs/{org}/users?notice={notice}"))
}

/// `POST /console/orgs/{org}/users/{user}/status`: `status` ACTIVE or
/// INACTIVE; a reactivation's `reactivate` is `restore` or `fresh`.
pub async fn status(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match verified(&me, form) {
        Ok(fields) => fields,
        Err(page) => return *page,
    };
    let change = StatusChange {
        status: fields.get("status").to_owned(),
        reactivate: Some(fields.get("reactivate"))
            .filter(|r| !r.is_empty())
            .map(str::to_owned),
        role: None,
        permissions: None,
        restrictions: None,
    };
    let deactivating = change.status.eq_ignore_ascii_case("INACTIVE");
    match app
        .service
        .set_status(&me.actor(), &org, &user, &change, app.clock.now())
        .await
    {
        Ok(_) if deactivating => users_page(&org, "deactivated"),
        Ok(_) => users_page(&org, "reactivated"),
        Err(e) => refused(&me, Refusal::from(e)),
    }
}

/// `POST /console/orgs/{org}/users/{user}/resend`.
pub async fn resend(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let actor = me.actor();
    let done = app.service.resend(&actor, &org, &user, app.clock.now());
    row_action(&me, &org, form, "resent", done).await
}

/// `POST /console/orgs/{org}/users/{user}/revoke`.
pub async fn revoke(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let actor = me.actor();
    let done = app.service.revoke(&actor, &org, &user, app.clock.now());
    row_action(&me, &org, form, "revoked", done).await
}

/// `POST /console/orgs/{org}/users/{user}/remove`.
pub async fn remove(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let actor = me.actor();
    let done = app
        .service
        .remove_member(&actor, &org, &user, app.clock.now());
    row_action(&me, &org, form, "removed", done).await
}

/// A row button's POST: the CSRF check first, and only then `action` (a
/// future does nothing until awaited), answered with the Users tab and
/// `notice`, or the refusal.
async fn row_action<T>(
    me: &SignedIn,
    org: &str,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
    notice: &str,
    action: impl std::future::Future<Output = Result<T, crate::invites::InviteError>>,
) -> Response {
    if let Err(page) = verified(me, form) {
        return *page;
    }
    match action.await {
        Ok(_) => users_page(org, notice),
        Err(e) => refused(me, Refusal::from(e)),
    }
}

/// `POST /console/orgs/{org}/users/{user}/agent`: `decision` approve or
/// reject, `designation` the Notice of Agent Designation's reference.
pub async fn agent(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields: Fields = match verified(&me, form) {
        Ok(fields) => fields,
        Err(page) => return *page,
    };
    let approve = fields.get("decision") == "approve";
    let designation = Some(fields.get("designation")).filter(|d| !d.is_empty());
    match app
        .service
        .decide_agent(
            &me.actor(),
            &org,
            &user,
            approve,
            designation,
            app.clock.now(),
        )
        .await
    {
        Ok(_) if fields.get("back") == "home" => see_other("/console?notice=agent"),
        Ok(_) => users_page(&org, "agent"),
        Err(e) => refused(&me, Refusal::from(e)),
    }
}
