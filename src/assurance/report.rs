//! `cedargate prove` output: text, JUnit XML, and counterexamples as YAML
//! test cases ready to paste into a suite under `policies/tests/`.

use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use super::prove::{Counterexample, Failure, ItemResult, ProveReport};

/// One case of the policy test suite format (`src/policytest/`).
#[derive(Debug, Serialize)]
struct YamlCase<'a> {
    name: &'a str,
    principal: &'a str,
    action: &'a str,
    resource: &'a str,
    context: &'a serde_json::Value,
    entities: &'a serde_json::Value,
    expect: &'a str,
}

/// The counterexample as a one-item YAML list: a case for `cases:`.
pub fn yaml_case(cex: &Counterexample) -> String {
    let case = YamlCase {
        name: &cex.name,
        principal: &cex.principal,
        action: &cex.action,
        resource: &cex.resource,
        context: &cex.context,
        entities: &cex.entities,
        expect: cex.expect,
    };
    serde_yaml_ng::to_string(&[case]).unwrap_or_else(|e| format!("# cannot write the case: {e}\n"))
}

/// Every counterexample of the run as one suite file (`cases:` only): run
/// it with `cedargate test FILE`; it passes once the policies are fixed.
pub fn yaml_suite(report: &ProveReport) -> String {
    let mut out = String::from(
        "# Counterexamples found by `cedargate prove`: each case fails until the\n\
         # policies are fixed. Entities are per case; action entities come from the schema.\n\
         cases:\n",
    );
    for cex in counterexamples(report) {
        for line in yaml_case(cex).lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn counterexamples(report: &ProveReport) -> impl Iterator<Item = &Counterexample> {
    report
        .items()
        .flat_map(|i| &i.failures)
        .filter_map(|f| f.counterexample.as_ref())
}

/// The text report: one line per invariant, one summary line for the
/// policies that never error, every failure with its counterexample, and
/// a closing line.
pub fn text(report: &ProveReport, invariants_file: Option<&str>, out: &mut String) {
    let _ = writeln!(
        out,
        "cvc5 {}, time limit {} ms per check",
        report.solver,
        report.time_limit.as_millis()
    );
    match invariants_file {
        Some(file) => {
            let _ = writeln!(out, "\ninvariants ({file}):");
        }
        None => {
            let _ = writeln!(out, "\nno invariants file: only the never-error checks");
        }
    }
    for item in &report.invariants {
        item_line(item, out);
        failures(item, out);
    }
    let broken: Vec<&ItemResult> = report
        .policies
        .iter()
        .filter(|p| !p.failures.is_empty())
        .collect();
    let policy_time: f64 = report
        .policies
        .iter()
        .map(|p| p.elapsed.as_secs_f64())
        .sum();
    let _ = writeln!(
        out,
        "\nevery policy never errors: {} of {} policies in {} environments ({policy_time:.2} s)",
        report.policies.len() - broken.len(),
        report.policies.len(),
        report.environments,
    );
    for item in broken {
        item_line(item, out);
        failures(item, out);
    }
    let _ = writeln!(
        out,
        "\nproved {} of {} ({} invariants, {} policies never erroring): {} checks over {} environments in {:.2} s",
        report.passed(),
        report.passed() + report.failed(),
        report.invariants.len(),
        report.policies.len(),
        report.checks,
        report.environments,
        report.elapsed.as_secs_f64()
    );
}

fn item_line(item: &ItemResult, out: &mut String) {
    let mark = if item.failures.is_empty() {
        "ok  "
    } else {
        "FAIL"
    };
    let _ = writeln!(
        out,
        "  {mark}  {:<40} {:>3} environments  {:>6.2} s  {}",
        item.id,
        item.environments,
        item.elapsed.as_secs_f64(),
        item.claim
    );
}

fn failures(item: &ItemResult, out: &mut String) {
    for failure in &item.failures {
        failure_text(failure, out);
    }
}

fn failure_text(failure: &Failure, out: &mut String) {
    let _ = writeln!(out, "        {}: {}", failure.env, failure.what);
    let Some(cex) = &failure.counterexample else {
        return;
    };
    let verdict = if cex.confirmed {
        "confirmed"
    } else {
        "NOT confirmed"
    };
    let mut decision = cex.decision.as_str().to_owned();
    if !cex.decision.reasons.is_empty() {
        let _ = write!(decision, " by [{}]", cex.decision.reasons.join(", "));
    }
    if !cex.decision.errors.is_empty() {
        let _ = write!(decision, "; errors: {}", cex.decision.errors.join("; "));
    }
    let _ = writeln!(
        out,
        "        counterexample ({verdict} by the authorizer: {decision}), as a test case:"
    );
    for line in yaml_case(cex).lines() {
        let _ = writeln!(out, "          {line}");
    }
}

/// The run as JUnit XML: a suite of invariants and a suite of policies,
/// one test case each, failing with every failed environment.
pub fn junit_xml(report: &ProveReport) -> Result<String, quick_junit::SerializeError> {
    let mut junit = Report::new("cedargate prove");
    for (name, items) in [
        ("invariants", &report.invariants),
        ("policies never error", &report.policies),
    ] {
        let mut suite = TestSuite::new(name);
        for item in items {
            let status = if item.failures.is_empty() {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(format!(
                    "fails in {} of {} environments",
                    item.failures.len(),
                    item.environments
                ));
                let mut description = String::new();
                failures(item, &mut description);
                status.set_description(description);
                status
            };
            let mut case = TestCase::new(item.id.as_str(), status);
            case.set_time(item.elapsed);
            case.set_classname(item.claim.as_str());
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    junit.to_string()
}
