//! Human and CI output of a test run: failing cases, coverage, JUnit XML.

use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{ConditionCoverage, Fate, MutationReport, Outcome, RunResult};
use crate::policy::PolicySnapshot;

/// Writes every failing case with expected vs actual and the determining
/// policies (with file:line), the coverage table, the condition coverage
/// when given, and the closing `N passed, M failed` line.
pub fn print_report(
    run: &RunResult,
    snapshot: &PolicySnapshot,
    conditions: Option<&ConditionCoverage>,
    out: &mut String,
) {
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
    if let Some(conditions) = conditions {
        print_condition_coverage(conditions, snapshot, out);
    }
    let _ = writeln!(out, "\n{} passed, {} failed", run.passed(), run.failed());
}

fn locate(snapshot: &PolicySnapshot, id: &str) -> String {
    match snapshot.origin(id) {
        Some(o) => format!("{id} ({}:{})", o.file, o.line),
        None => id.to_owned(),
    }
}

/// Writes the condition coverage: the summary line, then every conjunct
/// not seen both true and false, with its policy, place and text.
pub fn print_condition_coverage(
    conditions: &ConditionCoverage,
    snapshot: &PolicySnapshot,
    out: &mut String,
) {
    let policies = {
        let mut ids: Vec<&str> = conditions
            .conjuncts
            .iter()
            .map(|c| c.policy.as_str())
            .collect();
        ids.dedup();
        ids.len()
    };
    let _ = writeln!(
        out,
        "\ncondition coverage: {} of {} conjuncts of the when/unless clauses of {policies} policies seen both true and false ({:.1}%)",
        conditions.covered(),
        conditions.conjuncts.len(),
        conditions.percent()
    );
    for c in &conditions.conjuncts {
        let Some(missing) = c.missing() else {
            continue;
        };
        let mut seen = format!("true in {}, false in {}", c.seen_true, c.seen_false);
        if c.errors > 0 {
            seen.push_str(&format!(", error in {}", c.errors));
        }
        let _ = writeln!(
            out,
            "  {missing:<15} {}  `{}` conjunct {} of {} ({seen} cases)\n                  {}",
            locate(snapshot, &c.policy),
            c.kind,
            c.conjunct,
            c.of,
            c.text
        );
    }
}

/// Writes the mutation testing summary, every surviving mutant with its
/// policy, place and mutation, the listed equivalents with their reasons,
/// problems of the equivalents list, and the closing score line.
pub fn print_mutation(report: &MutationReport, out: &mut String) {
    let mut policies: Vec<&str> = report.mutants.iter().map(|m| m.policy.as_str()).collect();
    policies.dedup();
    let survived = report.survivors().count();
    let _ = writeln!(
        out,
        "\nmutation testing: {} mutants of {} policies in {:.2} s",
        report.mutants.len(),
        policies.len(),
        report.elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "  {:>5}  killed by a case", report.killed());
    let _ = writeln!(out, "  {:>5}  survived", survived);
    let _ = writeln!(
        out,
        "  {:>5}  rejected by schema validation (never loadable; not in the score)",
        report.rejected()
    );
    let listed = report.equivalents_file.as_deref().unwrap_or("no list");
    let _ = writeln!(
        out,
        "  {:>5}  equivalent, listed in {listed} (not in the score)",
        report.equivalent()
    );
    let place = |m: &super::Mutant| match &m.origin {
        Some(o) => format!("{} ({}:{})", m.policy, o.file, o.line),
        None => m.policy.clone(),
    };
    for m in report.survivors() {
        let _ = writeln!(
            out,
            "SURVIVED {} {}\n         {}",
            place(m),
            m.mutation,
            m.description
        );
    }
    for m in &report.mutants {
        if let Fate::Equivalent(reason) = &m.fate {
            let _ = writeln!(
                out,
                "equivalent {} {}\n         {}\n         because: {}",
                place(m),
                m.mutation,
                m.description,
                reason.trim()
            );
        }
    }
    for problem in &report.problems {
        let _ = writeln!(out, "ERROR {problem}");
    }
    let _ = writeln!(
        out,
        "mutation score: {} of {} killed ({:.1}%)",
        report.killed(),
        report.killed() + survived,
        report.score()
    );
}

/// Writes every failing case with expected vs actual and the determining
/// policies (with file:line).
pub fn print_failures(run: &RunResult, snapshot: &PolicySnapshot, out: &mut String) {
    let locate = |id: &str| locate(snapshot, id);
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
/// per case; with a mutation report, a `<testsuite>` of one `<testcase>`
/// per mutant (a survivor fails; rejected and equivalent ones are skipped).
pub fn junit_xml(
    run: &RunResult,
    mutation: Option<&MutationReport>,
) -> Result<String, quick_junit::SerializeError> {
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
    if let Some(mutation) = mutation {
        report.add_test_suite(mutation_suite(mutation));
    }
    report.to_string()
}

fn mutation_suite(mutation: &MutationReport) -> TestSuite {
    let mut ts = TestSuite::new("mutation testing");
    for m in &mutation.mutants {
        let status = match &m.fate {
            Fate::Killed { suite, case } => {
                let mut status = TestCaseStatus::success();
                status.set_description(format!("killed by `{case}` ({suite})"));
                status
            }
            Fate::Survived => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(format!("survived: {}", m.description));
                status
            }
            Fate::Rejected(reason) => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(format!("rejected by schema validation: {reason}"));
                status
            }
            Fate::Equivalent(reason) => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(format!("equivalent: {}", reason.trim()));
                status
            }
        };
        let mut tc = TestCase::new(format!("{} {}", m.policy, m.mutation), status);
        if let Some(origin) = &m.origin {
            tc.set_classname(format!("{}:{}", origin.file, origin.line));
        }
        ts.add_test_case(tc);
    }
    for problem in &mutation.problems {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(problem.as_str());
        ts.add_test_case(TestCase::new("(equivalent mutants)", status));
    }
    ts
}
