//! cedargate: an authorization sidecar for multi-tenant applications.
//!
//! Modules in architecture order:
#![warn(missing_docs)]

/// The command line (clap), calling the same functions as the server.
pub mod cli;
/// The policy engine: load, validate, decide (fail closed), format.
pub mod policy;
/// YAML policy test suites, coverage and JUnit output.
pub mod policytest;
