//! Password reset pages: asking for a link (`/console/password-reset`,
//! the same answer whatever the address) and the link's page
//! (`/console/password-reset/{secret}`: a new password with the acceptance
//! page's rules). The link's secret is redacted from request spans.

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

use super::sign_in::{LOGIN_FORM, login_csrf, login_csrf_ok, set_login_cookie};
use super::{ConsoleApp, failure, forged, message};
use crate::accounts::AccountError;
use crate::invites::service::{
    NewPassword, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, PasswordProblem,
};

/// `GET /console/password-reset`.
pub(super) async fn ask(State(app): State<ConsoleApp>, headers: HeaderMap) -> Response {
    let (secret, csrf) = login_csrf(&headers, LOGIN_FORM);
    let mut response = super::render(
        "console/reset_request.html",
        StatusCode::OK,
        context! { csrf },
    );
    set_login_cookie(&mut response, &secret, app.secure());
    response
}

/// The request form.
#[derive(Debug, Deserialize)]
pub(super) struct RequestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// `POST /console/password-reset`.
pub(super) async fn request(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    form: Result<Form<RequestForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return forged();
    };
    if !login_csrf_ok(&headers, &form.csrf, LOGIN_FORM) {
        return forged();
    }
    if let Err(e) = app.accounts.request_reset(&form.email, app.now()).await {
        return failure(e);
    }
    message(
        StatusCode::OK,
        "Check your e-mail",
        "If an account uses this address, we sent it a link to choose a new password. The link works once, for an hour.",
        Some(("/console/sign-in", "Back to sign-in")),
    )
}

fn unavailable() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "This link is unavailable",
        "The password reset link is unknown, already used or expired. Ask for a new one.",
        Some(("/console/password-reset", "Ask for a new link")),
    )
}

fn form_page(
    app: &ConsoleApp,
    headers: &HeaderMap,
    token: &str,
    email: &str,
    status: StatusCode,
    problem: Option<PasswordProblem>,
) -> Response {
    let (secret, csrf) = login_csrf(headers, token);
    let error = problem.map(|p| match p {
        PasswordProblem::Differs => "The two passwords differ.".to_owned(),
        PasswordProblem::Length => format!("Password: {}.", p.describe()),
    });
    let mut response = super::render(
        "console/reset_form.html",
        status,
        context! {
            token, csrf, email, error, error_field => problem.map(PasswordProblem::field),
            min_chars => PASSWORD_MIN_CHARS, max_chars => PASSWORD_MAX_CHARS,
        },
    );
    set_login_cookie(&mut response, &secret, app.secure());
    response
}

/// `GET /console/password-reset/{secret}`.
pub(super) async fn show(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(token)) = token else {
        return unavailable();
    };
    match app.accounts.reset_view(&token, app.now()).await {
        Ok(email) => form_page(&app, &headers, &token, &email, StatusCode::OK, None),
        Err(AccountError::ResetLinkUnavailable) => unavailable(),
        Err(e) => failure(e),
    }
}

/// The new-password form.
#[derive(Debug, Deserialize)]
pub(super) struct SetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_confirm: Option<String>,
}

/// `POST /console/password-reset/{secret}`.
pub(super) async fn set(
    State(app): State<ConsoleApp>,
    headers: HeaderMap,
    token: Result<Path<String>, PathRejection>,
    form: Result<Form<SetForm>, FormRejection>,
) -> Response {
    let (Ok(Path(token)), Ok(Form(form))) = (token, form) else {
        return forged();
    };
    if !login_csrf_ok(&headers, &form.csrf, &token) {
        return forged();
    }
    let choice = NewPassword {
        password: form.password.as_deref(),
        confirmation: Some(form.password_confirm.as_deref()),
    };
    let now = app.now();
    match app.accounts.reset_password(&token, choice, now).await {
        Ok(()) => message(
            StatusCode::OK,
            "Your password is changed",
            "Every session of your account was signed out. Sign in with the new password.",
            Some(("/console/sign-in", "Sign in")),
        ),
        Err(AccountError::Password(problem)) => match app.accounts.reset_view(&token, now).await {
            Ok(email) => form_page(
                &app,
                &headers,
                &token,
                &email,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(problem),
            ),
            Err(_) => unavailable(),
        },
        Err(AccountError::ResetLinkUnavailable) => unavailable(),
        Err(e) => failure(e),
    }
}
