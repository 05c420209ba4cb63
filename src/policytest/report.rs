//! Human and CI output of a test run: failing cases, coverage, JUnit XML.

use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Outcome, RunResult};
use crate::policy::PolicySnapshot;

/// Writes every failing case with expected vs actual and the determining
/// policies (with file:line), the coverage table, and the closing
/// `N passed, M failed` line.
pub fn print_report(run: &RunResult, snapshot: &PolicySnapshot, out: &mut String) {
    print_failures(run, snapshot, out);
    let covered = run.coverage.values().filter(|n| **n > 0).count();
    let _ = writeln!(
        out,
        "\npolicy coverage: {covered} of {} policies determined at least one decision",
        run.coverage.len()
    );
    for (id, origin) in snapshot.policy_ids() {
        let n = run.coverage.get(&id).copied().unwrap_or(0);
        let mark = if n == 0 { "  NEVER" } else { "" };
        let _ = writeln!(out, "  {n:>4}  {id}  {}:{}{mark}", origin.file, origin.line);
    }
    let _ = writeln!(out, "\n{} passed, {} failed", run.passed(), run.failed());
}

/// Writes every failing case with expected vs actual and the determining
/// policies (with file:line).
pub fn print_failures(run: &RunResult, snapshot: &PolicySnapshot, out: &mut String) {
    let locate = |id: &str| match snapshot.origin(id) {
        Some(o) => format!("{id} ({}:{})", o.file, o.line),
        None => id.to_owned(),
    };
    for suite in &run.suites {
        if let Some(error) = &suite.error {
            let _ = writeln!(
                out,
                "ERROR {}: the suite could not be loaded\n{error}",
                suite.path
            );
            continue;
        }
        for case in &suite.cases {
            match &case.outcome {
                Outcome::Passed => {}
                Outcome::Failed { expected, actual } => {
                    let _ = writeln!(
                        out,
                        "FAIL {} case {} `{}`",
                        suite.path, case.index, case.name
                    );
                    let _ = writeln!(out, "     expected: {expected}");
                    let _ = writeln!(out, "     actual:   {actual}");
                    if let Some(decision) = &case.decision {
                        for id in &decision.reasons {
                            let _ = writeln!(out, "     determined by {}", locate(id));
                        }
                    }
                }
                Outcome::Invalid(message) => {
                    let _ = writeln!(
                        out,
                        "ERROR {} case {} `{}`: {message}",
                        suite.path, case.index, case.name
                    );
                }
            }
        }
    }
}

/// The run as JUnit XML: one `<testsuite>` per suite file, one `<testcase>`
/// per case.
pub fn junit_xml(run: &RunResult) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new("cedargate test");
    for suite in &run.suites {
        let mut ts = TestSuite::new(suite.path.as_str());
        if let Some(error) = &suite.error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message("the suite could not be loaded");
            status.set_description(error.as_str());
            ts.add_test_case(TestCase::new("(load)", status));
        }
        for case in &suite.cases {
            let status = match &case.outcome {
                Outcome::Passed => TestCaseStatus::success(),
                Outcome::Failed { expected, actual } => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(format!("expected {expected}, got {actual}"));
                    status
                }
                Outcome::Invalid(message) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                    status.set_message(message.as_str());
                    status
                }
            };
            let mut tc = TestCase::new(case.name.as_str(), status);
            tc.set_classname(suite.path.as_str());
            ts.add_test_case(tc);
        }
        report.add_test_suite(ts);
    }
    report.to_string()
}
