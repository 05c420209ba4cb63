//! Finding and starting the SMT solver: cvc5 1.3.1, the version
//! cedar-policy-symcc is verified with.
//!
//! The executable is `$CVC5` when set, else `cvc5` on the `PATH`. No
//! package registry ships the cvc5 executable; PyPI's `cvc5==1.3.1` wheel
//! ships the library, and `tools/cvc5` in this repository makes it a
//! command that answers as the executable does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cedar_policy_symcc::solver::LocalSolver;

/// The solver version the proofs need.
pub const REQUIRED_VERSION: &str = "1.3.1";

/// What to do when no usable solver is found (printed after the reason).
pub const INSTALL_HINT: &str = "\
cedargate prove needs the SMT solver cvc5 1.3.1: set CVC5 to its path, or put `cvc5` on the PATH.
No registry ships the cvc5 executable; PyPI's wheel ships the library, and `tools/cvc5`
(in the cedargate repository) answers as the executable does. From the repository:
    python3 -m venv target/cvc5-venv
    target/cvc5-venv/bin/pip install cvc5==1.3.1
    export CVC5=\"$PWD/tools/cvc5\"
(`bash tests/run.sh` does the first two.)";

/// Why no solver could be used.
#[derive(Debug, thiserror::Error)]
pub enum SolverError {
    /// Neither `$CVC5` nor the `PATH` names a solver.
    #[error("no cvc5 found: CVC5 is not set and no `cvc5` is on the PATH")]
    NotFound,
    /// `$CVC5` names nothing executable.
    #[error("CVC5 is set to `{}`, which does not exist", .0.display())]
    Missing(PathBuf),
    /// The solver did not answer `--version`.
    #[error("`{} --version` failed", path.display())]
    Version {
        /// The executable.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The solver answered `--version` with something unexpected.
    #[error("`{} --version` says `{answer}`, not cvc5 {REQUIRED_VERSION}", path.display())]
    WrongVersion {
        /// The executable.
        path: PathBuf,
        /// Its first line of output (or its error output).
        answer: String,
    },
    /// The solver process could not be started.
    #[error("cannot start `{}`", path.display())]
    Spawn {
        /// The executable.
        path: PathBuf,
        /// Why.
        #[source]
        source: cedar_policy_symcc::err::SolverError,
    },
}

/// A cvc5 executable whose version was checked.
#[derive(Debug, Clone)]
pub struct Cvc5 {
    /// The executable.
    pub path: PathBuf,
    /// The version it reported, e.g. `1.3.1`.
    pub version: String,
}

impl Cvc5 {
    /// Finds the solver (`$CVC5`, else `cvc5` on the `PATH`) and checks
    /// that it is cvc5 1.3.1.
    pub fn find() -> Result<Self, SolverError> {
        let path = match std::env::var_os("CVC5").filter(|v| !v.is_empty()) {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(SolverError::Missing(path));
                }
                path
            }
            None => on_path("cvc5").ok_or(SolverError::NotFound)?,
        };
        Self::at(&path)
    }

    /// The solver at `path`, when it is cvc5 1.3.1.
    pub fn at(path: &Path) -> Result<Self, SolverError> {
        let version = version_of(path)?;
        Ok(Self {
            path: path.to_owned(),
            version,
        })
    }

    /// Starts a solver process that gives up on any one check after
    /// `limit` (`--tlimit-per`: `--tlimit` would bound the whole process,
    /// which answers every check of a run).
    pub fn start(&self, limit: Duration) -> Result<LocalSolver, SolverError> {
        let millis = limit.as_millis().max(1);
        let mut command = tokio::process::Command::new(&self.path);
        command
            .args(["--lang", "smt"])
            .arg(format!("--tlimit-per={millis}"))
            // A run that is dropped (an error, a time limit) ends its solver.
            .kill_on_drop(true);
        LocalSolver::from_command(&mut command).map_err(|source| SolverError::Spawn {
            path: self.path.clone(),
            source,
        })
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `path --version` and returns the version when it is 1.3.1.
fn version_of(path: &Path) -> Result<String, SolverError> {
    let output = std::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| SolverError::Version {
            path: path.to_owned(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().unwrap_or_default().trim().to_owned();
    // `This is cvc5 version 1.3.1 [git tag 1.3.1 branch HEAD]`; the adapter
    // over the PyPI build says `1.3.1-modified`.
    let version = first
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or_default();
    let exact = version
        .strip_prefix(REQUIRED_VERSION)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'));
    if output.status.success() && first.contains("cvc5") && exact {
        return Ok(version.to_owned());
    }
    let answer = if first.is_empty() {
        String::from_utf8_lossy(&output.stderr).trim().to_owned()
    } else {
        first
    };
    Err(SolverError::WrongVersion {
        path: path.to_owned(),
        answer,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may panic")]
mod tests {
    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("fake-cvc5");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn versions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = script(
            dir.path(),
            "echo 'This is cvc5 version 1.3.1 [git tag 1.3.1 branch HEAD]'",
        );
        assert_eq!(version_of(&good).unwrap(), "1.3.1");
        let old = script(dir.path(), "echo 'This is cvc5 version 1.2.0'");
        let e = version_of(&old).unwrap_err().to_string();
        assert!(e.contains("1.2.0") && e.contains("not cvc5 1.3.1"), "{e}");
        let newer = script(dir.path(), "echo 'This is cvc5 version 1.3.10'");
        assert!(version_of(&newer).is_err());
        let z3 = script(dir.path(), "echo 'Z3 version 4.13.0 - 64 bit'");
        assert!(version_of(&z3).is_err());
    }
}
