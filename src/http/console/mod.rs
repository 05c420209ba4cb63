//! The administration console: server-rendered pages for the people of the
//! organizations (sign-in, two-step verification, the Users tab). Every
//! action goes through the invitation service and its Cedar authorization,
//! as the API's do; who is signed in is [`crate::accounts`]'s business.

mod account;
pub mod pages;
mod reset;
pub mod session;
mod sign_in;
mod two_step;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::{Environment, context};

use super::AppState;
use super::admin::InviteApp;
use super::error::ApiError;
use super::link_page;
use crate::accounts::{AccountError, AccountSettings, Accounts};

/// The console's own templates (the pages' are in [`pages::PAGE_TEMPLATES`]).
const TEMPLATES_OWN: &[(&str, &str)] = &[
    (
        "console/layout.html",
        include_str!("../templates/console/layout.html"),
    ),
    (
        "console/message.html",
        include_str!("../templates/console/message.html"),
    ),
    (
        "console/sign_in.html",
        include_str!("../templates/console/sign_in.html"),
    ),
    (
        "console/two_step.html",
        include_str!("../templates/console/two_step.html"),
    ),
    (
        "console/enroll.html",
        include_str!("../templates/console/enroll.html"),
    ),
    (
        "console/recovery_codes.html",
        include_str!("../templates/console/recovery_codes.html"),
    ),
    (
        "console/account.html",
        include_str!("../templates/console/account.html"),
    ),
    (
        "console/reset_request.html",
        include_str!("../templates/console/reset_request.html"),
    ),
    (
        "console/reset_form.html",
        include_str!("../templates/console/reset_form.html"),
    ),
];

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Compiled in; a syntax error fails the unit test below.
    for (name, source) in TEMPLATES_OWN.iter().chain(pages::PAGE_TEMPLATES) {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "invalid template");
        }
    }
    env
});

/// Renders the console template `name` with `ctx`, as a page nobody
/// caches, frames or learns the address from through the referrer; images
/// may be `data:` URLs (the two-step enrollment's QR code).
pub fn render(name: &str, status: StatusCode, ctx: minijinja::Value) -> Response {
    let mut response = link_page::render(&TEMPLATES, status, name, ctx);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

/// A page with a heading and a sentence (and an optional link).
fn message(status: StatusCode, heading: &str, text: &str, link: Option<(&str, &str)>) -> Response {
    let link = link.map(|(href, label)| context! { href, label });
    render(
        "console/message.html",
        status,
        context! { heading, message => text, link },
    )
}

/// The page of a form whose CSRF token did not verify.
fn forged() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Please try again",
        "This form could not be verified (it may be old or sent from another site). Open the page again.",
        Some(("/console/sign-in", "Sign in")),
    )
}

/// The page for a failed call: the status is the API's (one mapping, in
/// `error.rs`, which logs internal errors); only the words are the page's.
fn failure(e: AccountError) -> Response {
    let status = ApiError::from(e).status();
    let text = if status.is_server_error() {
        "Something went wrong. Please try again later."
    } else {
        "This request could not be completed."
    };
    message(status, "Something went wrong", text, None)
}

/// 303 to `location`.
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The value of the cookie `name`, if sent.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(&prefix).map(str::to_owned))
        .filter(|v| !v.is_empty())
}

/// Where to go after signing in: a console path of this sidecar only, so
/// that the parameter cannot send people elsewhere.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/console".to_owned(),
    }
}

/// Percent-encodes `s` for a query parameter.
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The client's address: the TCP peer (proxies' `X-Forwarded-For` is not
/// trusted), `None` when the server was not given it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// What the console's own handlers reach.
#[derive(Debug, Clone)]
struct ConsoleApp {
    app: InviteApp,
    accounts: Arc<Accounts>,
}

impl ConsoleApp {
    fn now(&self) -> i64 {
        self.app.clock.now()
    }

    /// Whether cookies are `Secure` (the public URL is https).
    fn secure(&self) -> bool {
        link_page::secure_cookies(&self.app)
    }
}

/// Sign-in over the invitation service of `app`.
pub(crate) fn accounts_of(app: &InviteApp) -> Accounts {
    Accounts::new(Arc::clone(&app.service), AccountSettings::default())
}

/// The console's routes (public: the session cookie authenticates).
pub fn router(app: InviteApp) -> Router<AppState> {
    let console = ConsoleApp {
        accounts: Arc::new(accounts_of(&app)),
        app: app.clone(),
    };
    Router::new()
        .route("/console/sign-in", get(sign_in::show).post(sign_in::submit))
        .route("/console/sign-out", post(sign_in::sign_out))
        .route(
            "/console/password-reset",
            get(reset::ask).post(reset::request),
        )
        .route(
            "/console/password-reset/{token}",
            get(reset::show).post(reset::set),
        )
        .route(
            "/console/two-step",
            get(two_step::show).post(two_step::submit),
        )
        .route(
            "/console/two-step/enroll",
            get(two_step::enroll).post(two_step::confirm),
        )
        .route("/console/account", get(account::show))
        .route("/console/account/recovery-codes", post(account::regenerate))
        .with_state(console)
        .merge(pages::router(app))
}

/// Path as recorded in request spans: a reset link's secret is hidden.
pub fn redact_path(path: &str) -> &str {
    if path.starts_with("/console/password-reset/") {
        "/console/password-reset/{token}"
    } else {
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_template_compiles() {
        for (name, _) in TEMPLATES_OWN.iter().chain(pages::PAGE_TEMPLATES) {
            assert!(TEMPLATES.get_template(name).is_ok(), "{name}");
        }
        let page = render(
            "console/message.html",
            StatusCode::OK,
            context! { heading => "h", message => "m", me => "a@b.example", csrf => "c" },
        );
        assert_eq!(page.status(), StatusCode::OK);
        assert!(
            page.headers()
                .get(header::CONTENT_SECURITY_POLICY)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("img-src 'self' data:"))
        );
    }

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/console/orgs/acme")), "/console/orgs/acme");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/console//x",
            "/v1/orgs",
            "/console\\x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console", "{bad}");
        }
        assert_eq!(safe_next(None), "/console");
        assert_eq!(encode_query("/console?a=b&c"), "/console%3Fa%3Db%26c");
    }

    #[test]
    fn reset_secrets_are_redacted_from_paths() {
        assert_eq!(
            redact_path("/console/password-reset/SECRET"),
            "/console/password-reset/{token}"
        );
        assert_eq!(
            redact_path("/console/password-reset"),
            "/console/password-reset"
        );
        assert_eq!(redact_path("/console/sign-in"), "/console/sign-in");
    }
}
