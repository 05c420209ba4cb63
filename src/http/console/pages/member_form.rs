//! Add New User (`/console/orgs/{org}/users/new`) and Edit User
//! (`/console/orgs/{org}/users/{user}`): names, the e-mail entered twice,
//! None/Read/Manage per module, Upload Generations, Advanced Account
//! Permissions (the accounts per account type), role, department and agent
//! flag. "Save" saves the person without sending an invitation (the
//! service's `send: false`: a pending member, no link until Resend); "Save
//! and send invitation" sends it.

use std::collections::BTreeMap;

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::super::super::admin::InviteApp;
use super::super::super::extract::Path;
use super::super::session::SignedIn;
use super::{Fields, Refusal, nav_controls, org_nav, refused, render, see_other, verified};
use crate::invites::controls::{Control, FormChoices};
use crate::invites::model::{ACCOUNT_TYPES, MODULES, Role, Status};
use crate::invites::service::{EditInput, InviteInput, MemberView};
use crate::invites::status::StatusChange;

/// The role presets offered, in the order shown.
const ROLES: [&str; 5] = ["GeneralUser", "UserAdmin", "Admin", "AccountAdmin", "Owner"];

/// What the form holds (as posted, or as the member is).
#[derive(Debug, Clone, Serialize)]
struct MemberForm {
    first_name: String,
    last_name: String,
    email: String,
    email_confirm: String,
    role: String,
    /// Level per module.
    levels: BTreeMap<String, String>,
    /// `Yes` or `No`.
    upload: String,
    /// Per account type: `None` all accounts, `Some(ids)` only these.
    restrict: BTreeMap<String, Option<Vec<String>>>,
    department: String,
    agent: bool,
}

impl MemberForm {
    /// A new person: GeneralUser, every module None, unrestricted.
    fn blank() -> Self {
        Self::with_permissions(&Role::GeneralUser.preset().to_json(), "GeneralUser")
    }

    fn with_permissions(permissions: &Value, role: &str) -> Self {
        Self {
            first_name: String::new(),
            last_name: String::new(),
            email: String::new(),
            email_confirm: String::new(),
            role: role.to_owned(),
            levels: MODULES
                .iter()
                .map(|m| {
                    let level = permissions[*m].as_str().unwrap_or("None");
                    ((*m).to_owned(), level.to_owned())
                })
                .collect(),
            upload: permissions["uploadGenerations"]
                .as_str()
                .unwrap_or("No")
                .to_owned(),
            restrict: ACCOUNT_TYPES
                .iter()
                .map(|t| ((*t).to_owned(), None))
                .collect(),
            department: String::new(),
            agent: false,
        }
    }

    /// The member as stored.
    fn of(m: &MemberView) -> Self {
        let mut form = Self::with_permissions(&m.permissions, &m.role);
        form.first_name.clone_from(&m.first_name);
        form.last_name.clone_from(&m.last_name);
        form.email.clone_from(&m.email);
        form.department = m.department.clone().unwrap_or_default();
        form.agent = m.agent;
        for ty in ACCOUNT_TYPES {
            let ids = m.restrictions.get(ty).and_then(Value::as_array).map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            });
            form.restrict.insert(ty.to_owned(), ids);
        }
        form
    }

    /// The form as posted.
    fn posted(fields: &Fields) -> Self {
        Self {
            first_name: fields.get("first_name").to_owned(),
            last_name: fields.get("last_name").to_owned(),
            email: fields.get("email").to_owned(),
            email_confirm: fields.get("email_confirm").to_owned(),
            role: fields.get("role").to_owned(),
            levels: MODULES
                .iter()
                .map(|m| ((*m).to_owned(), fields.get(&format!("perm_{m}")).to_owned()))
                .collect(),
            upload: fields.get("upload_generations").to_owned(),
            restrict: ACCOUNT_TYPES
                .iter()
                .map(|t| {
                    let ids = (fields.get(&format!("restrict_{t}")) == "selected")
                        .then(|| fields.all(&format!("account_{t}")));
                    ((*t).to_owned(), ids)
                })
                .collect(),
            department: fields.get("department").to_owned(),
            agent: fields.has("agent"),
        }
    }

    /// The levels as the service reads them (every module given).
    fn permissions(&self) -> Value {
        let mut map: Map<String, Value> = self
            .levels
            .iter()
            .map(|(m, l)| (m.clone(), json!(l)))
            .collect();
        map.insert("uploadGenerations".to_owned(), json!(self.upload));
        Value::Object(map)
    }

    /// The restrictions as the service reads them (`null`: unrestricted).
    fn restrictions(&self) -> Value {
        Value::Object(
            self.restrict
                .iter()
                .map(|(ty, ids)| (ty.clone(), json!(ids)))
                .collect(),
        )
    }

    fn role(&self) -> Option<String> {
        Some(self.role.clone()).filter(|r| !r.is_empty())
    }

    fn invite_input(&self, send: bool) -> InviteInput {
        InviteInput {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            email: self.email.clone(),
            role: self.role(),
            permissions: Some(self.permissions()),
            department: Some(self.department.clone()).filter(|d| !d.is_empty()),
            restrictions: Some(self.restrictions()),
            agent: self.agent,
            send,
        }
    }

    fn edit_input(&self) -> EditInput {
        EditInput {
            role: self.role(),
            permissions: Some(self.permissions()),
            department: Some(self.department.clone()),
            restrictions: Some(self.restrictions()),
            agent: Some(self.agent),
        }
    }
}

/// What the page shows besides the form.
struct Page<'a> {
    org: &'a str,
    /// The member edited (`None`: Add New User).
    member: Option<&'a MemberView>,
    choices: &'a FormChoices,
    refusal: Option<Refusal>,
    status: StatusCode,
}

async fn page(app: &InviteApp, me: &SignedIn, form: &MemberForm, page: Page<'_>) -> Response {
    let org = page.org;
    let mut controls = nav_controls(org);
    let mut member_ref = None;
    if let Some(m) = page.member {
        let refs = app.service.member_refs(org).await.unwrap_or_default();
        if let Some(r) = refs.into_iter().find(|r| r.user_id == m.user_id) {
            controls.extend(
                ["users.changeStatus", "invitations.resend", "users.remove"]
                    .map(|a| Control::member(a, &r)),
            );
            member_ref = Some(r);
        }
    }
    let allowed = app.service.allowed(&me.actor(), controls).await;
    let can = |action| {
        member_ref
            .as_ref()
            .is_some_and(|r| allowed.on_member(action, r))
    };
    let (field, message) = match &page.refusal {
        Some(r) => (r.field.clone(), Some(r.message.clone())),
        None => (None, None),
    };
    let accounts: BTreeMap<&String, Vec<minijinja::Value>> = page
        .choices
        .accounts
        .iter()
        .map(|(ty, list)| {
            let list = list
                .iter()
                .map(|(id, name)| context! { id, name })
                .collect();
            (ty, list)
        })
        .collect();
    let departments: Vec<minijinja::Value> = page
        .choices
        .departments
        .iter()
        .map(|(id, name)| context! { id, name })
        .collect();
    let current = if page.member.is_some() {
        ""
    } else {
        "users/new"
    };
    let ctx = context! {
        me => &me.email, csrf => &me.csrf,
        nav => org_nav(org, &allowed, current),
        org, form, modules => MODULES, account_types => ACCOUNT_TYPES, roles => ROLES,
        accounts, departments,
        member => page.member.map(|m| context! {
            user_id => &m.user_id, status => m.status.as_str(),
        }),
        error_field => field, error => message,
        can_status => can("users.changeStatus"),
        can_remove => can("users.remove"),
    };
    render("console/pages/member_form.html", page.status, ctx)
}

/// `GET /console/orgs/{org}/users/new`.
pub async fn new_form(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
) -> Response {
    let choices = match app
        .service
        .form_choices(&me.actor(), "users.invite", &org, app.clock.now())
        .await
    {
        Ok(choices) => choices,
        Err(e) => return refused(&me, Refusal::from(e)),
    };
    let blank = MemberForm::blank();
    let shown = Page {
        org: &org,
        member: None,
        choices: &choices,
        refusal: None,
        status: StatusCode::OK,
    };
    page(&app, &me, &blank, shown).await
}

/// `POST /console/orgs/{org}/users/new`: `submit` is `save` or `send`.
pub async fn create(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match verified(&me, form) {
        Ok(fields) => fields,
        Err(page) => return *page,
    };
    let form = MemberForm::posted(&fields);
    let send = fields.get("submit") != "save";
    let actor = me.actor();
    let now = app.clock.now();
    let outcome = if form.email.eq_ignore_ascii_case(&form.email_confirm) {
        app.service
            .invite(&actor, &org, &form.invite_input(send), now)
            .await
            .map_err(Refusal::from)
    } else {
        Err(Refusal::invalid(
            "email_confirm",
            "the two e-mail addresses differ",
        ))
    };
    let refusal = match outcome {
        Ok(done) => {
            return see_other(&format!(
                "/console/orgs/{org}/users?notice={}",
                done.outcome
            ));
        }
        Err(refusal) => refusal,
    };
    match app
        .service
        .form_choices(&actor, "users.invite", &org, now)
        .await
    {
        Ok(choices) => {
            let status = refusal.status;
            let shown = Page {
                org: &org,
                member: None,
                choices: &choices,
                refusal: Some(refusal),
                status,
            };
            page(&app, &me, &form, shown).await
        }
        Err(_) => refused(&me, refusal),
    }
}

/// The member `user` of `org`, as the Users tab lists them.
async fn member(
    app: &InviteApp,
    me: &SignedIn,
    org: &str,
    user: &str,
) -> Result<(MemberView, FormChoices), Refusal> {
    let actor = me.actor();
    let now = app.clock.now();
    let members = app.service.list_members(&actor, org, now).await?;
    let choices = app
        .service
        .form_choices(&actor, "users.administer", org, now)
        .await?;
    let member = members
        .into_iter()
        .find(|m| m.user_id == user)
        .ok_or_else(|| {
            Refusal::from(crate::invites::InviteError::from(
                crate::invites::NotFound::Member {
                    org_id: org.to_owned(),
                    user_id: user.to_owned(),
                },
            ))
        })?;
    Ok((member, choices))
}

/// `GET /console/orgs/{org}/users/{user}`.
pub async fn edit_form(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    let (member, choices) = match member(&app, &me, &org, &user).await {
        Ok(found) => found,
        Err(refusal) => return refused(&me, refusal),
    };
    let form = MemberForm::of(&member);
    let shown = Page {
        org: &org,
        member: Some(&member),
        choices: &choices,
        refusal: None,
        status: StatusCode::OK,
    };
    page(&app, &me, &form, shown).await
}

/// `POST /console/orgs/{org}/users/{user}`: `submit` is `save` (an edit),
/// or `reactivate` (an inactive member reactivated with the set given).
pub async fn update(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match verified(&me, form) {
        Ok(fields) => fields,
        Err(page) => return *page,
    };
    let mut form = MemberForm::posted(&fields);
    let actor = me.actor();
    let now = app.clock.now();
    let reactivate = fields.get("submit") == "reactivate";
    let done = if reactivate {
        let change = StatusChange {
            status: Status::Active.as_str().to_owned(),
            reactivate: Some("fresh".to_owned()),
            role: form.role(),
            permissions: Some(form.permissions()),
            restrictions: Some(form.restrictions()),
        };
        app.service
            .set_status(&actor, &org, &user, &change, now)
            .await
            .map(|_| "reactivated")
    } else {
        app.service
            .edit_member(&actor, &org, &user, &form.edit_input(), now)
            .await
            .map(|_| "updated")
    };
    let refusal = match done {
        Ok(notice) => return see_other(&format!("/console/orgs/{org}/users?notice={notice}")),
        Err(e) => Refusal::from(e),
    };
    match member(&app, &me, &org, &user).await {
        Ok((member, choices)) => {
            // Names and address are not edited here: show them as stored.
            form.first_name.clone_from(&member.first_name);
            form.last_name.clone_from(&member.last_name);
            form.email.clone_from(&member.email);
            let status = refusal.status;
            let shown = Page {
                org: &org,
                member: Some(&member),
                choices: &choices,
                refusal: Some(refusal),
                status,
            };
            page(&app, &me, &form, shown).await
        }
        Err(_) => refused(&me, refusal),
    }
}
