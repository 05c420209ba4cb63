//! `cedargate prove`, run as a process against a copy of the shipped
//! policies, invariants and schema. The proofs need cvc5 1.3.1: `$CVC5`, or
//! the repository's adapter `tools/cvc5` over the virtualenv that
//! `bash tests/run.sh` provisions (`target/cvc5-venv`).

use std::path::{Path, PathBuf};

use crate::cli::Workspace;
use predicates::prelude::*;

const NEEDS_CVC5: &str = "needs cvc5 1.3.1: run `bash tests/run.sh` (or set CVC5)";

/// `$CVC5`, else the repository's adapter when its virtualenv is there.
pub(crate) fn cvc5() -> PathBuf {
    if let Some(path) = std::env::var_os("CVC5").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join("target/cvc5-venv/bin/python3").exists(),
        "{NEEDS_CVC5}"
    );
    repo.join("tools/cvc5")
}

#[test]
#[ignore = "needs cvc5 1.3.1: run `bash tests/run.sh` (or set CVC5)"]
fn prove_passes_on_the_shipped_policies() {
    // Arrange
    let workspace = Workspace::new();
    let cvc5 = cvc5();

    // Act
    let assert = workspace
        .cedargate_with_solver(Some(&cvc5))
        .args(["prove", "--junit", "prove.xml"])
        .assert();

    // Assert
    let output = assert.success().get_output().clone();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for id in [
        "agent-never-manages-organization",
        "only-active-members",
        "no-membership-no-access",
        "mfa-required-by-membership",
    ] {
        assert!(
            stdout.lines().any(|l| l.contains("ok") && l.contains(id)),
            "{id} not proved:\n{stdout}"
        );
    }
    assert!(stdout.contains("every policy never errors"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let junit = workspace.read("prove.xml");
    assert!(junit.contains("failures=\"0\""), "{junit}");
    assert!(
        junit.contains("agent-never-manages-organization"),
        "{junit}"
    );
}

#[test]
#[ignore = "needs cvc5 1.3.1: run `bash tests/run.sh` (or set CVC5)"]
fn a_broken_policy_fails_with_a_counterexample_the_authorizer_confirms() {
    // Arrange: agents may manage the organization again (the forbid keeps
    // only user administration).
    let workspace = Workspace::new();
    let cvc5 = cvc5();
    let original = workspace.read("policies/membership.cedar");
    workspace.replace(
        "policies/membership.cedar",
        r#"action in [Action::"organization.manage", Action::"users.administer"],"#,
        r#"action in [Action::"users.administer"],"#,
    );

    // Act
    let assert = workspace
        .cedargate_with_solver(Some(&cvc5))
        .args(["prove", "--cases", "cex.yaml", "--junit", "prove.xml"])
        .assert();

    // Assert: the invariant fails with a counterexample, confirmed.
    let output = assert.code(1).get_output().clone();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("FAIL") && l.contains("agent-never-manages-organization")),
        "{stdout}"
    );
    // Both the action and the action in its group (audit.read).
    for action in ["organization.manage", "audit.read"] {
        assert!(
            stdout.contains(&format!(
                "User, Action::\"{action}\", Organization: allowed, but the invariant says never"
            )),
            "{action}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("confirmed by the authorizer: allow by [organization-manage"),
        "{stdout}"
    );
    assert!(stdout.contains("expect: deny"), "{stdout}");
    assert!(!stdout.contains("NOT confirmed"), "{stdout}");
    let junit = workspace.read("prove.xml");
    assert!(junit.contains("<failure"), "{junit}");

    // The written case is a suite `cedargate test` runs: it fails on the
    // broken policies (allowed, expected deny) ...
    let cases = workspace.read("cex.yaml");
    assert!(
        cases.contains(r#"action: Action::"organization.manage""#),
        "{cases}"
    );
    assert!(
        !cases.contains(r#"type: Action"#),
        "action entities are left out:\n{cases}"
    );
    workspace
        .cedargate_with_solver(None)
        .args(["test", "cex.yaml"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("expected: deny"));
    // ... and passes once they are fixed.
    std::fs::write(workspace.path("policies/membership.cedar"), original).expect("restore");
    workspace
        .cedargate_with_solver(None)
        .args(["test", "cex.yaml"])
        .assert()
        .success()
        .stdout(predicate::str::contains(" passed, 0 failed"));
}

#[test]
fn prove_says_what_to_install_when_the_solver_is_missing() {
    // Arrange
    let workspace = Workspace::new();
    let empty = tempfile::tempdir().expect("create a temporary directory");

    // Act: CVC5 names nothing, then no cvc5 on the PATH.
    let named = workspace
        .cedargate_with_solver(Some(Path::new("/nonexistent/cvc5")))
        .arg("prove")
        .assert();
    let unset = workspace
        .cedargate_with_solver(None)
        .env("PATH", empty.path())
        .arg("prove")
        .assert();

    // Assert
    named
        .code(1)
        .stderr(predicate::str::contains(
            "CVC5 is set to `/nonexistent/cvc5`",
        ))
        .stderr(predicate::str::contains("pip install cvc5==1.3.1"));
    unset
        .code(1)
        .stderr(predicate::str::contains("no cvc5 found"))
        .stderr(predicate::str::contains("cvc5 1.3.1"))
        .stderr(predicate::str::contains("tools/cvc5"));
}

#[test]
fn prove_refuses_a_solver_of_another_version() {
    use std::os::unix::fs::PermissionsExt as _;
    // Arrange
    let workspace = Workspace::new();
    let fake = workspace.path("cvc5");
    std::fs::write(&fake, "#!/bin/sh\necho 'This is cvc5 version 1.2.1'\n").expect("write");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    // Act
    let assert = workspace
        .cedargate_with_solver(Some(&fake))
        .arg("prove")
        .assert();

    // Assert
    assert
        .code(1)
        .stderr(predicate::str::contains("not cvc5 1.3.1"))
        .stderr(predicate::str::contains("1.2.1"));
}

#[test]
#[ignore = "needs cvc5 1.3.1: run `bash tests/run.sh` (or set CVC5)"]
fn the_reload_gate_refuses_a_set_that_breaks_an_invariant_and_ignores_a_missing_file() {
    use cedargate::assurance;
    // Arrange: the broken copy of the previous test.
    let workspace = Workspace::new();
    let cvc5 = assurance::Cvc5::at(&cvc5()).expect("cvc5 1.3.1");
    workspace.replace(
        "policies/membership.cedar",
        r#"action in [Action::"organization.manage", Action::"users.administer"],"#,
        r#"action in [Action::"users.administer"],"#,
    );
    let policies = workspace.path("policies");
    let snapshot =
        cedargate::policy::load(&policies, &workspace.path("schema")).expect("valid policies");
    let limit = assurance::DEFAULT_TIME_LIMIT;

    // Act
    let refused = assurance::check_invariants_with(&snapshot, &policies, &cvc5, limit);
    std::fs::remove_file(policies.join("invariants.yaml")).expect("remove the invariants");
    let without_invariants = assurance::check_invariants_with(&snapshot, &policies, &cvc5, limit);

    // Assert
    let error = refused.expect_err("the broken set is refused").to_string();
    assert!(
        error.contains("agent-never-manages-organization"),
        "{error}"
    );
    assert!(error.contains("confirmed by the authorizer"), "{error}");
    assert!(without_invariants.is_ok(), "{without_invariants:?}");
}
