//! `GET/POST /console/sign-in` and `POST /console/sign-out`. The sign-in
//! form, like the other forms shown before a session exists (password
//! reset), carries a double-submit token bound to a random secret in an
//! `HttpOnly` cookie (login CSRF: nobody can sign a browser in to their
//! own account). A successful sign-in always opens a new session id and
//! ends the one the browser presented (no session fixation).

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

use super::session::{SESSION_COOKIE, clear_session_cookie, csrf_matches, set_session_cookie};
use super::{ClientAddr, ConsoleApp, cookie, encode_query, failure, forged, safe_next, see_other};
use crate::accounts::{AccountError, Stage};
use crate::http::link_page::LinkCsrf;
use crate::invites::token::random_secret;

/// The forms shown before a session exists: one cookie for the console.
const LOGIN_CSRF: LinkCsrf = LinkCsrf {
    cookie: "cedargate_login",
    path: "/console",
    label: b"cedargate console login csrf\0",
};

/// What the sign-in and reset-request forms' tokens are bound to (a reset
/// link's form binds to its link).
pub(super) const LOGIN_FORM: &str = "console sign-in";

/// A pre-session form's token for the form bound to `binding`, and the
/// response decorator that sets its cookie. The cookie's secret is reused
/// when present, so that two such pages open in two tabs both work.
pub(super) fn login_csrf(headers: &HeaderMap, binding: &str) -> (String, String) {
    let secret = cookie(headers, LOGIN_CSRF.cookie)
        .filter(|s| {
            s.len() == 43
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .unwrap_or_else(random_secret);
    let field = LOGIN_CSRF.field(&secret, binding);
    (secret, field)
}

/// Sets the pre-session token's cookie (`secret`) on `response`.
pub(super) fn set_login_cookie(response: &mut Response, secret: &str, secure: bool) {
    LOGIN_CSRF.set_cookie(response, secret, secure);
}

/// The pre-session form bound to `binding` carries the token of the cookie.
pub(super) fn login_csrf_ok(headers: &HeaderMap, field: &str, binding: &str) -> bool {
    LOGIN_CSRF.verifies(headers, field, binding)
}

/// `?next=` of the sign-in page.
#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    signed_out: Option<String>,
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

struct FormPage<'a> {
    next: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
}

fn form_page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    status: StatusCode,
    page: &FormPage<'_>,
) -> Response {
    let (secret, csrf) = login_csrf(headers, LOGIN_FORM);
    let mut response = super::render(
        "console/sign_in.html",
        status,
        context! {
            csrf, next => page.next, email => page.email, error => page.error, notice => page.notice,
        },
    );
    set_login_cookie(&mut response, &secret, app.secure());
    response
}

/// `GET /console/sign-in`.
pub(super) async fn show(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Response {
    let query = query.ok().map(|Query(q)| q);
    let next = safe_next(query.as_ref().and_then(|q| q.next.as_deref()));
    let notice = query
        .as_ref()
        .and_then(|q| q.signed_out.as_ref())
        .map(|_| "You are signed out.");
    let page = FormPage {
        next: &next,
        email: "",
        error: None,
        notice,
    };
    form_page(&app, &headers, StatusCode::OK, &page)
}

/// `POST /console/sign-in`.
pub(super) async fn submit(
    State(app): State<ConsoleApp>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return forged();
    };
    if !login_csrf_ok(&headers, &form.csrf, LOGIN_FORM) {
        return forged();
    }
    let next = safe_next(form.next.as_deref());
    let now = app.now();
    let verified = app
        .accounts
        .check_password(&form.email, &form.password, address, now)
        .await;
    let refused = |status, error: &str| {
        let page = FormPage {
            next: &next,
            email: form.email.trim(),
            error: Some(error),
            notice: None,
        };
        form_page(&app, &headers, status, &page)
    };
    let verified = match verified {
        Ok(verified) => verified,
        Err(AccountError::InvalidCredentials) => {
            return refused(StatusCode::UNAUTHORIZED, "E-mail or password is wrong.");
        }
        Err(AccountError::Throttled { retry_after_secs }) => {
            let minutes = (retry_after_secs + 59) / 60;
            let mut page = refused(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many failed attempts. Try again in {minutes} minute{}.",
                    if minutes == 1 { "" } else { "s" }
                ),
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                page.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return page;
        }
        Err(e) => return failure(e),
    };
    let stage = if verified.enrolled {
        Stage::Totp
    } else if verified.must_enroll {
        Stage::Enroll
    } else {
        Stage::Complete
    };
    let presented = cookie(&headers, SESSION_COOKIE);
    let opened = app
        .accounts
        .open_session(&verified.user_id, stage, false, presented.as_deref(), now)
        .await;
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) => return failure(e),
    };
    let location = match stage {
        Stage::Complete => next,
        Stage::Totp => format!("/console/two-step?next={}", encode_query(&next)),
        Stage::Enroll => "/console/two-step/enroll".to_owned(),
    };
    let mut response = see_other(&location);
    set_session_cookie(&mut response, &opened.id, app.secure());
    response
}

/// A form carrying only its CSRF token.
#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

/// `POST /console/sign-out`: ends the session (any stage) and clears the
/// cookie.
pub(super) async fn sign_out(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let Some(id) = cookie(&headers, SESSION_COOKIE) else {
        return see_other("/console/sign-in");
    };
    let session = match app.accounts.session(&id, app.now()).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            let mut response = see_other("/console/sign-in");
            clear_session_cookie(&mut response, app.secure());
            return response;
        }
        Err(e) => return failure(e),
    };
    let submitted = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !csrf_matches(&session.csrf, &submitted) {
        return forged();
    }
    if let Err(e) = app.accounts.end_session(&id).await {
        return failure(e);
    }
    let mut response = see_other("/console/sign-in?signed_out=1");
    clear_session_cookie(&mut response, app.secure());
    response
}
