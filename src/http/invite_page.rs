//! The public acceptance page behind an invitation link: shows the
//! organization and who invited, lets the person choose a password and
//! accept, or decline. Server-rendered HTML that works without JavaScript.
//!
//! The link's secret is in the page path (`/invite/<secret>`) only because
//! an e-mail link must carry it; it is redacted from request spans, the
//! page is `no-store` and `no-referrer`, and the forms post it in the body.
//! Forms carry a double-submit CSRF token (cookie + hidden field).

use std::sync::LazyLock;

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;
use super::admin::InviteApp;
use super::error::ApiError;
use super::extract::RequestId;
use crate::invites::service::{
    Acceptance, InvitationView, NewPassword, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
    PasswordProblem,
};
use crate::invites::{InviteError, InviteService};

const CSRF_COOKIE: &str = "cedargate_csrf";

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // The templates are compiled in; a syntax error fails the unit test below.
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("invite.html", include_str!("templates/invite.html")),
        ("message.html", include_str!("templates/message.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "invalid template");
        }
    }
    env
});

fn render(
    status: StatusCode,
    name: &str,
    ctx: minijinja::Value,
    csrf_cookie: Option<&str>,
) -> Response {
    let body = TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot render a page");
            "<!doctype html><title>error</title><p>Something went wrong.</p>".to_owned()
        });
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    if let Some(value) = csrf_cookie
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={value}; Path=/invite; HttpOnly; SameSite=Strict"
        ))
    {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    render(
        status,
        "message.html",
        context! { heading, message => text },
        None,
    )
}

/// The page for a failed call. The status is the JSON API's (the one
/// mapping, in `error.rs`, which also logs internal errors); only the words
/// are the page's.
fn failure(e: InviteError) -> Response {
    let (heading, text) = match &e {
        // One page for every dead link, so that links cannot be probed (R59).
        InviteError::LinkUnavailable => (
            "This link is unavailable",
            "The invitation link is unknown, already used, expired, revoked or declined. Ask your administrator to send a new invitation.",
        ),
        InviteError::Unavailable => (
            "Not available",
            "This sidecar does not run the invitation service.",
        ),
        _ => ("Something went wrong", "Please try again later."),
    };
    let status = ApiError::from(e).status();
    message(status, heading, text)
}

fn form_page(
    token: &str,
    view: &InvitationView,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let csrf = crate::invites::token::random_secret();
    let ctx = context! {
        token, csrf, error,
        org_name => &view.org_name, inviter => &view.inviter, email => &view.email,
        needs_password => view.needs_password,
        min_chars => PASSWORD_MIN_CHARS, max_chars => PASSWORD_MAX_CHARS,
    };
    render(status, "invite.html", ctx, Some(&csrf))
}

/// The public acceptance page (no token).
pub fn router(app: InviteApp) -> Router<AppState> {
    Router::new()
        .route("/invite/{token}", get(show))
        .route("/invite/accept", post(accept))
        .route("/invite/decline", post(decline))
        .with_state(app)
}

/// `GET /invite/{token}`: the acceptance page.
pub async fn show(
    State(app): State<InviteApp>,
    token: Result<Path<String>, PathRejection>,
) -> Response {
    // A secret that is not even UTF-8 is one more unknown link, and gets
    // the same page as every other unavailable link (R59).
    let Ok(Path(token)) = token else {
        return failure(InviteError::LinkUnavailable);
    };
    match app.service.view_invitation(&token, app.clock.now()).await {
        Ok(view) => form_page(&token, &view, None, StatusCode::OK),
        Err(e) => failure(e),
    }
}

/// The accept form.
#[derive(Debug, Deserialize)]
pub struct AcceptForm {
    token: String,
    csrf: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    password_confirm: Option<String>,
}

/// The decline form.
#[derive(Debug, Deserialize)]
pub struct DeclineForm {
    token: String,
    csrf: String,
}

fn csrf_ok(headers: &HeaderMap, field: &str) -> bool {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(&format!("{CSRF_COOKIE}="))
                .map(str::to_owned)
        });
    match cookie {
        Some(cookie) if !field.is_empty() => bool::from(cookie.as_bytes().ct_eq(field.as_bytes())),
        _ => false,
    }
}

fn forged() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Please open the link again",
        "This form could not be verified (it may be old or sent from another site). Open the link from your e-mail again.",
    )
}

/// A posted form that parsed and whose CSRF field matches the cookie, with
/// the invitation service; otherwise the page to answer with.
fn verified<'s, F>(
    app: &'s InviteApp,
    headers: &HeaderMap,
    form: Result<Form<F>, FormRejection>,
    csrf: impl Fn(&F) -> &str,
) -> Result<(F, &'s InviteService), Box<Response>> {
    let Ok(Form(form)) = form else {
        return Err(Box::new(message(
            StatusCode::BAD_REQUEST,
            "Incomplete form",
            "Open the link from your e-mail again.",
        )));
    };
    if !csrf_ok(headers, csrf(&form)) {
        return Err(Box::new(forged()));
    }
    Ok((form, &app.service))
}

/// `POST /invite/accept`.
pub async fn accept(
    State(app): State<InviteApp>,
    request_id: RequestId,
    headers: HeaderMap,
    form: Result<Form<AcceptForm>, FormRejection>,
) -> Response {
    let (form, service) = match verified(&app, &headers, form, |f: &AcceptForm| &f.csrf) {
        Ok(checked) => checked,
        Err(page) => return *page,
    };
    let choice = NewPassword {
        password: form.password.as_deref(),
        confirmation: Some(form.password_confirm.as_deref()),
    };
    let accepted = service
        .accept(&form.token, choice, request_id.audited(), app.clock.now())
        .await;
    match accepted {
        Ok(Acceptance::Accepted(accepted)) => message(
            StatusCode::OK,
            &format!("Welcome to {}", accepted.org_name),
            &format!("You joined {}. You can close this page.", accepted.org_name),
        ),
        Ok(Acceptance::PasswordRefused { view, problem }) => {
            let text = match problem {
                PasswordProblem::Differs => "The two passwords differ.".to_owned(),
                PasswordProblem::Length => format!("Password: {}.", problem.describe()),
            };
            form_page(
                &form.token,
                &view,
                Some(&text),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(e) => failure(e),
    }
}

/// `POST /invite/decline`.
pub async fn decline(
    State(app): State<InviteApp>,
    request_id: RequestId,
    headers: HeaderMap,
    form: Result<Form<DeclineForm>, FormRejection>,
) -> Response {
    let (form, service) = match verified(&app, &headers, form, |f: &DeclineForm| &f.csrf) {
        Ok(checked) => checked,
        Err(page) => return *page,
    };
    match service
        .decline(&form.token, request_id.audited(), app.clock.now())
        .await
    {
        Ok(()) => message(
            StatusCode::OK,
            "Invitation declined",
            "You declined the invitation. Nothing else will happen.",
        ),
        Err(e) => failure(e),
    }
}

/// Path as recorded in request spans: the secret of `/invite/<secret>` is hidden.
pub fn redact_path(path: &str) -> &str {
    match path.strip_prefix("/invite/") {
        Some("accept" | "decline") | None => path,
        Some(_) => "/invite/{token}",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders() {
        let view = InvitationView {
            org_name: "Acme <Energy>".to_owned(),
            inviter: "Olivia Owner".to_owned(),
            email: "bob@example.com".to_owned(),
            needs_password: true,
            expires_at: 0,
        };
        let page = form_page("tok", &view, Some("bad"), StatusCode::OK);
        assert_eq!(page.status(), StatusCode::OK);
        let msg = message(StatusCode::OK, "h", "m");
        assert_eq!(msg.status(), StatusCode::OK);
        assert!(TEMPLATES.get_template("invite.html").is_ok());
    }

    #[test]
    fn the_link_secret_is_redacted_from_paths() {
        assert_eq!(redact_path("/invite/SECRET"), "/invite/{token}");
        assert_eq!(redact_path("/invite/accept"), "/invite/accept");
        assert_eq!(redact_path("/v1/is_authorized"), "/v1/is_authorized");
    }

    #[test]
    fn csrf_needs_the_cookie_to_match_the_field() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; cedargate_csrf=xyz"),
        );
        assert!(csrf_ok(&headers, "xyz"));
        assert!(!csrf_ok(&headers, "xy"));
        assert!(!csrf_ok(&HeaderMap::new(), "xyz"));
        assert!(!csrf_ok(&headers, ""));
    }
}
