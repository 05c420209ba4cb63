//! `ApiError`: the only type that becomes an HTTP error response. Every 4xx
//! and 5xx body is `{"error": {"code", "message"}}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::entities::{StoreError, WriteError};
use crate::invites::InviteError;

/// An HTTP error with a stable machine-readable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// More members of the `error` object (`field`, `policies`); boxed to
    /// keep `Result<_, ApiError>` small on the happy path.
    details: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Seconds for a `Retry-After` header (429).
    retry_after: Option<i64>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: missing or wrong API token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid API token: send `Authorization: Bearer <token>`",
        )
    }

    /// 500 with a generic message; the detail is logged once, here.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the sidecar's logs",
        )
    }

    fn with_detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details
            .get_or_insert_with(Default::default)
            .insert(key.to_owned(), value.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = self.details.map(|d| *d).unwrap_or_default();
        error.insert("code".to_owned(), self.code.into());
        error.insert("message".to_owned(), self.message.into());
        let body = serde_json::json!({ "error": error });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = axum::http::HeaderValue::from_str(&secs.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<InviteError> for ApiError {
    fn from(e: InviteError) -> Self {
        let message = e.to_string();
        match e {
            InviteError::Invalid { field, .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
                    .with_detail("field", field)
            }
            InviteError::Forbidden { policies, .. } => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", message)
                    .with_detail("policies", policies)
            }
            InviteError::UnknownActor(_) => {
                Self::new(StatusCode::FORBIDDEN, "unknown_actor", message)
            }
            InviteError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            InviteError::NotFound(_) => Self::not_found(message),
            InviteError::RateLimited {
                retry_after_secs, ..
            } => {
                let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
                error.retry_after = Some(retry_after_secs);
                error
            }
            InviteError::LinkUnavailable => {
                Self::new(StatusCode::NOT_FOUND, "link_unavailable", message)
            }
            InviteError::Unavailable => {
                Self::new(StatusCode::NOT_IMPLEMENTED, "unavailable", message)
            }
            InviteError::Store(e) => Self::internal(e),
            InviteError::Projection(WriteError::Store(e)) => e.into(),
            InviteError::Projection(e) => Self::internal(e),
            InviteError::Internal(e) => Self::internal(e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // AuthZEN requires 400 for malformed JSON, a wrong content type and
        // missing fields alike (axum answers 415/422 for some of them). Only
        // an oversized body keeps its own status.
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                rejection.body_text(),
            );
        }
        Self::bad_request(rejection.body_text())
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Invalid(message) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_entities", message)
            }
            WriteError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The operator must act; the caller may retry elsewhere.
            StoreError::FileChanged(changed) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                changed.to_string(),
            ),
            StoreError::Database(e) => Self::internal(e),
        }
    }
}
