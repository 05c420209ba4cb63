//! `cedargate test`: runs the suites, prints the failures, the policy and
//! condition coverage and, with `--mutate`, the mutation testing report;
//! writes JUnit XML; checks the required coverage and score.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy::PolicySnapshot;

/// Runs `cedargate test` on a loaded snapshot and returns the exit code:
/// failure when a case fails or a suite cannot be loaded, or a required
/// coverage or mutation score is not reached.
pub fn run(snapshot: &PolicySnapshot, args: &TestArgs) -> ExitCode {
    let suites = match super::find_suites(&args.paths) {
        Ok(suites) if suites.is_empty() => {
            eprintln!("error: no test suite (`*.yaml`) found");
            return ExitCode::FAILURE;
        }
        Ok(suites) => suites,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let loaded = super::load(snapshot, &suites);
    let run = super::run_loaded(snapshot, &loaded);
    let conditions = match super::condition_coverage(snapshot, &loaded) {
        Ok(conditions) => conditions,
        Err(e) => {
            eprintln!("error: condition coverage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = String::new();
    super::print_report(&run, snapshot, Some(&conditions), &mut out);
    let mutate = args.mutate || args.require_mutation_score.is_some();
    // Mutants are told apart by cases that pass: a failing suite first.
    let mutation = if mutate && run.failed() == 0 {
        let (file, required) = match &args.equivalent_mutants {
            Some(file) => (file.clone(), true),
            None => (args.policy.policies.join(super::EQUIVALENTS_FILE), false),
        };
        match super::mutate(snapshot, &loaded, &file, required) {
            Ok(report) => {
                super::print_mutation(&report, &mut out);
                Some(report)
            }
            Err(e) => {
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
                eprintln!("error: mutation testing: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        if mutate {
            out.push_str("\nmutation testing skipped: it needs every case to pass first\n");
        }
        None
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());

    if let Some(path) = &args.junit {
        let written = super::junit_xml(&run, mutation.as_ref())
            .map_err(|e| e.to_string())
            .and_then(|xml| std::fs::write(path, xml).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("error: cannot write JUnit XML to `{}`: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if run.failed() > 0 || !requirements_met(args, &run, &conditions, mutation.as_ref()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints why each required coverage or score is not met; `false` if any.
fn requirements_met(
    args: &TestArgs,
    run: &super::RunResult,
    conditions: &super::ConditionCoverage,
    mutation: Option<&super::MutationReport>,
) -> bool {
    let mut met = true;
    let uncovered = run.uncovered();
    if args.require_coverage && !uncovered.is_empty() {
        eprintln!(
            "error: --require-coverage: {} policies determined no case: {}",
            uncovered.len(),
            uncovered.join(", ")
        );
        met = false;
    }
    if let Some(required) = args.require_condition_coverage
        && conditions.percent() < required
    {
        eprintln!(
            "error: --require-condition-coverage {required}: {} of {} conjuncts seen both true and false ({:.1}%)",
            conditions.covered(),
            conditions.conjuncts.len(),
            conditions.percent()
        );
        met = false;
    }
    if let Some(report) = mutation {
        if !report.problems.is_empty() {
            eprintln!(
                "error: the list of equivalent mutants is wrong ({} problems)",
                report.problems.len()
            );
            met = false;
        }
        if let Some(required) = args.require_mutation_score
            && report.score() < required
        {
            let survivors: Vec<String> = report
                .survivors()
                .map(|m| format!("{} {}", m.policy, m.mutation))
                .collect();
            eprintln!(
                "error: --require-mutation-score {required}: the score is {:.1}%; survivors: {}",
                report.score(),
                survivors.join(", ")
            );
            met = false;
        }
    }
    met
}

/// `cedargate test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Where the policies and the schema are.
    #[command(flatten)]
    pub policy: crate::policy::PolicyArgs,
    /// Suite files or directories searched for `*.yaml` / `*.yml`.
    #[arg(default_value = "policies/tests")]
    pub paths: Vec<PathBuf>,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Fail when any policy determined no decision of any case.
    #[arg(long)]
    pub require_coverage: bool,
    /// Fail when fewer than N percent of the top-level conjuncts of the
    /// policies' `when`/`unless` clauses were seen both true and false.
    #[arg(long, value_name = "N", value_parser = parse_percent)]
    pub require_condition_coverage: Option<f64>,
    /// Also run every mutant of every policy against the suites (drop the
    /// policy; drop or negate each condition conjunct; negate each clause;
    /// widen each scope part) and report the survivors and the score.
    #[arg(long)]
    pub mutate: bool,
    /// Fail when the mutation score is below N percent (implies `--mutate`).
    #[arg(long, value_name = "N", value_parser = parse_percent)]
    pub require_mutation_score: Option<f64>,
    /// The list of equivalent mutants, excluded from the score with a reason
    /// [default: `equivalent-mutants.yaml` in the policy directory, if any].
    #[arg(long, value_name = "FILE")]
    pub equivalent_mutants: Option<PathBuf>,
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(n) if (0.0..=100.0).contains(&n) => Ok(n),
        _ => Err(format!("expected a percentage from 0 to 100, got `{s}`")),
    }
}
