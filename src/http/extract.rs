//! Extractors and middleware: `ApiJson` (JSON whose rejection is an
//! `ApiError`), the request id, and bearer-token authentication.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// `axum::Json`, rejecting with our JSON error body.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// The request id (`X-Request-ID`, generated when the caller sent none).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Ok(RequestId(id.to_owned()))
    }
}

/// How callers authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `--insecure-no-auth`: everyone is let in.
    Disabled,
    /// Bearer token, kept only as its SHA-256.
    Token([u8; 32]),
}

impl Auth {
    /// Authentication by `token`.
    pub fn token(token: &str) -> Self {
        Auth::Token(Sha256::digest(token.as_bytes()).into())
    }

    fn admits(&self, presented: Option<&str>) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(expected) => presented.is_some_and(|token| {
                // Comparing digests keeps the comparison constant-time and
                // independent of the token's length.
                let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                bool::from(digest.ct_eq(expected))
            }),
        }
    }
}

/// Middleware: 401 unless the request carries the API token.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if state.auth.admits(presented) {
        next.run(request).await
    } else {
        ApiError::unauthorized().into_response()
    }
}

/// Middleware: counts responses by status.
pub async fn count_status(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state
        .metrics
        .http_responses
        .get_or_create(&crate::metrics::StatusLabels {
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::Auth;

    #[test]
    fn only_the_exact_token_is_admitted() {
        let auth = Auth::token("s3cret");
        assert!(auth.admits(Some("s3cret")));
        assert!(!auth.admits(Some("s3cret ")));
        assert!(!auth.admits(Some("s3cre")));
        assert!(!auth.admits(None));
        assert!(Auth::Disabled.admits(None));
    }
}
