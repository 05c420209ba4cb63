//! An organization's other pages: bulk upload (a CSV file, multipart) with
//! the per-row report or the background job's status, departments, the
//! audit trail and the Security Policies (two-step verification).

use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Multipart, Query};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde::Deserialize;

use super::super::super::admin::InviteApp;
use super::super::super::extract::Path;
use super::super::session::SignedIn;
use super::{
    Refusal, check_csrf, nav_controls, notice_text, org_nav, refused, render, see_other, verified,
};
use crate::audit;
use crate::invites::bulk::{BulkAnswer, BulkOptions, BulkReport};
use crate::invites::jobs::{JobPage, JobStatus};
use crate::invites::orgs::SettingsChange;

/// The nav and the page's own controls, in one batch.
async fn nav(app: &InviteApp, me: &SignedIn, org: &str, current: &str) -> (Vec<Value>, bool) {
    let allowed = app.service.allowed(&me.actor(), nav_controls(org)).await;
    let manage = allowed.on_org("organization.manage", org);
    (org_nav(org, &allowed, current), manage)
}

/// The bulk page, with a report when a file was just read.
async fn bulk_page(
    app: &InviteApp,
    me: &SignedIn,
    org: &str,
    report: Option<&BulkReport>,
    refusal: Option<Refusal>,
    status: StatusCode,
) -> Response {
    let (nav, _) = nav(app, me, org, "bulk").await;
    let ctx = context! {
        me => &me.email, csrf => &me.csrf, nav, org,
        report => report.map(|r| context! {
            valid => r.valid, invalid => r.invalid, written => r.written,
            rows => r.rows.iter().map(|row| context! {
                row => row.row, email => &row.email, outcome => &row.outcome, error => &row.error,
            }).collect::<Vec<_>>(),
        }),
        error => refusal.map(|r| r.message),
    };
    render("console/pages/bulk.html", status, ctx)
}

/// `GET /console/orgs/{org}/bulk`: the upload form, for whoever may invite.
pub async fn bulk_form(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
) -> Response {
    // Asked as the upload is: whoever may not invite sees the refusal.
    if let Err(e) = app
        .service
        .form_choices(&me.actor(), "users.invite", &org, app.clock.now())
        .await
    {
        return refused(&me, Refusal::from(e));
    }
    bulk_page(&app, &me, &org, None, None, StatusCode::OK).await
}

/// The upload's parts.
#[derive(Debug, Default)]
struct Upload {
    csrf: String,
    csv: String,
    options: BulkOptions,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, String> {
    let mut upload = Upload {
        options: BulkOptions {
            send: false,
            ..BulkOptions::default()
        },
        ..Upload::default()
    };
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(upload),
            Err(e) => return Err(e.body_text()),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let text = field.text().await.map_err(|e| e.body_text())?;
        match name.as_str() {
            "csrf" => upload.csrf = text,
            "file" => upload.csv = text,
            "dry_run" => upload.options.dry_run = true,
            "import_valid" => upload.options.import_valid = true,
            "send" => upload.options.send = true,
            _ => {}
        }
    }
}

/// `POST /console/orgs/{org}/bulk` (multipart: `csrf`, `file`, and the
/// checkboxes `dry_run`, `import_valid`, `send`).
pub async fn bulk_upload(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let upload = match multipart {
        Ok(multipart) => read_upload(multipart).await,
        Err(e) => Err(e.body_text()),
    };
    // The CSRF check comes first; an unreadable form has no token to check.
    let upload = match upload {
        Ok(upload) => upload,
        Err(_) => {
            if let Err(page) = check_csrf(&me, "") {
                return *page;
            }
            return refused(
                &me,
                Refusal::invalid("file", "the upload could not be read"),
            );
        }
    };
    if let Err(page) = check_csrf(&me, &upload.csrf) {
        return *page;
    }
    let answer = app
        .service
        .bulk_invite(
            &me.actor(),
            &org,
            &upload.csv,
            upload.options,
            app.clock.now(),
        )
        .await;
    match answer {
        Ok(BulkAnswer::Report(report)) => {
            bulk_page(&app, &me, &org, Some(&report), None, StatusCode::OK).await
        }
        Ok(BulkAnswer::Job(job)) => see_other(&format!("/console/orgs/{org}/bulk/{}", job.job_id)),
        Err(e) => {
            let refusal = Refusal::from(e);
            if refusal.status == StatusCode::FORBIDDEN {
                return refused(&me, refusal);
            }
            let status = refusal.status;
            bulk_page(&app, &me, &org, None, Some(refusal), status).await
        }
    }
}

/// `GET /console/orgs/{org}/bulk/{job}?after=`: a job's progress and its
/// rows, a page at a time.
pub async fn bulk_job(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, job)): Path<(String, String)>,
    Query(page): Query<JobPage>,
) -> Response {
    let status: JobStatus = match app
        .service
        .bulk_job(&me.actor(), &org, &job, page, app.clock.now())
        .await
    {
        Ok(status) => status,
        Err(e) => return refused(&me, Refusal::from(e)),
    };
    let (nav, _) = nav(&app, &me, &org, "bulk").await;
    let ctx = context! {
        me => &me.email, csrf => &me.csrf, nav, org,
        job => context! {
            id => &status.job_id, state => status.state, total => status.total,
            processed => status.processed, succeeded => status.succeeded,
            failed => status.failed, failure_reason => &status.failure_reason,
            next_after => status.next_after,
            rows => status.rows.iter().map(|row| context! {
                row => row.row, email => &row.email, outcome => &row.outcome,
                error => row.error.as_ref().map(|e| e.message.clone()),
            }).collect::<Vec<_>>(),
        },
    };
    render("console/pages/bulk.html", StatusCode::OK, ctx)
}

/// A page's query after a redirect: the notice to show.
#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: Option<String>,
}

impl NoticeQuery {
    /// The notice's code.
    pub(super) fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }
}

async fn departments_page(
    app: &InviteApp,
    me: &SignedIn,
    org: &str,
    refusal: Option<Refusal>,
    notice: Option<&str>,
) -> Response {
    let list = match app
        .service
        .departments(&me.actor(), org, app.clock.now())
        .await
    {
        Ok(list) => list,
        Err(e) => return refused(me, Refusal::from(e)),
    };
    let (nav, manage) = nav(app, me, org, "departments").await;
    let status = refusal.as_ref().map_or(StatusCode::OK, |r| r.status);
    let ctx = context! {
        me => &me.email, csrf => &me.csrf, nav, org, manage,
        departments => list.iter().map(|(id, name)| context! { id, name }).collect::<Vec<_>>(),
        error_field => refusal.as_ref().and_then(|r| r.field.clone()),
        error => refusal.map(|r| r.message),
        notice => notice.and_then(notice_text),
    };
    render("console/pages/departments.html", status, ctx)
}

/// `GET /console/orgs/{org}/departments`.
pub async fn departments(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    departments_page(&app, &me, &org, None, query.notice.as_deref()).await
}

/// `POST /console/orgs/{org}/departments` (`department` id, `name`).
pub async fn save_department(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match verified(&me, form) {
        Ok(fields) => fields,
        Err(page) => return *page,
    };
    let saved = app
        .service
        .save_department(
            &me.actor(),
            &org,
            fields.get("department"),
            fields.get("name"),
            app.clock.now(),
        )
        .await;
    match saved {
        Ok(()) => see_other(&format!(
            "/console/orgs/{org}/departments?notice=department"
        )),
        Err(e) => {
            let refusal = Refusal::from(e);
            if refusal.status == StatusCode::FORBIDDEN {
                return refused(&me, refusal);
            }
            departments_page(&app, &me, &org, Some(refusal), None).await
        }
    }
}

/// `POST /console/orgs/{org}/departments/{department}/delete`.
pub async fn delete_department(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path((org, department)): Path<(String, String)>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if let Err(page) = verified(&me, form) {
        return *page;
    }
    match app
        .service
        .delete_department(&me.actor(), &org, &department, app.clock.now())
        .await
    {
        Ok(()) => see_other(&format!(
            "/console/orgs/{org}/departments?notice=department-deleted"
        )),
        Err(e) => refused(&me, Refusal::from(e)),
    }
}

/// `GET /console/orgs/{org}/audit?action=&user=`: the audit trail, newest
/// last, as the API's.
pub async fn audit(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
    Query(filter): Query<audit::Filter>,
) -> Response {
    let filter = audit::Filter {
        action: filter.action.filter(|a| !a.trim().is_empty()),
        user: filter.user.filter(|u| !u.trim().is_empty()),
        ..filter
    };
    let records = match app
        .service
        .audit_trail(&me.actor(), &org, &filter, app.clock.now())
        .await
    {
        Ok(records) => records,
        Err(e) => return refused(&me, Refusal::from(e)),
    };
    let (nav, _) = nav(&app, &me, &org, "audit").await;
    let ctx = context! {
        me => &me.email, csrf => &me.csrf, nav, org,
        action => filter.action.unwrap_or_default(),
        user => filter.user.unwrap_or_default(),
        records => records.iter().map(|r| context! {
            at => r.at, actor => &r.actor, target => &r.target, action => &r.action,
            outcome => &r.outcome,
            before => r.before.as_ref().map(ToString::to_string),
            after => r.after.as_ref().map(ToString::to_string),
        }).collect::<Vec<_>>(),
    };
    render("console/pages/audit.html", StatusCode::OK, ctx)
}

async fn security_page(
    app: &InviteApp,
    me: &SignedIn,
    org: &str,
    refusal: Option<Refusal>,
    notice: Option<&str>,
) -> Response {
    let settings = match app
        .service
        .org_settings(&me.actor(), org, app.clock.now())
        .await
    {
        Ok(settings) => settings,
        Err(e) => return refused(me, Refusal::from(e)),
    };
    let (nav, manage) = nav(app, me, org, "security").await;
    let status = refusal.as_ref().map_or(StatusCode::OK, |r| r.status);
    let ctx = context! {
        me => &me.email, csrf => &me.csrf, nav, org, manage,
        name => &settings.name, require_mfa => settings.require_mfa,
        error_field => refusal.as_ref().and_then(|r| r.field.clone()),
        error => refusal.map(|r| r.message),
        notice => notice.and_then(notice_text),
    };
    render("console/pages/security.html", status, ctx)
}

/// `GET /console/orgs/{org}/security`: the Security Policies.
pub async fn security(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    security_page(&app, &me, &org, None, query.notice.as_deref()).await
}

/// `POST /console/orgs/{org}/security` (`name`, the checkbox `require_mfa`).
pub async fn save_security(
    Extension(app): Extension<InviteApp>,
    me: SignedIn,
    Path(org): Path<String>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = match verified(&me, form) {
        Ok(fields) => fields,
        Err(page) => return *page,
    };
    let change = SettingsChange {
        name: Some(fields.get("name").to_owned()).filter(|n| !n.is_empty()),
        require_mfa: Some(fields.has("require_mfa")),
    };
    match app
        .service
        .update_org_settings(&me.actor(), &org, &change, app.clock.now())
        .await
    {
        Ok(_) => see_other(&format!("/console/orgs/{org}/security?notice=security")),
        Err(e) => {
            let refusal = Refusal::from(e);
            if refusal.status == StatusCode::FORBIDDEN {
                return refused(&me, refusal);
            }
            security_page(&app, &me, &org, Some(refusal), None).await
        }
    }
}
