//! cedargate: an authorization sidecar for multi-tenant applications.
//!
//! Modules in architecture order, from the policy engine up to the HTTP API.
#![warn(missing_docs)]

/// Who is signed in: passwords, sessions, throttling, reset links, TOTP.
pub mod accounts;
/// Proofs over every request and entity store: invariants, never-erroring.
pub mod assurance;
/// The audit trail (append-only).
pub mod audit;
/// The command line (clap), calling the same functions as the server.
pub mod cli;
/// Time as a dependency (system or manual clock).
pub mod clock;
/// Serve configuration (flags + `CEDARGATE_*` environment variables).
pub mod config;
/// Database connection and migrations (SQLite or PostgreSQL).
pub mod db;
/// The decision log (JSON lines).
pub mod decisionlog;
/// The decision engine: snapshot in force, decision cache, reload.
pub mod engine;
/// The entity store: persistence, parsed-entity cache, per-request slices.
pub mod entities;
/// The HTTP API (axum): decisions, entities, policies, health.
pub mod http;
/// The invitation service: organizations, members, one-time links.
pub mod invites;
/// E-mail: the outbox and its delivery worker.
pub mod mail;
/// Prometheus metrics.
pub mod metrics;
/// The policy engine: load, validate, decide (fail closed), format.
pub mod policy;
/// YAML policy test suites, coverage and JUnit output.
pub mod policytest;
/// `cedargate replay`: logged requests decided again under candidate policies.
pub mod replay;
/// The HTTP server loop: connection cap, header and idle timeouts.
pub mod server;
/// Building and running the server.
pub mod startup;
