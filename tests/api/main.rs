#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]

mod authz;
mod authzen;
mod cli;
mod entities;
mod helpers;
mod reload;
mod workload;
