//! The console's pages for an organization's administration (the Users tab
//! and what it leads to). Every page is server-rendered with the console
//! layout and works without JavaScript; every action calls the invitation
//! service function the API calls, as the signed-in person
//! ([`SignedIn::actor`]), and every POST checks the session's CSRF token
//! before anything else. Which controls a page shows is decided by one
//! batch decision of the policies ([`crate::invites::controls`]); nothing
//! here or in the templates decides a permission.

mod home;
mod member_form;
mod org;
mod users;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::{Value, context};
use serde::Serialize;

use super::super::AppState;
use super::super::admin::InviteApp;
use super::super::error::ApiError;
use super::session::SignedIn;
use crate::invites::InviteError;
use crate::invites::controls::Allowed;

/// The pages' templates, loaded by the console's one environment.
pub(super) const PAGE_TEMPLATES: &[(&str, &str)] = &[
    (
        "console/pages/home.html",
        include_str!("../../templates/console/pages/home.html"),
    ),
    (
        "console/pages/users.html",
        include_str!("../../templates/console/pages/users.html"),
    ),
    (
        "console/pages/member_form.html",
        include_str!("../../templates/console/pages/member_form.html"),
    ),
    (
        "console/pages/bulk.html",
        include_str!("../../templates/console/pages/bulk.html"),
    ),
    (
        "console/pages/departments.html",
        include_str!("../../templates/console/pages/departments.html"),
    ),
    (
        "console/pages/audit.html",
        include_str!("../../templates/console/pages/audit.html"),
    ),
    (
        "console/pages/security.html",
        include_str!("../../templates/console/pages/security.html"),
    ),
    (
        "console/pages/message.html",
        include_str!("../../templates/console/pages/message.html"),
    ),
];

/// The pages' routes.
pub fn router(app: InviteApp) -> Router<AppState> {
    Router::new()
        .route("/console", get(home::show))
        .route("/console/admin/orgs", post(home::create_org))
        .route("/console/orgs/{org}/users", get(users::list))
        .route(
            "/console/orgs/{org}/users/new",
            get(member_form::new_form).post(member_form::create),
        )
        .route(
            "/console/orgs/{org}/users/{user}",
            get(member_form::edit_form).post(member_form::update),
        )
        .route(
            "/console/orgs/{org}/users/{user}/status",
            post(users::status),
        )
        .route(
            "/console/orgs/{org}/users/{user}/resend",
            post(users::resend),
        )
        .route(
            "/console/orgs/{org}/users/{user}/revoke",
            post(users::revoke),
        )
        .route(
            "/console/orgs/{org}/users/{user}/remove",
            post(users::remove),
        )
        .route("/console/orgs/{org}/users/{user}/agent", post(users::agent))
        .route(
            "/console/orgs/{org}/bulk",
            get(org::bulk_form).post(org::bulk_upload),
        )
        .route("/console/orgs/{org}/bulk/{job}", get(org::bulk_job))
        .route(
            "/console/orgs/{org}/departments",
            get(org::departments).post(org::save_department),
        )
        .route(
            "/console/orgs/{org}/departments/{department}/delete",
            post(org::delete_department),
        )
        .route("/console/orgs/{org}/audit", get(org::audit))
        .route(
            "/console/orgs/{org}/security",
            get(org::security).post(org::save_security),
        )
        .layer(Extension(app))
}

/// A posted form's fields in order, repeated names included (the account
/// checkboxes).
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed (`""` when absent).
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or_default()
    }

    /// Whether `name` was posted (a checked checkbox).
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// Every non-empty value of `name`.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

/// A posted form whose CSRF field the session verified; otherwise the
/// page to answer with (400 for a body that is not a form, 403 `csrf`).
fn verified(
    me: &SignedIn,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Fields, Box<Response>> {
    let Ok(Form(pairs)) = form else {
        return Err(Box::new(message(
            me,
            StatusCode::BAD_REQUEST,
            "Incomplete form",
            "The form could not be read. Open the page again and retry.",
        )));
    };
    let fields = Fields(pairs);
    check_csrf(me, fields.get("csrf"))?;
    Ok(fields)
}

/// Checks a form's CSRF field against the session, first thing of a POST.
fn check_csrf(me: &SignedIn, submitted: &str) -> Result<(), Box<Response>> {
    me.check_csrf(submitted).map_err(|e| {
        Box::new(message(
            me,
            e.status(),
            "This form could not be verified",
            "It may be old or sent from another site. Open the page again and retry.",
        ))
    })
}

/// A refusal or failure of the service, as a page shows it: the status
/// the API answers (the one mapping, in `error.rs`), the field an input
/// error names, and the service's own words (the policies' for a 403);
/// internal failures are logged there and worded generically here.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Refusal {
    #[serde(skip)]
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl From<InviteError> for Refusal {
    fn from(e: InviteError) -> Self {
        let (field, words) = match &e {
            InviteError::Invalid { field, message } => (Some(field.clone()), message.clone()),
            other => (None, other.to_string()),
        };
        let status = ApiError::from(e).status();
        let message = if status.is_server_error() {
            "Something went wrong; the sidecar's logs say what.".to_owned()
        } else {
            words
        };
        Self {
            status,
            field,
            message,
        }
    }
}

impl Refusal {
    /// A refusal of the page's own input check (422 on `field`).
    fn invalid(field: &str, message: &str) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            field: Some(field.to_owned()),
            message: message.to_owned(),
        }
    }
}

/// A page with only a heading and a text, in the console layout.
fn message(me: &SignedIn, status: StatusCode, heading: &str, text: &str) -> Response {
    render(
        "console/pages/message.html",
        status,
        context! { me => &me.email, csrf => &me.csrf, heading, message => text },
    )
}

/// The page for a service refusal of an action that has no form to show
/// again (a row's button): the status and the service's words.
fn refused(me: &SignedIn, refusal: Refusal) -> Response {
    let heading = match refusal.status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::UNPROCESSABLE_ENTITY => "Please check the input",
        StatusCode::TOO_MANY_REQUESTS => "Too many invitations",
        _ => "Something went wrong",
    };
    let text = match &refusal.field {
        Some(field) => format!("{field}: {}", refusal.message),
        None => refusal.message.clone(),
    };
    message(me, refusal.status, heading, &text)
}

/// Renders a page template through the console's environment.
fn render(name: &str, status: StatusCode, ctx: Value) -> Response {
    super::render(name, status, ctx)
}

/// 303 to `location` (post, redirect, get).
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The organization's navigation: a tab only where the page's batch
/// allowed its action (the Users tab itself is the page's own question).
fn org_nav(org_id: &str, allowed: &Allowed, current: &str) -> Vec<Value> {
    let tabs = [
        ("users", "Users", "members.list"),
        ("users/new", "Add New User", "users.invite"),
        ("bulk", "Bulk upload", "users.invite"),
        ("departments", "Departments", "members.list"),
        ("audit", "Audit trail", "audit.read"),
        ("security", "Security Policies", "organization.manage"),
    ];
    let mut nav = vec![context! { href => "/console", label => "Organizations", current => false }];
    for (path, label, action) in tabs {
        if allowed.on_org(action, org_id) {
            nav.push(context! {
                href => format!("/console/orgs/{org_id}/{path}"),
                label,
                current => path == current,
            });
        }
    }
    nav
}

/// The controls the organization's navigation asks about.
fn nav_controls(org_id: &str) -> Vec<crate::invites::controls::Control> {
    use crate::invites::controls::Control;
    [
        "members.list",
        "users.invite",
        "audit.read",
        "organization.manage",
    ]
    .into_iter()
    .map(|a| Control::org(a, org_id))
    .collect()
}

/// Short notices after a redirect (`?notice=`), fixed words only.
fn notice_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "invited" => "The user was saved and the invitation sent.",
        "saved" => "The user was saved; no invitation was sent yet (use Resend to send one).",
        "resent" => "A new invitation was sent; the previous link no longer works.",
        "updated" => "The user was updated.",
        "deactivated" => "The user was deactivated.",
        "reactivated" => "The user was reactivated.",
        "revoked" => "The invitation was revoked.",
        "removed" => "The user was removed from the organization.",
        "agent" => "The agent decision was recorded.",
        "security" => "The security policies were saved.",
        "department" => "The department was saved.",
        "department-deleted" => "The department was deleted.",
        "org-created" => "The organization was created and its owner invited.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
