//! What the pages behind e-mailed links share (the invitation's acceptance
//! page, the e-mail change's confirmation page): rendering with the headers
//! that keep them out of caches, referrers and frames, and a double-submit
//! CSRF token bound to the link.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use minijinja::Environment;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::admin::InviteApp;
use crate::invites::token::hash_token;

/// Renders `name` with `ctx`, as a page nobody caches, frames or learns the
/// link from through the referrer.
pub(super) fn render(
    templates: &Environment<'_>,
    status: StatusCode,
    name: &str,
    ctx: minijinja::Value,
) -> Response {
    let body = templates
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
    response
}

/// Whether people reach the pages over https: the public URL's scheme, as
/// the links in the e-mails have it.
pub(super) fn secure_cookies(app: &InviteApp) -> bool {
    app.service
        .settings
        .public_url
        .trim_start()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// A page's double-submit CSRF token: a random secret in an `HttpOnly`
/// cookie, and in the form a hash of that secret, the link and the page's
/// label, so that a pair verifies one link's form on one kind of page.
pub(super) struct LinkCsrf {
    /// The cookie's name.
    pub cookie: &'static str,
    /// The cookie's path (the page's prefix).
    pub path: &'static str,
    /// Tells the pages' fields apart.
    pub label: &'static [u8],
}

impl LinkCsrf {
    /// The field that goes with the cookie's `secret` on the page of the
    /// link `token`. Only the cookie holds the secret: the field, which is
    /// in the page, does not reveal it.
    pub(super) fn field(&self, secret: &str, token: &str) -> String {
        let digest = Sha256::new()
            .chain_update(self.label)
            .chain_update(secret.as_bytes())
            .chain_update(b"\0")
            .chain_update(hash_token(token).as_bytes())
            .finalize();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }

    /// The cookie's secret is present and `field` is its field for the
    /// link `token` (compared in constant time).
    pub(super) fn verifies(&self, headers: &HeaderMap, field: &str, token: &str) -> bool {
        let prefix = format!("{}=", self.cookie);
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(&prefix).map(str::to_owned));
        match cookie {
            Some(secret) if !secret.is_empty() && !field.is_empty() => bool::from(
                self.field(&secret, token)
                    .as_bytes()
                    .ct_eq(field.as_bytes()),
            ),
            _ => false,
        }
    }

    /// Sets the cookie holding `secret` on `response`.
    pub(super) fn set_cookie(&self, response: &mut Response, secret: &str, secure: bool) {
        if let Ok(cookie) = HeaderValue::from_str(&format!(
            "{}={secret}; Path={}; HttpOnly; SameSite=Strict{}",
            self.cookie,
            self.path,
            if secure { "; Secure" } else { "" }
        )) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
    }
}
