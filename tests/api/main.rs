#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]

/// Declares the test `async fn $name()` once per store backend, as
/// `$name::sqlite` and `$name::postgres`; every server the test spawns runs
/// on that backend. The PostgreSQL half, and anything that drives Chromium,
/// needs what `bash tests/run.sh` installs and starts, so a plain
/// `cargo test` lists them as ignored with the reason.
macro_rules! on_both_backends {
    ($name:ident) => {
        on_both_backends!(@ $name, tokio::test, [],
            [#[ignore = "needs PostgreSQL: run `bash tests/run.sh`"]]);
    };
    ($name:ident, multi_thread) => {
        on_both_backends!(@ $name, tokio::test(flavor = "multi_thread", worker_threads = 2), [],
            [#[ignore = "needs PostgreSQL: run `bash tests/run.sh`"]]);
    };
    ($name:ident, chromium) => {
        on_both_backends!(@ $name, tokio::test,
            [#[ignore = "needs Chromium and chromedriver: run `bash tests/run.sh`"]],
            [#[ignore = "needs Chromium, chromedriver and PostgreSQL: run `bash tests/run.sh`"]]);
    };
    (@ $name:ident, $test:meta, [$(#[$sqlite:meta])*], [$(#[$postgres:meta])*]) => {
        mod $name {
            #[$test]
            $(#[$sqlite])*
            async fn sqlite() {
                crate::helpers::Backend::Sqlite.run(super::$name()).await
            }

            #[$test]
            $(#[$postgres])*
            async fn postgres() {
                crate::helpers::Backend::Postgres.run(super::$name()).await
            }
        }
    };
}

mod authz;
mod authzen;
mod browser;
mod cli;
mod conformance;
mod console;
mod console_pages;
mod contract;
mod decision_cache;
mod entities;
mod explain;
mod helpers;
mod impact;
mod invite_helpers;
mod invites;
mod mail_outbox;
mod mutate;
mod onboarding;
mod outage;
mod plan;
mod prove;
mod reload;
mod search;
mod sidecars;
mod slice;
mod smtp;
mod workload;
