#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]

mod authz;
mod authzen;
mod browser;
mod cli;
mod entities;
mod helpers;
mod invite_helpers;
mod invites;
mod onboarding;
mod postgres;
mod reload;
mod smtp;
mod workload;
