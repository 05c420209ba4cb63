//! Extractors and middleware: `ApiJson`, `Path`, `Query` and `Csv` (axum's
//! extractors whose rejection is an `ApiError`, so that no input gets a
//! plain-text answer), the request id, bearer-token authentication and the
//! time limit.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// `axum::Json`, rejecting with our JSON error body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    /// Reads a body of `Content-Type: application/json` with serde_json
    /// alone. axum's extractor tracks the path to every value it reads, so
    /// that a rejection can name where the body is wrong; on a decision
    /// that tracking cost as much as the rest of the request's reading. So
    /// it runs only to explain a body serde_json refused, and for any other
    /// content type (where it decides what it accepts).
    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let plain_json = request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"application/json"));
        if !plain_json {
            let axum::Json(value) = axum::Json::from_request(request, state).await?;
            return Ok(Self(value));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(JsonRejection::from)?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(Self(value)),
            Err(_) => Ok(Self(axum::Json::from_bytes(&bytes)?.0)),
        }
    }
}

/// `axum::extract::Path`, rejecting with our JSON error body (a segment
/// that is not UTF-8 or does not parse is a 400). Named like axum's because
/// utoipa's axum integration recognizes path and query parameters by the
/// extractor's name.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, rejecting with our JSON error body (named like
/// axum's for the same reason as [`Path`]).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A `text/csv` body as UTF-8 text: 415 for another content type, 400 for
/// bytes that are not UTF-8, 413 over the body limit.
#[derive(Debug)]
pub struct Csv(pub String);

impl<S: Send + Sync> FromRequest<S> for Csv {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_csv = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/csv"));
        if !is_csv {
            return Err(ApiError::unsupported_media_type(
                "send the file with `Content-Type: text/csv`",
            ));
        }
        Ok(Self(String::from_request(request, state).await?))
    }
}

/// The request id (`X-Request-ID`, generated when the caller sent none).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id for the audit trail (`None` when it is blank).
    pub fn audited(&self) -> Option<&str> {
        Some(self.0.trim()).filter(|id| !id.is_empty())
    }
}

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

/// Middleware: 503 with our error body when the answer takes longer than
/// the limit (the handler's future is dropped, as with tower's timeout).
pub async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    tokio::time::timeout(limit, next.run(request))
        .await
        .unwrap_or_else(|_| ApiError::timeout().into_response())
}

/// The request header a caller sends a consistency token in: decide only on
/// state at or after this store revision.
pub const MIN_REVISION: &str = "x-cedargate-min-revision";
/// The response header of every successful write: the store revision it
/// reached, to send back as [`MIN_REVISION`].
pub const REVISION: &str = "x-cedargate-revision";

/// The optional `X-Cedargate-Min-Revision` of a decision request.
#[derive(Debug, Clone, Copy, utoipa::IntoParams)]
#[into_params(parameter_in = Header, names("x-cedargate-min-revision"))]
pub struct MinRevision(
    /// Decide only on store state at or after this revision (a write's
    /// `X-Cedargate-Revision`).
    pub Option<u64>,
);

impl<S: Send + Sync> FromRequestParts<S> for MinRevision {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(MIN_REVISION) else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(|r| Self(Some(r)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`{MIN_REVISION}` must be a store revision (a number)"
                ))
            })
    }
}

impl MinRevision {
    /// The stricter of the header and a body field.
    pub fn or(self, body: Option<u64>) -> Option<u64> {
        self.0.max(body)
    }
}

/// Middleware: every successful write answers the store revision it
/// reached (at or after it, when other writes went on meanwhile).
pub async fn revision_header(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let writes = !request.method().is_safe();
    let mut response = next.run(request).await;
    if writes && response.status().is_success() && !response.headers().contains_key(REVISION) {
        let token = state.engine.store().token();
        response
            .headers_mut()
            .insert(REVISION, axum::http::HeaderValue::from(token));
    }
    response
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
