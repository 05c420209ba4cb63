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
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::{Environment, context};
use serde::Deserialize;

use axum::Router;
use axum::routing::{get, post};

use super::AppState;
use super::admin::InviteApp;
use super::error::ApiError;
use super::extract::RequestId;
use super::link_page::{self, LinkCsrf, secure_cookies};
use crate::invites::service::{
    Acceptance, InvitationView, NewPassword, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
    PasswordProblem,
};
use crate::invites::token::random_secret;
use crate::invites::{InviteError, InviteService};

/// The acceptance form's CSRF token, bound to the invitation link.
const CSRF: LinkCsrf = LinkCsrf {
    cookie: "cedargate_csrf",
    path: "/invite",
    label: b"cedargate invite csrf\0",
};

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

fn render(status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    link_page::render(&TEMPLATES, status, name, ctx)
}

fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    render(
        status,
        "message.html",
        context! { heading, message => text },
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
    external_sign_in: bool,
) -> Response {
    let secret = random_secret();
    let csrf = csrf_field(&secret, token);
    let ctx = context! {
        token, csrf, error,
        org_name => &view.org_name, inviter => &view.inviter, email => &view.email,
        needs_password => view.needs_password, external_sign_in,
        min_chars => PASSWORD_MIN_CHARS, max_chars => PASSWORD_MAX_CHARS,
    };
    let mut response = render(status, "invite.html", ctx);
    CSRF.set_cookie(&mut response, &secret, secure);
    response
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
        Ok(view) => form_page(
            &token,
            &view,
            None,
            StatusCode::OK,
            secure_cookies(&app),
            app.service.settings.accept_without_password,
        ),
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

fn csrf_field(secret: &str, token: &str) -> String {
    CSRF.field(secret, token)
}

fn csrf_ok(headers: &HeaderMap, field: &str, token: &str) -> bool {
    CSRF.verifies(headers, field, token)
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
                app.service.settings.accept_without_password,
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
    use axum::http::{HeaderValue, header};

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
        let page = form_page("tok", &view, Some("bad"), StatusCode::OK, true, false);
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
