//! `cedargate prove`: loads the invariants, finds the solver, runs the
//! proofs and writes the text report, JUnit XML and counterexample cases.

use std::process::ExitCode;

use super::{Cvc5, INSTALL_HINT, invariants, prove_blocking, report};
use crate::policy::PolicySnapshot;

/// Runs `cedargate prove` on a loaded snapshot and returns the exit code:
/// failure when the invariants file is unusable, the solver is missing
/// (with what to install), or anything is not proved.
pub fn run(snapshot: &PolicySnapshot, args: &ProveArgs) -> ExitCode {
    let limit = match std::time::Duration::try_from_secs_f64(args.time_limit) {
        Ok(limit) if !limit.is_zero() => limit,
        _ => {
            eprintln!("error: --time-limit must be a positive number of seconds");
            return ExitCode::FAILURE;
        }
    };
    // The default file may be absent (only the never-error checks run); a
    // file named on the command line must exist.
    let (path, explicit) = match &args.invariants {
        Some(path) => (path.clone(), true),
        None => (args.policy.policies.join(invariants::FILE_NAME), false),
    };
    let invariants = if explicit || path.is_file() {
        match invariants::load(&path, snapshot.schema()) {
            Ok(invariants) => Some(invariants),
            Err(e) => {
                eprintln!("error: {}", invariants::with_causes(&e));
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let cvc5 = match Cvc5::find() {
        Ok(cvc5) => cvc5,
        Err(e) => {
            eprintln!("error: {}\n{}", invariants::with_causes(&e), INSTALL_HINT);
            return ExitCode::FAILURE;
        }
    };
    let report = match prove_blocking(
        snapshot,
        invariants.as_deref().unwrap_or_default(),
        &cvc5,
        limit,
    ) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {}", invariants::with_causes(&e));
            return ExitCode::FAILURE;
        }
    };
    let mut out = String::new();
    let shown = path.display().to_string();
    report::text(
        &report,
        invariants.as_ref().map(|_| shown.as_str()),
        &mut out,
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    if let Some(file) = &args.junit {
        let written = report::junit_xml(&report)
            .map_err(|e| e.to_string())
            .and_then(|xml| std::fs::write(file, xml).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("error: cannot write JUnit XML to `{}`: {e}", file.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(file) = &args.cases
        && let Err(e) = std::fs::write(file, report::yaml_suite(&report))
    {
        eprintln!("error: cannot write the cases to `{}`: {e}", file.display());
        return ExitCode::FAILURE;
    }
    if report.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `cedargate prove`.
#[derive(Debug, clap::Args)]
pub struct ProveArgs {
    /// Where the policies and the schema are.
    #[command(flatten)]
    pub policy: crate::policy::PolicyArgs,
    /// The invariants file [default: `invariants.yaml` in the policy
    /// directory; without it only the never-error checks run].
    #[arg(long, env = "CEDARGATE_INVARIANTS", value_name = "FILE")]
    pub invariants: Option<std::path::PathBuf>,
    /// The limit for one solver check, in seconds (cvc5 `--tlimit-per`); a
    /// check past it counts as not proved.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub time_limit: f64,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<std::path::PathBuf>,
    /// Also write every counterexample as a YAML test suite to this file.
    #[arg(long, value_name = "FILE")]
    pub cases: Option<std::path::PathBuf>,
}
