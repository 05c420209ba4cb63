//! `cedargate test`: YAML policy test suites, run against a policy snapshot.
//!
//! A suite names its entities (inline Cedar entity JSON, or paths of JSON
//! files relative to the suite) and cases of principal, action, resource,
//! context and the expected decision, optionally with the expected
//! determining policy ids. The format is documented in the README.
//!
//! Beyond pass/fail, a run measures the suites: which policies determined
//! some decision, which condition conjuncts were seen both true and false
//! ([`condition_coverage`]), and which changes to the policies no case
//! would notice ([`mutate`]).

pub mod command;
mod conditions;
mod coverage;
mod equivalents;
mod mutate;
mod report;
mod suite;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::policy::{Decision, PolicySnapshot};

pub use conditions::StructureError;
pub use coverage::{ConditionCoverage, ConjunctCoverage, condition_coverage};
pub use equivalents::EQUIVALENTS_FILE;
pub use mutate::{Fate, Mutant, MutateError, MutationReport, mutate};
pub use report::{
    junit_xml, print_condition_coverage, print_failures, print_mutation, print_report,
};
use suite::LoadedCase;
pub use suite::{Loaded, load};

/// The decision a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The request must be allowed.
    Allow,
    /// The request must be denied.
    Deny,
}

impl Expect {
    fn as_str(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        }
    }
}

/// What became of one case.
#[derive(Debug)]
pub enum Outcome {
    /// The decision (and reasons, if given) matched.
    Passed,
    /// The decision or the reasons differ from the expectation.
    Failed {
        /// What was expected, in words.
        expected: String,
        /// What happened, in words.
        actual: String,
    },
    /// The case could not be evaluated (bad request for this schema).
    Invalid(String),
}

/// One case's result.
#[derive(Debug)]
pub struct CaseResult {
    /// 1-based position of the case in its suite.
    pub index: usize,
    /// The case's name.
    pub name: String,
    /// Pass, fail or invalid.
    pub outcome: Outcome,
    /// The decision, when the request could be evaluated.
    pub decision: Option<Decision>,
}

/// One suite file's results.
#[derive(Debug)]
pub struct SuiteResult {
    /// The suite's path, as found.
    pub path: String,
    /// The suite could not be loaded at all (rendered diagnostic).
    pub error: Option<String>,
    /// Results of its cases, in file order.
    pub cases: Vec<CaseResult>,
}

/// The results of a whole run.
#[derive(Debug)]
pub struct RunResult {
    /// Per suite, in path order.
    pub suites: Vec<SuiteResult>,
    /// For every policy of the snapshot, how many cases it determined.
    pub coverage: BTreeMap<String, usize>,
}

impl RunResult {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases()
            .filter(|c| matches!(c.outcome, Outcome::Passed))
            .count()
    }

    /// Cases that failed or could not be evaluated, plus suites that could
    /// not be loaded.
    pub fn failed(&self) -> usize {
        let cases = self
            .cases()
            .filter(|c| !matches!(c.outcome, Outcome::Passed))
            .count();
        cases + self.suites.iter().filter(|s| s.error.is_some()).count()
    }

    /// Policy ids that determined no case.
    pub fn uncovered(&self) -> Vec<&str> {
        self.coverage
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    fn cases(&self) -> impl Iterator<Item = &CaseResult> {
        self.suites.iter().flat_map(|s| &s.cases)
    }
}

/// Finds suite files: each path is a `.yaml`/`.yml` file or a directory
/// searched recursively.
pub fn find_suites(paths: &[PathBuf]) -> Result<Vec<PathBuf>, crate::policy::LoadError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.exists() {
            return Err(crate::policy::LoadError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
        files.extend(crate::policy::list_files(path, |p| {
            p.extension().is_some_and(|e| e == "yaml" || e == "yml")
        })?);
    }
    Ok(files)
}

/// Runs every suite against `snapshot`.
pub fn run(snapshot: &PolicySnapshot, suites: &[PathBuf]) -> RunResult {
    run_loaded(snapshot, &load(snapshot, suites))
}

/// Runs suites already loaded by [`load`] against `snapshot`.
pub fn run_loaded(snapshot: &PolicySnapshot, loaded: &Loaded) -> RunResult {
    let mut coverage: BTreeMap<String, usize> = snapshot
        .policy_ids()
        .into_iter()
        .map(|(id, _)| (id, 0))
        .collect();
    let results = loaded
        .suites
        .iter()
        .map(|suite| SuiteResult {
            path: suite.path.clone(),
            error: suite.error.clone(),
            cases: suite
                .cases
                .iter()
                .map(|case| {
                    let (outcome, decision) = match &case.prepared {
                        Err(message) => (Outcome::Invalid(message.clone()), None),
                        Ok((request, merged)) => {
                            let decision = snapshot
                                .decide(request, merged.as_ref().unwrap_or(&suite.entities));
                            (judge(case, &decision), Some(decision))
                        }
                    };
                    CaseResult {
                        index: case.index,
                        name: case.name.clone(),
                        outcome,
                        decision,
                    }
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    for decision in results
        .iter()
        .flat_map(|s| &s.cases)
        .filter_map(|c| c.decision.as_ref())
    {
        for id in &decision.reasons {
            *coverage.entry(id.clone()).or_default() += 1;
        }
    }
    RunResult {
        suites: results,
        coverage,
    }
}

/// Whether `decision` is what `case` expects, and if not, both in words.
fn judge(case: &LoadedCase, decision: &Decision) -> Outcome {
    let actual_decision = if decision.allow {
        Expect::Allow
    } else {
        Expect::Deny
    };
    let decision_ok = actual_decision == case.expect;
    let reasons_ok = case
        .reasons
        .as_ref()
        .is_none_or(|expected| *expected == decision.reasons);
    if decision_ok && reasons_ok {
        return Outcome::Passed;
    }
    let describe = |d: &str, reasons: &[String]| {
        if reasons.is_empty() {
            format!("{d} (no determining policy)")
        } else {
            format!("{d} by [{}]", reasons.join(", "))
        }
    };
    let expected = match &case.reasons {
        Some(reasons) => describe(case.expect.as_str(), reasons),
        None => case.expect.as_str().to_owned(),
    };
    let mut actual = describe(decision.as_str(), &decision.reasons);
    if !decision.errors.is_empty() {
        actual.push_str(&format!("; errors: {}", decision.errors.join("; ")));
    }
    Outcome::Failed { expected, actual }
}
