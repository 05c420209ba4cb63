//! The AuthZEN search APIs (subject, resource, action).
