//! Two-step verification pages: the code asked after the password
//! (`/console/two-step`) and enrollment (`/console/two-step/enroll`: QR
//! code and key, confirmation with a first code, then the recovery codes
//! once). Completing either gives the session a new id, complete and with
//! `mfa`.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

use super::session::{Current, csrf_matches, set_session_cookie, unfinished};
use super::{ConsoleApp, failure, forged, safe_next, see_other};
use crate::accounts::{AccountError, Stage};

/// `?next=` of the code page.
#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// The code form.
#[derive(Debug, Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: Option<String>,
}

fn code_page(current: &Current, next: &str, status: StatusCode, error: Option<&str>) -> Response {
    super::render(
        "console/two_step.html",
        status,
        context! { csrf => &current.session.csrf, next, error },
    )
}

/// `GET /console/two-step`.
pub(super) async fn show(
    current: Current,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Response {
    if current.session.stage != Stage::Totp {
        return unfinished(current.session.stage).unwrap_or_else(|| see_other("/console"));
    }
    let next = safe_next(query.ok().and_then(|Query(q)| q.next).as_deref());
    code_page(&current, &next, StatusCode::OK, None)
}

/// `POST /console/two-step`.
pub(super) async fn submit(
    State(app): State<ConsoleApp>,
    current: Current,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return forged();
    };
    if !csrf_matches(&current.session.csrf, &form.csrf) {
        return forged();
    }
    if current.session.stage != Stage::Totp {
        return unfinished(current.session.stage).unwrap_or_else(|| see_other("/console"));
    }
    let next = safe_next(form.next.as_deref());
    let now = app.now();
    let s = &current.session;
    match app
        .accounts
        .check_second_step(&s.user_id, &s.email, &form.code, now)
        .await
    {
        Ok(()) => {}
        Err(AccountError::InvalidTotp) => {
            return code_page(
                &current,
                &next,
                StatusCode::UNAUTHORIZED,
                Some("The code is wrong or was already used."),
            );
        }
        Err(AccountError::Throttled { .. }) => {
            return code_page(
                &current,
                &next,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed attempts. Try again later."),
            );
        }
        Err(e) => return failure(e),
    }
    complete(&app, &current, &next, now).await
}

/// Gives the session of `current` a new id, complete with `mfa`, and goes
/// to `next`.
async fn complete(app: &ConsoleApp, current: &Current, next: &str, now: i64) -> Response {
    match app
        .accounts
        .advance_session(&current.id, Stage::Complete, true, now)
        .await
    {
        Ok(Some(opened)) => {
            let mut response = see_other(next);
            set_session_cookie(&mut response, &opened.id, app.secure());
            response
        }
        Ok(None) => see_other("/console/sign-in"),
        Err(e) => failure(e),
    }
}

fn enroll_page(
    app: &ConsoleApp,
    current: &Current,
    enrollment: &crate::accounts::Enrollment,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let _ = app;
    let required = current.session.stage == Stage::Enroll;
    let me = (current.session.stage == Stage::Complete).then_some(&current.session.email);
    super::render(
        "console/enroll.html",
        status,
        context! {
            csrf => &current.session.csrf, me, required, error,
            qr => &enrollment.qr_png_base64, secret => &enrollment.secret,
        },
    )
}

/// `GET /console/two-step/enroll`.
pub(super) async fn enroll(State(app): State<ConsoleApp>, current: Current) -> Response {
    if current.session.stage == Stage::Totp {
        return see_other("/console/two-step");
    }
    let s = &current.session;
    match app
        .accounts
        .enrollment(&s.user_id, &s.email, app.now())
        .await
    {
        Ok(enrollment) => enroll_page(&app, &current, &enrollment, StatusCode::OK, None),
        Err(AccountError::Enrollment(_)) => see_other("/console/account"),
        Err(e) => failure(e),
    }
}

/// The confirmation form.
#[derive(Debug, Deserialize)]
pub(super) struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// `POST /console/two-step/enroll`: confirms with a first code, completes
/// the session with `mfa`, shows the recovery codes once.
pub(super) async fn confirm(
    State(app): State<ConsoleApp>,
    current: Current,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return forged();
    };
    if !csrf_matches(&current.session.csrf, &form.csrf) {
        return forged();
    }
    if current.session.stage == Stage::Totp {
        return see_other("/console/two-step");
    }
    let now = app.now();
    let s = &current.session;
    let codes = match app
        .accounts
        .confirm_enrollment(&s.user_id, &s.email, &form.code, now)
        .await
    {
        Ok(codes) => codes,
        Err(AccountError::InvalidTotp | AccountError::Throttled { .. }) => {
            let error = "The code is wrong. Enter the code the app shows now.";
            return match app.accounts.enrollment(&s.user_id, &s.email, now).await {
                Ok(enrollment) => enroll_page(
                    &app,
                    &current,
                    &enrollment,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(error),
                ),
                Err(e) => failure(e),
            };
        }
        Err(AccountError::Enrollment(_)) => return see_other("/console/account"),
        Err(e) => return failure(e),
    };
    let opened = match app
        .accounts
        .advance_session(&current.id, Stage::Complete, true, now)
        .await
    {
        Ok(Some(opened)) => opened,
        Ok(None) => return see_other("/console/sign-in"),
        Err(e) => return failure(e),
    };
    let mut response = super::render(
        "console/recovery_codes.html",
        StatusCode::OK,
        context! {
            heading => "Two-step verification is on",
            codes, next => "/console", me => &s.email, csrf => &opened.csrf,
        },
    );
    set_session_cookie(&mut response, &opened.id, app.secure());
    response
}
