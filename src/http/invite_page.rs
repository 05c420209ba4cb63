//! The public acceptance page behind an invitation link: shows the
//! organization and who invited, lets the person choose a password and
//! accept, or decline. Server-rendered HTML that works without JavaScript.
//!
//! The link's secret is in the page path (`/invite/<secret>`) only because
//! an e-mail link must carry it; it is redacted from request spans, the
//! page is `no-store` and `no-referrer`, and the forms post it in the body.
//! Forms carry a double-submit CSRF token bound to the link: the cookie
//! holds a random secret (`HttpOnly`, `SameSite=Strict`, path `/invite`,
//! `Secure` when the public URL is https), the hidden field a hash of that
//! secret and the link, so a pair obtained on one link's page verifies no
//! other link's form.

use std::sync::LazyLock;

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use minijinja::{Environment, context};
use serde::Deserialize;
use sha2::{Digest, Sha256};
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
use crate::invites::token::{hash_token, random_secret};
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

/// The CSRF cookie a page sets.
struct CsrfCookie<'a> {
    /// The random secret.
    secret: &'a str,
    /// People reach the page over https.
    secure: bool,
}

fn render(
    status: StatusCode,
    name: &str,
    ctx: minijinja::Value,
    csrf_cookie: Option<CsrfCookie<'_>>,
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
    if let Some(CsrfCookie { secret, secure }) = csrf_cookie
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={secret}; Path=/invite; HttpOnly; SameSite=Strict{}",
            if secure { "; Secure" } else { "" }
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
    secure: bool,
) -> Response {
    let secret = random_secret();
    let csrf = csrf_field(&secret, token);
    let ctx = context! {
        token, csrf, error,
        org_name => &view.org_name, inviter => &view.inviter, email => &view.email,
        needs_password => view.needs_password,
        min_chars => PASSWORD_MIN_CHARS, max_chars => PASSWORD_MAX_CHARS,
    };
    render(
        status,
        "invite.html",
        ctx,
        Some(CsrfCookie {
            secret: &secret,
            secure,
        }),
    )
}

/// Whether people reach the page over https: the public URL's scheme, as
/// the links in the e-mails have it.
fn secure_cookies(app: &InviteApp) -> bool {
    app.service
        .settings
        .public_url
        .trim_start()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
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
        Ok(view) => form_page(&token, &view, None, StatusCode::OK, secure_cookies(&app)),
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

/// A posted form: the link it answers and its CSRF field.
trait Posted {
    fn token(&self) -> &str;
    fn csrf(&self) -> &str;
}

impl Posted for AcceptForm {
    fn token(&self) -> &str {
        &self.token
    }

    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl Posted for DeclineForm {
    fn token(&self) -> &str {
        &self.token
    }

    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The CSRF field that goes with the cookie's `secret` on the page of the
/// link `token`. The secret is random per page and fixed-length, and only
/// the cookie (`HttpOnly`) holds it: the field, which is in the page, does
/// not reveal it, and it binds the pair to this one link.
fn csrf_field(secret: &str, token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"cedargate invite csrf\0")
        .chain_update(secret.as_bytes())
        .chain_update(b"\0")
        .chain_update(hash_token(token).as_bytes())
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// The cookie's secret is present and `field` is its field for the link
/// `token` (compared in constant time).
fn csrf_ok(headers: &HeaderMap, field: &str, token: &str) -> bool {
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
        Some(secret) if !secret.is_empty() && !field.is_empty() => bool::from(
            csrf_field(&secret, token)
                .as_bytes()
                .ct_eq(field.as_bytes()),
        ),
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

/// A posted form that parsed and whose CSRF field matches the cookie for
/// its link, with the invitation service; otherwise the page to answer with.
fn verified<'s, F: Posted>(
    app: &'s InviteApp,
    headers: &HeaderMap,
    form: Result<Form<F>, FormRejection>,
) -> Result<(F, &'s InviteService), Box<Response>> {
    let Ok(Form(form)) = form else {
        return Err(Box::new(message(
            StatusCode::BAD_REQUEST,
            "Incomplete form",
            "Open the link from your e-mail again.",
        )));
    };
    if !csrf_ok(headers, form.csrf(), form.token()) {
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
    let (form, service) = match verified(&app, &headers, form) {
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
                secure_cookies(&app),
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
    let (form, service) = match verified(&app, &headers, form) {
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
        let page = form_page("tok", &view, Some("bad"), StatusCode::OK, true);
        assert_eq!(page.status(), StatusCode::OK);
        let msg = message(StatusCode::OK, "h", "m");
        assert_eq!(msg.status(), StatusCode::OK);
        assert!(TEMPLATES.get_template("invite.html").is_ok());
    }

    #[test]
    fn an_existing_account_is_asked_for_no_password() {
        let page = |needs_password: bool| {
            TEMPLATES
                .get_template("invite.html")
                .and_then(|t| {
                    t.render(context! {
                        token => "tok", csrf => "c", org_name => "Acme", inviter => "Olivia Owner",
                        email => "rita@example.com", needs_password,
                        min_chars => PASSWORD_MIN_CHARS, max_chars => PASSWORD_MAX_CHARS,
                    })
                })
                .unwrap_or_default()
        };
        let (existing, new) = (page(false), page(true));
        assert!(
            existing.contains("Join Acme with your existing account"),
            "{existing}"
        );
        assert!(!existing.contains("name=\"password\""), "{existing}");
        assert!(new.contains("name=\"password\""), "{new}");
        assert!(!new.contains("existing account"), "{new}");
    }

    #[test]
    fn the_link_secret_is_redacted_from_paths() {
        assert_eq!(redact_path("/invite/SECRET"), "/invite/{token}");
        assert_eq!(redact_path("/invite/accept"), "/invite/accept");
        assert_eq!(redact_path("/v1/is_authorized"), "/v1/is_authorized");
    }

    #[test]
    fn csrf_needs_the_cookie_to_match_the_field_for_the_same_link() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; cedargate_csrf=xyz"),
        );
        let field = csrf_field("xyz", "link-a");
        assert!(csrf_ok(&headers, &field, "link-a"));
        assert!(!csrf_ok(&headers, &field, "link-b"));
        assert!(!csrf_ok(&headers, &field[1..], "link-a"));
        assert!(!csrf_ok(&headers, "xyz", "link-a"));
        assert!(!csrf_ok(&HeaderMap::new(), &field, "link-a"));
        assert!(!csrf_ok(&headers, "", "link-a"));
    }
}
