//! The console: sign-in, sessions, two-step verification, password reset, and the host applications' sign-in API.

pub(crate) mod support;

mod external_sign_in;
mod host_auth;
pub(crate) mod reset;
pub(crate) mod sign_in;
pub(crate) mod two_step;
