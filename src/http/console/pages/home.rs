//! The console's first page (`/console`): the organizations the signed-in
//! person belongs to (or, for a system administrator, oversees), and for
//! system administrators organization creation and the agents awaiting
//! approval.

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Query};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};

use super::super::super::admin::InviteApp;
use super::super::session::SignedIn;
use super::org::NoticeQuery;
use super::{Fields, Refusal, notice_text, refused, render, see_other, verified};
use crate::invites::controls::{Control, Resource};
use crate::invites::service::InviteInput;

/// The page, with the creation form as posted and its refusal, if any.
async fn page(
    app: &InviteApp,
    me: &SignedIn,
    posted: Option<&Fields>,
    refusal: Option<Refusal>,
    notice: Option<&str>,
) -> Response {
    let home = match app.service.console_home(&me.actor()).await {
        Ok(home) => home,
        Err(e) => return refused(me, Refusal::from(e)),
    };
    let allowed = &home.allowed;
    let orgs: Vec<Value> = home
        .orgs
        .iter()
        .map(|o| {
            context! {
                id => &o.org_id, name => &o.name,
                status => o.status.map(|s| s.as_str()),
                users => allowed.on_org("members.list", &o.org_id),
                invite => allowed.on_org("users.invite", &o.org_id),
                security => allowed.on_org("organization.manage", &o.org_id),
                audit => allowed.on_org("audit.read", &o.org_id),
            }
        })
        .collect();
    let agents: Vec<Value> = home
        .pending_agents
        .iter()
        .map(|a| context! { org => &a.org_id, user_id => &a.user_id, email => &a.email, name => &a.name })
        .collect();
    let field = |name: &str| posted.map(|f| f.get(name).to_owned()).unwrap_or_default();
    let status = refusal.as_ref().map_or(StatusCode::OK, |r| r.status);
    let ctx = context! {
        me => &me.email, csrf => &me.csrf,
        nav => vec![context! { href => "/console", label => "Organizations", current => true }],
        orgs, agents,
        can_create => allowed.allows(&Control {
            action: "organizations.create",
            resource: Resource::NewOrganization,
        }),
        new_org => context! {
            id => field("id"), name => field("name"),
            first_name => field("first_name"), last_name => field("last_name"),
            email => field("email"), require_mfa => posted.is_some_and(|f| f.has("require_mfa")),
        },
        error_field => refusal.as_ref().and_then(|r| r.field.clone()),
        error => refusal.map(|r| r.message),
        notice => notice.and_then(notice_text),
    };
    render("console/pages/home.html", status, ctx)
}

/// `GET /console`.
pub async fn show(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Query(query): Query<NoticeQuery>,
) -> Response {
    page(&app, &me, None, None, query.notice()).await
}

/// `POST /console/admin/orgs`: a new organization and its owner's
/// invitation (system administrators).
pub async fn create_org(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match verified(&me, form) {
        Ok(fields) => fields,
        Err(page) => return *page,
    };
    let owner = InviteInput {
        first_name: fields.get("first_name").to_owned(),
        last_name: fields.get("last_name").to_owned(),
        email: fields.get("email").to_owned(),
        role: None,
        permissions: None,
        department: None,
        restrictions: None,
        agent: false,
        send: true,
    };
    let created = app
        .service
        .create_org(
            &me.actor(),
            fields.get("id"),
            fields.get("name"),
            fields.has("require_mfa"),
            owner,
            app.clock.now(),
        )
        .await;
    match created {
        Ok(_) => see_other("/console?notice=org-created"),
        Err(e) => {
            let refusal = Refusal::from(e);
            if refusal.status == StatusCode::FORBIDDEN {
                return refused(&me, refusal);
            }
            page(&app, &me, Some(&fields), Some(refusal), None).await
        }
    }
}
