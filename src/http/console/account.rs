//! `/console/account`: the signed-in person's own account (two-step
//! verification status, new recovery codes).

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use minijinja::context;

use super::session::SignedIn;
use super::sign_in::CsrfForm;
use super::{ConsoleApp, failure, forged};

/// `GET /console/account`.
pub(super) async fn show(State(app): State<ConsoleApp>, me: SignedIn) -> Response {
    match app.accounts.two_step_status(&me.user_id).await {
        Ok(status) => super::render(
            "console/account.html",
            StatusCode::OK,
            context! {
                me => &me.email, csrf => &me.csrf, mfa => me.mfa,
                enrolled => status.enrolled, recovery_codes_left => status.recovery_codes_left,
            },
        ),
        Err(e) => failure(e),
    }
}

/// `POST /console/account/recovery-codes`: new codes replace the old ones.
pub(super) async fn regenerate(
    State(app): State<ConsoleApp>,
    me: SignedIn,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let submitted = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(e) = me.check_csrf(&submitted) {
        let _ = e.into_response();
        return forged();
    }
    match app.accounts.regenerate_recovery_codes(&me.user_id).await {
        Ok(codes) => super::render(
            "console/recovery_codes.html",
            StatusCode::OK,
            context! {
                heading => "New recovery codes", codes, next => "/console/account",
                me => &me.email, csrf => &me.csrf,
            },
        ),
        Err(e) => failure(e),
    }
}
