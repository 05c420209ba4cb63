//! Bulk invitations: `POST /v1/orgs/{org}/invitations/bulk` (a CSV file,
//! written within the request or, when large, by a background job) and
//! `GET /v1/orgs/{org}/invitations/bulk/{job}` (the job's progress and its
//! rows' results).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header::LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::AppState;
use super::admin::{ActorHeader, InviteApp, actor};
use super::error::{ApiError, ErrorBody};
use super::extract::{Csv, Path, Query};
use super::written::Written;
use crate::invites::bulk::{BulkAnswer, BulkOptions, BulkReport};
use crate::invites::jobs::{JobAccepted, JobPage, JobStatus};

/// The bulk routes (under the bearer token, with the invitation service).
pub fn router(app: InviteApp) -> Router<AppState> {
    Router::new()
        .route("/v1/orgs/{org}/invitations/bulk", post(bulk_invite))
        .route("/v1/orgs/{org}/invitations/bulk/{job}", get(bulk_job))
        .with_state(app)
}

/// Invites everyone in a CSV file (`Content-Type: text/csv`); see the README
/// for the columns. Validates the whole file first. A file with more rows
/// to write than `--bulk-sync-rows` is answered 202 at once and written by
/// a background job (see `Location`).
#[utoipa::path(post, path = "/v1/orgs/{org}/invitations/bulk", tag = "administration",
    params(ActorHeader, ("org" = String, Path), BulkOptions), request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, description = "validated, and written unless a dry run or a file with invalid rows", body = Written<BulkReport>),
        (status = 202, description = "validated; the valid rows are written by a background job", body = JobAccepted,
            headers(("Location" = String, description = "the job's status: `/v1/orgs/{org}/invitations/bulk/{jobId}`"))),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, a query that does not parse, or a body that is not UTF-8", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them)", body = ErrorBody),
        (status = 404, description = "no such organization (only to a caller the policies allow)", body = ErrorBody),
        (status = 413, description = "body over the size limit", body = ErrorBody),
        (status = 415, description = "the body is not `text/csv`", body = ErrorBody),
        (status = 422, description = "the file cannot be read (no rows, unknown or missing column)", body = ErrorBody),
        (status = 429, description = "would cross the organization's 24-hour limit; see `Retry-After`", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit, or the store is unavailable (its database file changed)", body = ErrorBody),
    ))]
pub async fn bulk_invite(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path(org): Path<String>,
    Query(options): Query<BulkOptions>,
    Csv(body): Csv,
) -> Result<Response, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    let answer = service
        .bulk_invite(&actor, &org, &body, options, app.clock.now())
        .await?;
    Ok(match answer {
        BulkAnswer::Report(report) => Json(Written::new(&app.store, report)).into_response(),
        BulkAnswer::Job(job) => {
            let location = format!("/v1/orgs/{org}/invitations/bulk/{}", job.job_id);
            let location = HeaderValue::try_from(location).map_err(ApiError::internal)?;
            (StatusCode::ACCEPTED, [(LOCATION, location)], Json(job)).into_response()
        }
    })
}

/// A bulk invitation job: its state and counts, and its rows' results in
/// file order, a page at a time (`after` the last row of the previous page).
#[utoipa::path(get, path = "/v1/orgs/{org}/invitations/bulk/{job}", tag = "administration",
    params(ActorHeader, ("org" = String, Path), ("job" = String, Path), JobPage),
    responses(
        (status = 200, body = JobStatus),
        (status = 400, description = "no `X-Cedargate-Actor` header, a path segment that is not UTF-8, or a query that does not parse", body = ErrorBody),
        (status = 401, description = "missing or invalid API token", body = ErrorBody),
        (status = 403, description = "the acting user is unknown, or the policies refuse (`policies` names them), whether or not the job exists", body = ErrorBody),
        (status = 404, description = "no such organization, or no such job in it (only to a caller the policies allow)", body = ErrorBody),
        (status = 500, description = "internal error, e.g. the database failed; see the logs", body = ErrorBody),
        (status = 501, description = "the invitation service is off: the schema is not the cedargate organization model", body = ErrorBody),
        (status = 503, description = "not answered within the time limit", body = ErrorBody),
    ))]
pub async fn bulk_job(
    State(app): State<InviteApp>,
    who: ActorHeader,
    Path((org, job)): Path<(String, String)>,
    Query(page): Query<JobPage>,
) -> Result<Json<JobStatus>, ApiError> {
    let (service, actor) = (&app.service, actor(&app.service, who).await?);
    Ok(Json(
        service
            .bulk_job(&actor, &org, &job, page, app.clock.now())
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::ApiError;
    use crate::invites::jobs::row_error_code;
    use crate::invites::{Conflict, InviteError, NotFound};

    /// A job row's recorded error code is the one the API answers for the
    /// same refusal of a single invitation.
    #[tokio::test]
    async fn a_job_row_s_error_code_is_the_api_s() {
        let refusals = [
            InviteError::invalid("email", "bad"),
            InviteError::Forbidden {
                policies: vec!["p".to_owned()],
                message: "no".to_owned(),
            },
            InviteError::UnknownActor {
                name: "x".to_owned(),
            },
            Conflict::AlreadyMember {
                email: "a@b.c".to_owned(),
                org_id: "o".to_owned(),
            }
            .into(),
            NotFound::Organization {
                org_id: "o".to_owned(),
            }
            .into(),
            InviteError::RateLimited {
                limit: 1,
                retry_after_secs: 1,
            },
            InviteError::Unavailable,
        ];
        for refusal in refusals {
            let code = row_error_code(&refusal).to_owned();
            let response = ApiError::from(refusal).into_response();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default())
                .unwrap_or_default();
            assert_eq!(body["error"]["code"], code.as_str(), "{body}");
        }
    }
}
