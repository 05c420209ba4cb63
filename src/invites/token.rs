//! The one-time invitation secrets, which the mailer mints when it sends a
//! link (see [`crate::mail::token`]); re-exported here for the link checks
//! and the acceptance page.

pub use crate::mail::token::{InviteToken, hash_token, random_secret};
