#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests may panic")]

mod cli;
