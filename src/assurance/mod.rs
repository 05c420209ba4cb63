//! Proofs about the policies over every request and every entity store:
//! the invariants beside them (`policies/invariants.yaml`) and that no
//! policy can error, checked by cedar-policy-symcc with the SMT solver cvc5.
//! `cedargate prove` prints them; the hot-reload gate refuses a candidate
//! policy set that breaks one ([`check_invariants`]).

pub mod command;
pub mod diff;
pub mod invariants;
pub mod prove;
pub mod report;
pub mod solver;

use std::path::Path;
use std::time::Duration;

pub use invariants::{Claim, Invariant, InvariantsError};
pub use prove::{Counterexample, Failure, ItemResult, ProveError, ProveReport};
pub use solver::{Cvc5, INSTALL_HINT, SolverError};

use crate::policy::PolicySnapshot;

/// The default limit for one solver check.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Runs [`prove::prove`] to completion on a thread of its own with its own
/// runtime, so that callers inside another runtime's blocking task (the
/// reload) and plain synchronous callers (the CLI) share one entry point.
pub fn prove_blocking(
    snapshot: &PolicySnapshot,
    invariants: &[Invariant],
    cvc5: &Cvc5,
    time_limit: Duration,
) -> Result<ProveReport, ProveError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ProveError::Runtime)?;
                runtime.block_on(prove::prove(snapshot, invariants, cvc5, time_limit))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(ProveError::Runtime(std::io::Error::other(
                    "the proving thread panicked",
                )))
            })
    })
}

/// Why the reload gate refuses a candidate policy set.
#[derive(Debug, thiserror::Error)]
pub enum InvariantCheckError {
    /// The invariants file cannot be used.
    #[error("the invariants cannot be checked")]
    Invariants(#[from] InvariantsError),
    /// The solver was found but the proofs could not run.
    #[error("the invariants cannot be proved")]
    Prove(#[from] ProveError),
    /// Some invariant, or some policy's never-erroring, does not hold.
    #[error("the policies break {failed} invariant(s) or never-error check(s):\n{report}")]
    Broken {
        /// Invariants and policies that failed.
        failed: usize,
        /// The text report with the counterexamples.
        report: String,
    },
}

/// The reload gate: when `<policies_dir>/invariants.yaml` exists and cvc5 is
/// found (`$CVC5` or the `PATH`), proves the invariants and that no policy
/// errors on `snapshot`; otherwise does nothing (a missing solver is
/// logged), so that a sidecar without the solver still reloads.
pub fn check_invariants(
    snapshot: &PolicySnapshot,
    policies_dir: &Path,
) -> Result<(), InvariantCheckError> {
    let path = policies_dir.join(invariants::FILE_NAME);
    if !path.is_file() {
        return Ok(());
    }
    match Cvc5::find() {
        Ok(cvc5) => check_invariants_with(snapshot, policies_dir, &cvc5, DEFAULT_TIME_LIMIT),
        Err(e) => {
            tracing::warn!(error = %e, file = %path.display(), "invariants not proved on reload: no usable cvc5");
            Ok(())
        }
    }
}

/// [`check_invariants`] with a given solver and per-check limit (and a
/// missing invariants file still passes).
pub fn check_invariants_with(
    snapshot: &PolicySnapshot,
    policies_dir: &Path,
    cvc5: &Cvc5,
    time_limit: Duration,
) -> Result<(), InvariantCheckError> {
    let path = policies_dir.join(invariants::FILE_NAME);
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|source| InvariantsError::Io {
        path: path.clone(),
        source,
    })?;
    let key = proof_key(snapshot, text.as_bytes(), cvc5, time_limit);
    if proved().lock().is_ok_and(|proved| proved.contains(&key)) {
        return Ok(());
    }
    let invariants = invariants::parse(&text, &path, snapshot.schema())?;
    let report = prove_blocking(snapshot, &invariants, cvc5, time_limit)?;
    let failed = report.failed();
    if failed == 0 {
        tracing::info!(
            checks = report.checks,
            seconds = report.elapsed.as_secs_f64(),
            "invariants proved"
        );
        if let Ok(mut proved) = proved().lock() {
            proved.insert(key);
        }
        return Ok(());
    }
    let mut text = String::new();
    report::text(&report, Some(&path.display().to_string()), &mut text);
    Err(InvariantCheckError::Broken {
        failed,
        report: text,
    })
}

/// Digests of (policies, schema, invariants, solver) already proved in this
/// process. A proof takes seconds; the watcher reloads on every change of
/// the policy directory, often back to a set it has proved (an editor's
/// save, a revert), and what was proved of the same text stays proved.
/// Failures are not kept: a solver that gave up may decide next time.
fn proved() -> &'static std::sync::Mutex<std::collections::HashSet<[u8; 32]>> {
    static PROVED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>> =
        std::sync::OnceLock::new();
    PROVED.get_or_init(Default::default)
}

fn proof_key(
    snapshot: &PolicySnapshot,
    invariants: &[u8],
    cvc5: &Cvc5,
    time_limit: Duration,
) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut hash = Sha256::new();
    hash.update(snapshot.schema_digest());
    // Sorted by file and line, each with its id: the digest does not depend
    // on the policy set's iteration order.
    for (id, _) in snapshot.policy_ids() {
        let text = snapshot
            .policies()
            .policy(&cedar_policy::PolicyId::new(&id))
            .map(ToString::to_string)
            .unwrap_or_default();
        for part in [id.as_bytes(), b"\0", text.as_bytes(), b"\0"] {
            hash.update(part);
        }
    }
    hash.update(invariants);
    hash.update(cvc5.path.as_os_str().as_encoded_bytes());
    hash.update(time_limit.as_millis().to_le_bytes());
    hash.finalize().into()
}
