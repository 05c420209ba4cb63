//! cedargate: an authorization sidecar for multi-tenant applications.
//!
//! Modules in architecture order, from the policy engine up to the HTTP API.
#![warn(missing_docs)]

/// The policy engine: load, validate, decide (fail closed), format.
pub mod policy;
/// YAML policy test suites, coverage and JUnit output.
pub mod policytest;
/// Serve configuration (flags + `CEDARGATE_*` environment variables).
pub mod config;
/// Database connection and migrations (SQLite or PostgreSQL).
pub mod db;
/// The entity store: persistence, parsed-entity cache, per-request slices.
pub mod entities;
/// The decision engine: snapshot in force, decision cache, reload.
pub mod engine;
/// Prometheus metrics.
pub mod metrics;
/// The decision log (JSON lines).
pub mod decisionlog;
/// The HTTP API (axum): decisions, entities, policies, health.
pub mod http;
/// Building and running the server.
pub mod startup;
/// The command line (clap), calling the same functions as the server.
pub mod cli;
