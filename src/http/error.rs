//! `ApiError`: the only type that becomes an HTTP error response. Every 4xx
//! and 5xx body is `{"error": {"code", "message"}}` ([`ErrorBody`]), including
//! the rejections of axum's extractors, which are converted here once.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection, StringRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::AccountError;
use crate::entities::{StoreError, WriteError};
use crate::invites::InviteError;

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` object of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable, e.g. `bad_request`, `forbidden`, `invalid`.
    pub code: String,
    /// For people.
    pub message: String,
    /// The offending input field (`invalid` errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The policies that refused (`forbidden` errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
}

/// An HTTP error with a stable machine-readable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    /// Boxed to keep `Result<_, ApiError>` small on the happy path.
    error: Box<ErrorDetail>,
    /// Seconds for a `Retry-After` header (429).
    retry_after: Option<i64>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: Box::new(ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
                field: None,
                policies: None,
            }),
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

    /// 415: a body of a type this endpoint does not read.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 503: the request was not answered within the time limit.
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request was not answered within the time limit; try again",
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

    /// An extractor's rejection: axum's own status and words, our body. A
    /// body over the limit keeps its 413, a rejection that is axum's fault
    /// (a route without the parameters its extractor needs) is a 500, and
    /// everything else is the caller's malformed request.
    fn rejected(status: StatusCode, text: String) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, "payload_too_large", text)
        } else if status.is_server_error() {
            Self::internal(text)
        } else {
            Self::bad_request(text)
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: *self.error };
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

/// The one mapping of the invitation service's errors to HTTP, for the JSON
/// API and the acceptance page alike (the page words the answer for people
/// but keeps this status).
impl From<InviteError> for ApiError {
    fn from(e: InviteError) -> Self {
        let message = e.to_string();
        match e {
            InviteError::Invalid { field, .. } => {
                let mut error = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message);
                error.error.field = Some(field);
                error
            }
            InviteError::Forbidden { policies, .. } => {
                let mut error = Self::new(StatusCode::FORBIDDEN, "forbidden", message);
                error.error.policies = Some(policies);
                error
            }
            InviteError::UnknownActor { .. } => {
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
            InviteError::LinkUnavailable | InviteError::EmailChangeLinkUnavailable => {
                Self::new(StatusCode::NOT_FOUND, "link_unavailable", message)
            }
            // The service is off with this schema: not implemented here,
            // rather than a missing resource.
            InviteError::Unavailable => {
                Self::new(StatusCode::NOT_IMPLEMENTED, "unavailable", message)
            }
            InviteError::Projection(WriteError::Store(e)) => e.into(),
            e @ (InviteError::Store(_)
            | InviteError::Projection(_)
            | InviteError::PasswordHash { .. }
            | InviteError::HashingTask { .. }
            | InviteError::HashingPoolClosed) => Self::internal(e),
        }
    }
}

/// The one mapping of sign-in's errors to HTTP, for the host API and the
/// console pages alike (the pages word the answer but keep this status).
impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        let message = e.to_string();
        match e {
            AccountError::InvalidCredentials => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
            }
            AccountError::TotpRequired => {
                Self::new(StatusCode::UNAUTHORIZED, "totp_required", message)
            }
            AccountError::InvalidTotp => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_totp", message)
            }
            AccountError::Throttled { retry_after_secs } => {
                let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "throttled", message);
                error.retry_after = Some(retry_after_secs);
                error
            }
            AccountError::ResetLinkUnavailable => {
                Self::new(StatusCode::NOT_FOUND, "link_unavailable", message)
            }
            AccountError::Password(problem) => problem.error().into(),
            AccountError::Enrollment(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            AccountError::Service(e) => e.into(),
            e @ (AccountError::Store(_) | AccountError::Totp(_)) => Self::internal(e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // AuthZEN requires 400 for malformed JSON, a wrong content type and
        // missing fields alike (axum answers 415/422 for some of them).
        Self::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::rejected(rejection.status(), rejection.body_text())
    }
}

impl From<StringRejection> for ApiError {
    fn from(rejection: StringRejection) -> Self {
        Self::rejected(rejection.status(), rejection.body_text())
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

impl From<crate::entities::ReachError> for ApiError {
    fn from(e: crate::entities::ReachError) -> Self {
        match e {
            crate::entities::ReachError::NotReached { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "revision_not_reached",
                e.to_string(),
            ),
            crate::entities::ReachError::Store(e) => e.into(),
        }
    }
}

impl From<crate::engine::SearchError> for ApiError {
    fn from(e: crate::engine::SearchError) -> Self {
        use crate::entities::SliceError;
        match e {
            crate::engine::SearchError::Request(e) => Self::bad_request(e.to_string()),
            crate::engine::SearchError::Store(SliceError::Store(e)) => e.into(),
            crate::engine::SearchError::Store(e) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            ),
        }
    }
}

impl From<crate::engine::PlanFailure> for ApiError {
    fn from(e: crate::engine::PlanFailure) -> Self {
        use crate::engine::{PlanFailure, SearchError};
        match e {
            PlanFailure::Request(e) => SearchError::Request(e).into(),
            PlanFailure::Store(e) => SearchError::Store(e).into(),
            PlanFailure::Unsupported(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plan_unsupported",
                e.to_string(),
            ),
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
