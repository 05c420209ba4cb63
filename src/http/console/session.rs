//! The signed-in person of a console request.
//!
//! CONTRACT (with the pages): `SignedIn` is an axum extractor over
//! `AppState`. Without a valid, complete session it rejects with a redirect
//! (303) to `/console/sign-in?next=<path>`, or to the two-step pages when
//! the person must enter a code or enroll first. `check_csrf` verifies a
//! form's token against the session's.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::{ConsoleApp, encode_query, failure, see_other};
use crate::accounts::{Accounts, Session, Stage};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::invites::Actor;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cedargate_session";

/// The person signed in to the console.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// Their user id.
    pub user_id: String,
    /// Their login e-mail.
    pub email: String,
    /// Whether this session passed two-step verification: what the console
    /// passes as `context.mfa`.
    pub mfa: bool,
    /// The session's CSRF token, for every form's hidden `csrf` field.
    pub csrf: String,
    /// The HTTP request id, for the audit trail.
    pub request_id: Option<String>,
}

impl SignedIn {
    /// The invitation service's actor for this person in this request.
    pub fn actor(&self) -> Actor {
        Actor::user(self.user_id.clone(), self.mfa, self.request_id.clone())
    }

    /// Refuses (403, code `csrf`) a form whose `csrf` field is not this
    /// session's token (compared in constant time).
    pub fn check_csrf(&self, submitted: &str) -> Result<(), ApiError> {
        if csrf_matches(&self.csrf, submitted) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "this form could not be verified (it may be old or sent from another site); open the page again",
            ))
        }
    }
}

/// `submitted` is the session token `expected` (constant time; never empty).
pub(super) fn csrf_matches(expected: &str, submitted: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// A live session of any stage, with its cookie's id: the two-step pages,
/// which people reach before their session is complete.
#[derive(Debug)]
pub(super) struct Current {
    /// The cookie's session id.
    pub id: String,
    /// The session.
    pub session: Session,
}

/// The live session the request's cookie names, if any.
async fn current(
    parts: &Parts,
    accounts: &Accounts,
    now: i64,
) -> Result<Option<Current>, Response> {
    let Some(id) = super::cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    match accounts.session(&id, now).await {
        Ok(session) => Ok(session.map(|session| Current { id, session })),
        Err(e) => Err(failure(e)),
    }
}

/// The sign-in page, coming back to this request's page afterwards.
fn to_sign_in(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map_or("/console", |p| p.as_str());
    see_other(&format!("/console/sign-in?next={}", encode_query(next)))
}

/// Where a session that is not complete must go first.
pub(super) fn unfinished(stage: Stage) -> Option<Response> {
    match stage {
        Stage::Complete => None,
        Stage::Totp => Some(see_other("/console/two-step")),
        Stage::Enroll => Some(see_other("/console/two-step/enroll")),
    }
}

async fn signed_in(parts: &Parts, accounts: &Accounts, now: i64) -> Result<SignedIn, Response> {
    let Some(Current { session, .. }) = current(parts, accounts, now).await? else {
        return Err(to_sign_in(parts));
    };
    if let Some(redirect) = unfinished(session.stage) {
        return Err(redirect);
    }
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    Ok(SignedIn {
        user_id: session.user_id,
        email: session.email,
        mfa: session.mfa,
        csrf: session.csrf,
        request_id,
    })
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(service) = &state.invites else {
            return Err(to_sign_in(parts));
        };
        let accounts = Accounts::new(
            std::sync::Arc::clone(service),
            crate::accounts::AccountSettings::default(),
        );
        signed_in(parts, &accounts, state.clock.now()).await
    }
}

impl FromRequestParts<ConsoleApp> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleApp) -> Result<Self, Response> {
        signed_in(parts, &state.accounts, state.now()).await
    }
}

impl FromRequestParts<ConsoleApp> for Current {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleApp) -> Result<Self, Response> {
        current(parts, &state.accounts, state.now())
            .await?
            .ok_or_else(|| see_other("/console/sign-in"))
    }
}

/// Sets the session cookie to `id` on `response`.
pub(super) fn set_session_cookie(response: &mut Response, id: &str, secure: bool) {
    let value = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Clears the session cookie on `response`.
pub(super) fn clear_session_cookie(response: &mut Response, secure: bool) {
    let value = format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_match_exactly_and_never_when_empty() {
        let me = SignedIn {
            user_id: "u".to_owned(),
            email: "a@b.example".to_owned(),
            mfa: false,
            csrf: "token".to_owned(),
            request_id: None,
        };
        assert!(me.check_csrf("token").is_ok());
        for bad in ["", "toke", "tokenx", "TOKEN"] {
            let refused = me.check_csrf(bad).err().map(|e| e.status());
            assert_eq!(refused, Some(StatusCode::FORBIDDEN), "{bad}");
        }
        assert!(!csrf_matches("", ""));
    }
}
