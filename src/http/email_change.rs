//! Changing a member's e-mail address: the administration route
//! (`POST /v1/orgs/{org}/members/{user}/email`, under the bearer token) and
//! the public confirmation page behind the link mailed to the new address
//! (`GET /email-change/{token}`, `POST /email-change/confirm`).
//!
//! The page confirms only on its form's POST, never on GET: mail scanners
//! open links. As the acceptance page's, the form carries a double-submit
//! CSRF token bound to the link (cookie `cedargate_email_csrf`: a random
//! secret, `HttpOnly`, `SameSite=Strict`, path `/email-change`, `Secure`
//! when the public URL is https; the hidden field a hash of that secret and
//! the link), the page is `no-store` and `no-referrer`, and the link's
//! secret is redacted from request spans ([`redact_path`]).

use std::sync::LazyLock;

use axum::extract::rejection::{FormRejection, PathRejection};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use minijinja::{Environment, context};
use serde::Deserialize;

use super::AppState;
use super::admin::{ActorHeader, InviteApp, actor};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Path, RequestId};
use super::link_page::{self, LinkCsrf, secure_cookies};
use crate::invites::email_change::{EmailChangeInput, EmailChangeRequested, EmailChangeView};
use crate::invites::token::random_secret;
use crate::invites::{Conflict, InviteError};

/// The confirmation form's CSRF token, bound to the link (a pair from an
/// invitation's page never verifies here: the label differs).
const CSRF: LinkCsrf = LinkCsrf {
    cookie: "cedargate_email_csrf",
    path: PAGE_PREFIX,
    label: b"cedargate email-change csrf\0",
};
/// Where the page lives, and the path of its cookie.
const PAGE_PREFIX: &str = "/email-change";

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // The templates are compiled in; a syntax error fails the unit test below.
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        (
            "email_change.html",
            include_str!("templates/email_change.html"),
        ),
        ("message.html", include_str!("templates/message.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "invalid template");
        }
    }
    env
});

/// The administration route (under the bearer token).
pub fn router(app: InviteApp) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/orgs/{org}/members/{user}/email",
            post(request_email_change),
        )
        .with_state(app)
}

/// The public confirmation page (no token).
pub fn page_router(app: InviteApp) -> Router<AppState> {
    Router::new()
        .route("/email-change/{token}", get(show))
        .route("/email-change/confirm", post(confirm))
        .with_state(app)
}

/// Asks for a member's e-mail address, their login in every organization,
/// to change: a one-time link goes to the new address, a notice to the
/// old one, and nothing changes until the link is confirmed.
#[utoipa::path(post, path = "/v1/orgs/{org}/members/{user}/email", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("user" = String, Path)), request_body = EmailChangeInput,
    responses(
        (status = 202, description = "the change waits for the new address to confirm it", body = EmailChangeRequested),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a body that is not the JSON described (malformed, wrong content type, unknown fields)", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them; whoever may not administer the organization's users gets the same refusal whether or not the member or the organization exists)", body = ErrorBody),
        (status = 404, description = "no such organization or member (only to a caller the policies allow)", body = ErrorBody),
        (status = 409, description = "the address is already an account's, or the member has not accepted their invitation yet", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 422, description = "an invalid or generic address (`field` is `email`)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn request_email_change(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<EmailChangeInput>,
) -> Result<(StatusCode, Json<EmailChangeRequested>), ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    let requested = service
        .request_email_change(&actor, &org, &user, &body, app.clock.now())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(requested)))
}

/// `GET /email-change/{token}`: what will change, and the form that
/// confirms it.
pub async fn show(
    State(app): State<InviteApp>,
    token: Result<axum::extract::Path<String>, PathRejection>,
) -> Response {
    // A secret that is not even UTF-8 is one more unknown link.
    let Ok(axum::extract::Path(token)) = token else {
        return failure(InviteError::EmailChangeLinkUnavailable);
    };
    match app.service.view_email_change(&token, app.clock.now()).await {
        Ok(view) => form_page(&token, &view, secure_cookies(&app)),
        Err(e) => failure(e),
    }
}

/// The confirmation form.
#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    token: String,
    csrf: String,
}

/// `POST /email-change/confirm`.
pub async fn confirm(
    State(app): State<InviteApp>,
    request_id: RequestId,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return message(
            StatusCode::BAD_REQUEST,
            "Incomplete form",
            "Open the link from your e-mail again.",
        );
    };
    if !csrf_ok(&headers, &form.csrf, &form.token) {
        return message(
            StatusCode::FORBIDDEN,
            "Please open the link again",
            "This form could not be verified (it may be old or sent from another site). Open the link from your e-mail again.",
        );
    }
    let confirmed = app
        .service
        .confirm_email_change(&form.token, request_id.audited(), app.clock.now())
        .await;
    match confirmed {
        Ok(changed) => message(
            StatusCode::OK,
            "Your e-mail address changed",
            &format!(
                "You now sign in with {}. You can close this page.",
                changed.email
            ),
        ),
        Err(e) => failure(e),
    }
}

/// Path as recorded in request spans: the secret of
/// `/email-change/<secret>` is hidden.
pub fn redact_path(path: &str) -> &str {
    match path
        .strip_prefix(PAGE_PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some("confirm") | None => path,
        Some(_) => "/email-change/{token}",
    }
}

/// The page for a failed call. The status is the JSON API's (the one
/// mapping, in `error.rs`, which also logs internal errors); only the words
/// are the page's.
fn failure(e: InviteError) -> Response {
    let (heading, text) = match &e {
        // One page for every dead link, so that links cannot be probed.
        InviteError::EmailChangeLinkUnavailable => (
            "This link is unavailable",
            "The link is unknown, already used, expired or replaced by a newer request. Ask your administrator to request the change again.",
        ),
        InviteError::Forbidden { .. } => (
            "This change can no longer be made",
            "Nothing changed. Ask your administrator.",
        ),
        InviteError::Conflict(Conflict::EmailTaken { .. }) => (
            "This address is already in use",
            "Another account signs in with this address, so nothing changed. Ask your administrator.",
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

fn form_page(token: &str, view: &EmailChangeView, secure: bool) -> Response {
    let secret = random_secret();
    let csrf = csrf_field(&secret, token);
    let ctx = context! {
        token, csrf,
        name => &view.name, old_email => &view.old_email, new_email => &view.new_email,
        org_name => &view.org_name, requester => &view.requester,
    };
    let mut response = render(StatusCode::OK, "email_change.html", ctx);
    CSRF.set_cookie(&mut response, &secret, secure);
    response
}

fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    render(
        status,
        "message.html",
        context! { heading, message => text },
    )
}

fn render(status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    link_page::render(&TEMPLATES, status, name, ctx)
}

fn csrf_field(secret: &str, token: &str) -> String {
    CSRF.field(secret, token)
}

fn csrf_ok(headers: &HeaderMap, field: &str, token: &str) -> bool {
    CSRF.verifies(headers, field, token)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, header};

    use super::*;

    #[test]
    fn every_template_renders() {
        let view = EmailChangeView {
            name: "Rita <Reader>".to_owned(),
            old_email: "rita@acme.example".to_owned(),
            new_email: "rita@mail.example".to_owned(),
            org_name: "Acme".to_owned(),
            requester: "Olivia Owner".to_owned(),
            expires_at: 0,
        };
        let page = form_page("tok", &view, true);
        assert_eq!(page.status(), StatusCode::OK);
        let cookie = page
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(cookie.contains("Path=/email-change;"), "{cookie}");
        assert!(cookie.ends_with("; Secure"), "{cookie}");
        assert!(TEMPLATES.get_template("email_change.html").is_ok());
        assert!(TEMPLATES.get_template("message.html").is_ok());
    }

    #[test]
    fn the_link_secret_is_redacted_from_paths() {
        assert_eq!(redact_path("/email-change/SECRET"), "/email-change/{token}");
        assert_eq!(
            redact_path("/email-change/confirm"),
            "/email-change/confirm"
        );
        assert_eq!(redact_path("/email-changes"), "/email-changes");
        assert_eq!(
            redact_path("/v1/orgs/acme/members/u1/email"),
            "/v1/orgs/acme/members/u1/email"
        );
    }

    #[test]
    fn csrf_needs_the_cookie_to_match_the_field_for_the_same_link() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; cedargate_email_csrf=xyz"),
        );
        let field = csrf_field("xyz", "link-a");
        assert!(csrf_ok(&headers, &field, "link-a"));
        assert!(!csrf_ok(&headers, &field, "link-b"));
        assert!(!csrf_ok(&headers, "xyz", "link-a"));
        assert!(!csrf_ok(&HeaderMap::new(), &field, "link-a"));
        assert!(!csrf_ok(&headers, "", "link-a"));
    }
}
