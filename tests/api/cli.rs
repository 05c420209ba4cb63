//! The `cedargate` command line, run as a process against a copy of the
//! shipped policies, schema and test suites in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

use crate::helpers::copy_dir;

/// A temporary copy of `policies/` (with its test suites) and `schema/`.
/// Commands run inside it, so every path they print is short and relative.
pub(crate) struct Workspace {
    dir: TempDir,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().expect("create a temporary directory");
        for sub in ["policies", "schema"] {
            copy_dir(&repo.join(sub), &dir.path().join(sub));
        }
        Self { dir }
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub(crate) fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).expect("read a workspace file")
    }

    pub(crate) fn write(&self, relative: &str, text: &str) {
        std::fs::write(self.path(relative), text).expect("write a workspace file");
    }

    /// Replaces the first occurrence of `from`, which must be there.
    pub(crate) fn replace(&self, relative: &str, from: &str, to: &str) {
        let text = self.read(relative);
        assert!(
            text.contains(from),
            "`{relative}` no longer contains `{from}`; update the test"
        );
        self.write(relative, &text.replacen(from, to, 1));
    }

    /// The 1-based line of the first occurrence of `needle`.
    pub(crate) fn line_of(&self, relative: &str, needle: &str) -> usize {
        self.read(relative)
            .lines()
            .position(|line| line.contains(needle))
            .map(|index| index + 1)
            .unwrap_or_else(|| panic!("`{relative}` does not contain `{needle}`"))
    }

    /// `cedargate` run in the workspace, free of the caller's environment.
    pub(crate) fn cedargate(&self) -> Command {
        let mut command = Command::cargo_bin("cedargate").expect("the cedargate binary is built");
        command
            .current_dir(self.dir.path())
            .env_remove("CEDARGATE_POLICIES")
            .env_remove("CEDARGATE_SCHEMA")
            .env_remove("CEDARGATE_INVARIANTS")
            .env_remove("CVC5")
            .env_remove("FORCE_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env("NO_COLOR", "1");
        command
    }

    /// [`Self::cedargate`] with the solver `cvc5`, when one is given.
    pub(crate) fn cedargate_with_solver(&self, cvc5: Option<&Path>) -> Command {
        let mut command = self.cedargate();
        if let Some(path) = cvc5 {
            command.env("CVC5", path);
        }
        command
    }
}

/// Stdout and stderr of a finished command, as text.
fn text_of(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A suite of the three cases around Billing: an allowed read, an action the
/// schema does not define, and a denied read.
const SUITE_WITH_UNKNOWN_ACTION: &str = r#"
entities: entities/orgs.json
cases:
  - name: an owner reads billing
    principal: User::"olivia"
    action: billing.read
    resource: Organization::"acme"
    expect: allow
  - name: writing billing is not an action
    principal: User::"olivia"
    action: billing.write
    resource: Organization::"acme"
    expect: allow
  - name: a member without billing cannot read it
    principal: User::"nora"
    action: billing.read
    resource: Organization::"acme"
    expect: deny
"#;

/// A suite whose second case expects an Allow that the policies deny.
const SUITE_WITH_A_FAILING_CASE: &str = r#"
entities: entities/orgs.json
cases:
  - name: an owner reads billing
    principal: User::"olivia"
    action: billing.read
    resource: Organization::"acme"
    expect: allow
  - name: a member without billing reads billing
    principal: User::"nora"
    action: billing.read
    resource: Organization::"acme"
    expect: allow
"#;

const FAILING_CASE: &str = "a member without billing reads billing";

// ------------------------------------------------------------------ validate

#[test]
fn validate_accepts_the_shipped_policies_and_schema() {
    // Arrange
    let workspace = Workspace::new();

    // Act
    let assert = workspace.cedargate().arg("validate").assert();

    // Assert
    assert
        .success()
        .stdout(predicate::str::starts_with("ok:"))
        .stderr(predicate::str::is_empty());
}

#[test]
fn validate_points_at_the_file_and_line_of_a_typo_in_a_policy() {
    // Arrange
    let workspace = Workspace::new();
    workspace.replace(
        "policies/modules.cedar",
        "perms.billing >= 1",
        "perms.biling >= 1",
    );
    let line = workspace.line_of("policies/modules.cedar", "perms.biling");

    // Act
    let assert = workspace.cedargate().arg("validate").assert();

    // Assert
    assert
        .code(1)
        .stderr(predicate::str::is_match(format!(r"policies/modules\.cedar:{line}:\d+")).unwrap())
        .stderr(predicate::str::contains("biling"))
        .stderr(predicate::str::contains("did you mean `billing`"));
}

#[test]
fn validate_points_at_the_file_and_line_of_a_syntax_error_in_a_policy() {
    // Arrange
    let workspace = Workspace::new();
    workspace.replace(
        "policies/membership.cedar",
        "forbid (principal, action, resource)",
        "forbid (principal action, resource)",
    );
    let line = workspace.line_of("policies/membership.cedar", "principal action,");

    // Act
    let assert = workspace.cedargate().arg("validate").assert();

    // Assert
    assert
        .code(1)
        .stderr(
            predicate::str::is_match(format!(r"policies/membership\.cedar:{line}:\d+")).unwrap(),
        )
        .stderr(predicate::str::contains("unexpected token"));
}

#[test]
fn validate_points_at_the_schema_file_and_line_of_a_syntax_error_in_the_schema() {
    // Arrange
    let workspace = Workspace::new();
    let schema = "schema/cedargate.cedarschema";
    workspace.replace(schema, "requireMfa: Bool,", "requireMfa Bool,");
    let line = workspace.line_of(schema, "requireMfa Bool,");

    // Act
    let assert = workspace.cedargate().arg("validate").assert();

    // Assert
    assert
        .code(1)
        .stderr(
            predicate::str::is_match(format!(r"schema/cedargate\.cedarschema:{line}:\d+")).unwrap(),
        )
        .stderr(predicate::str::contains("error parsing schema"));
}

#[test]
fn validate_rejects_two_policies_with_the_same_id() {
    // Arrange
    let workspace = Workspace::new();
    let modules = "policies/modules.cedar";
    let first = workspace.line_of(modules, r#"@id("billing-read")"#);
    let duplicate = workspace.line_of(modules, r#"@id("billing-manage")"#);
    workspace.replace(
        modules,
        r#"@id("billing-manage")"#,
        r#"@id("billing-read")"#,
    );

    // Act
    let assert = workspace.cedargate().arg("validate").assert();

    // Assert
    assert
        .code(1)
        .stderr(predicate::str::contains(
            "duplicate policy id `billing-read`",
        ))
        .stderr(predicate::str::contains(format!(
            "policies/modules.cedar:{duplicate}"
        )))
        .stderr(predicate::str::contains(format!(
            "policies/modules.cedar:{first}"
        )));
}

// ------------------------------------------------------------------ test

#[test]
fn test_passes_the_shipped_suites_with_full_coverage() {
    // Arrange
    let workspace = Workspace::new();

    // Act
    let assert = workspace
        .cedargate()
        .args(["test", "--require-coverage"])
        .assert();

    // Assert
    assert
        .success()
        .stdout(predicate::str::is_match(r"(?m)^\d+ passed, 0 failed$").unwrap())
        .stdout(predicate::str::contains("NEVER").not())
        .stderr(predicate::str::is_empty());
}

#[test]
fn test_points_at_the_file_and_line_of_malformed_yaml_in_a_suite() {
    // Arrange
    let workspace = Workspace::new();
    let suite = "policies/tests/broken.yaml";
    workspace.write(
        suite,
        concat!(
            "entities: entities/orgs.json\n",
            "cases:\n",
            "  - name: an owner reads billing\n",
            "    principal: User::\"olivia\"\n",
            "    action: [billing.read\n",
            "    resource: Organization::\"acme\"\n",
            "    expect: allow\n",
        ),
    );

    // Act
    let assert = workspace.cedargate().args(["test", suite]).assert();

    // Assert
    assert
        .code(1)
        .stdout(predicate::str::contains(format!(
            "ERROR {suite}: the suite could not be loaded"
        )))
        .stdout(predicate::str::is_match(r"policies/tests/broken\.yaml:[56]:\d+").unwrap())
        .stdout(predicate::str::is_match(r"(?m)^0 passed, 1 failed$").unwrap());
}

#[test]
fn test_names_the_suite_and_case_of_an_action_the_schema_does_not_define_and_runs_the_others() {
    // Arrange
    let workspace = Workspace::new();
    let suite = "policies/tests/billing.yaml";
    workspace.write(suite, SUITE_WITH_UNKNOWN_ACTION);

    // Act
    let assert = workspace.cedargate().args(["test", suite]).assert();

    // Assert
    assert
        .code(1)
        .stdout(predicate::str::contains(format!(
            "ERROR {suite} case 2 `writing billing is not an action`"
        )))
        .stdout(predicate::str::contains(
            r#"Action::"billing.write"` is not defined"#,
        ))
        .stdout(predicate::str::is_match(r"(?m)^2 passed, 1 failed$").unwrap());
}

#[test]
fn test_names_the_suite_whose_entities_do_not_match_the_schema() {
    // Arrange
    let workspace = Workspace::new();
    let suite = "policies/tests/entities-without-mfa.yaml";
    workspace.write(
        suite,
        r#"
entities:
  - {"uid": {"type": "Organization", "id": "acme"}, "attrs": {"tenant": "acme", "name": "Acme Energy"}, "parents": []}
cases:
  - name: an organization without requireMfa is no organization
    principal: User::"olivia"
    action: billing.read
    resource: Organization::"acme"
    expect: deny
"#,
    );

    // Act
    let assert = workspace.cedargate().args(["test", suite]).assert();

    // Assert
    assert
        .code(1)
        .stdout(predicate::str::contains(format!(
            "ERROR {suite}: the suite could not be loaded"
        )))
        .stdout(predicate::str::contains("requireMfa"))
        .stdout(predicate::str::is_match(r"(?m)^0 passed, 1 failed$").unwrap());
}

#[test]
fn test_names_a_misspelt_top_level_key_of_a_suite() {
    // Arrange
    let workspace = Workspace::new();
    let suite = "policies/tests/misspelt.yaml";
    workspace.write(
        suite,
        &SUITE_WITH_A_FAILING_CASE.replace("\ncases:\n", "\ncasez:\n"),
    );
    let line = workspace.line_of(suite, "casez:");

    // Act
    let assert = workspace.cedargate().args(["test", suite]).assert();

    // Assert
    assert
        .code(1)
        .stdout(predicate::str::contains("unknown key `casez`"))
        .stdout(predicate::str::contains(format!("{suite}:{line}:1")))
        .stdout(predicate::str::is_match(r"(?m)^0 passed, 1 failed$").unwrap());
}

#[test]
fn test_names_a_misspelt_key_of_a_case() {
    // Arrange
    let workspace = Workspace::new();
    let suite = "policies/tests/misspelt.yaml";
    workspace.write(
        suite,
        &SUITE_WITH_A_FAILING_CASE.replacen("expect: allow", "expected: allow", 1),
    );
    let line = workspace.line_of(suite, "expected: allow");

    // Act
    let assert = workspace.cedargate().args(["test", suite]).assert();

    // Assert
    assert
        .code(1)
        .stdout(predicate::str::contains("unknown field `expected`"))
        .stdout(predicate::str::contains(format!("{suite}:{line}:")))
        .stdout(predicate::str::is_match(r"(?m)^0 passed, 1 failed$").unwrap());
}

#[test]
fn test_reports_a_failing_case_with_expected_and_actual_decisions() {
    // Arrange
    let workspace = Workspace::new();
    let suite = "policies/tests/failing.yaml";
    workspace.write(suite, SUITE_WITH_A_FAILING_CASE);

    // Act
    let output = workspace
        .cedargate()
        .args(["test", suite])
        .output()
        .expect("run cedargate");

    // Assert
    let (stdout, _) = text_of(&output);
    assert_eq!(output.status.code(), Some(1), "stdout:\n{stdout}");
    assert!(
        stdout.contains(&format!("FAIL {suite} case 2 `{FAILING_CASE}`")),
        "{stdout}"
    );
    assert!(stdout.contains("expected: allow"), "{stdout}");
    assert!(
        stdout.contains("actual:   deny (no determining policy)"),
        "{stdout}"
    );
    assert_eq!(
        stdout.trim_end().lines().last(),
        Some("1 passed, 1 failed"),
        "{stdout}"
    );
}

#[test]
fn test_writes_junit_xml_with_a_failure_for_the_failing_case() {
    // Arrange
    let workspace = Workspace::new();
    let suite = "policies/tests/failing.yaml";
    workspace.write(suite, SUITE_WITH_A_FAILING_CASE);

    // Act
    let assert = workspace
        .cedargate()
        .args(["test", "--junit", "report.xml", suite])
        .assert();

    // Assert
    assert.code(1);
    let xml = workspace.read("report.xml");
    assert!(xml.contains("<testsuites"), "{xml}");
    let testcase = |name: &str| {
        let start = xml
            .find(&format!(r#"<testcase name="{name}""#))
            .unwrap_or_else(|| panic!("no testcase `{name}` in:\n{xml}"));
        let end = start + xml[start..].find("</testcase>").expect("a closed testcase");
        xml[start..end].to_owned()
    };
    assert!(testcase(FAILING_CASE).contains("<failure"), "{xml}");
    assert!(
        !testcase("an owner reads billing").contains("<failure"),
        "{xml}"
    );
}

#[test]
fn test_require_coverage_fails_and_lists_the_policies_no_case_determined() {
    // Arrange
    let workspace = Workspace::new();
    let suite = "policies/tests/billing-only.yaml";
    workspace.write(
        suite,
        r#"
entities: entities/orgs.json
cases:
  - name: an owner reads billing
    principal: User::"olivia"
    action: billing.read
    resource: Organization::"acme"
    expect: allow
"#,
    );

    // Act
    let output = workspace
        .cedargate()
        .args(["test", "--require-coverage", suite])
        .output()
        .expect("run cedargate");

    // Assert
    let (stdout, stderr) = text_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    let uncovered = stderr
        .lines()
        .find(|line| line.starts_with("error: --require-coverage"))
        .unwrap_or_else(|| panic!("no coverage error in:\n{stderr}"));
    assert!(uncovered.contains("billing-manage"), "{uncovered}");
    assert!(uncovered.contains("member-must-be-active"), "{uncovered}");
    assert!(!uncovered.contains("billing-read"), "{uncovered}");
}

// ------------------------------------------------------------------ check

/// `check` of one request against the shipped entities.
fn check(workspace: &Workspace, principal: &str, action: &str) -> Command {
    let mut command = workspace.cedargate();
    command.args([
        "check",
        "--principal",
        principal,
        "--action",
        action,
        "--resource",
        r#"Organization::"acme""#,
        "--entities",
        "policies/tests/entities/orgs.json",
    ]);
    command
}

#[test]
fn check_explains_an_allow_by_the_permit_and_its_location() {
    // Arrange
    let workspace = Workspace::new();
    let line = workspace.line_of("policies/modules.cedar", r#"@id("billing-read")"#);

    // Act
    let assert = check(&workspace, r#"User::"olivia""#, "billing.read").assert();

    // Assert
    assert
        .success()
        .stdout(predicate::str::contains("decision: ALLOW"))
        .stdout(predicate::str::contains(format!(
            "permit billing-read  policies/modules.cedar:{line}"
        )));
}

#[test]
fn check_explains_a_deny_by_the_forbid_that_determined_it() {
    // Arrange
    let workspace = Workspace::new();
    let line = workspace.line_of(
        "policies/membership.cedar",
        r#"@id("member-must-be-active")"#,
    );

    // Act
    let assert = check(&workspace, r#"User::"pete""#, "billing.read").assert();

    // Assert
    assert
        .success()
        .stdout(predicate::str::contains("decision: DENY"))
        .stdout(predicate::str::contains(format!(
            "forbid member-must-be-active  policies/membership.cedar:{line}"
        )));
}

#[test]
fn check_prints_the_decision_as_json_with_json() {
    // Arrange
    let workspace = Workspace::new();

    // Act
    let output = check(&workspace, r#"User::"pete""#, "billing.read")
        .arg("--json")
        .output()
        .expect("run cedargate");

    // Assert
    let (stdout, stderr) = text_of(&output);
    assert!(output.status.success(), "stderr:\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    assert_eq!(json["decision"], "deny", "{json}");
    assert_eq!(json["reasons"][0]["id"], "member-must-be-active", "{json}");
    assert_eq!(
        json["reasons"][0]["origin"]["file"], "policies/membership.cedar",
        "{json}"
    );
    assert_eq!(json["errors"], serde_json::json!([]), "{json}");
}

#[test]
fn check_rejects_an_action_the_schema_does_not_define_with_a_clear_message() {
    // Arrange
    let workspace = Workspace::new();

    // Act
    let assert = check(&workspace, r#"User::"olivia""#, "billing.write").assert();

    // Assert
    assert
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(
            r#"action `Action::"billing.write"` is not defined"#,
        ))
        .stderr(predicate::str::contains("invalid context").not())
        .stderr(predicate::str::contains("panicked").not());
}

#[test]
fn check_rejects_a_context_that_is_not_json_with_a_clear_message() {
    // Arrange
    let workspace = Workspace::new();

    // Act
    let assert = check(&workspace, r#"User::"olivia""#, "billing.read")
        .args(["--context", r#"{"mfa": true"#])
        .assert();

    // Assert
    assert
        .code(1)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("--context is not JSON"))
        .stderr(predicate::str::contains("panicked").not());
}

// ------------------------------------------------------------------ fmt

#[test]
fn fmt_check_accepts_the_shipped_policies() {
    // Arrange
    let workspace = Workspace::new();

    // Act
    let assert = workspace.cedargate().args(["fmt", "--check"]).assert();

    // Assert
    assert
        .success()
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::is_empty());
}

#[test]
fn fmt_check_names_a_badly_formatted_file_and_fmt_fixes_it() {
    // Arrange
    let workspace = Workspace::new();
    let modules = "policies/modules.cedar";
    let original = workspace.read(modules);
    workspace.write(
        modules,
        &original
            .replace("permit (\n  principal,\n", "permit(principal,\n")
            .replace("  resource\n)", "resource   )"),
    );

    // Act
    let before = workspace.cedargate().args(["fmt", "--check"]).assert();
    let fixed = workspace.cedargate().arg("fmt").assert();
    let after = workspace.cedargate().args(["fmt", "--check"]).assert();

    // Assert
    before
        .code(1)
        .stdout(predicate::str::contains(format!(
            "not formatted: {modules}"
        )))
        .stdout(predicate::str::contains("membership.cedar").not());
    fixed
        .success()
        .stdout(predicate::str::contains(format!("formatted: {modules}")));
    after.success().stdout(predicate::str::is_empty());
    assert_eq!(workspace.read(modules), original);
}

// ------------------------------------------------------------------ clap

#[test]
fn an_unknown_flag_is_rejected_by_name() {
    // Arrange
    let workspace = Workspace::new();

    // Act
    let assert = workspace.cedargate().args(["validate", "--nope"]).assert();

    // Assert
    assert.code(2).stderr(predicate::str::contains("--nope"));
}

/// An invitation lifetime of zero (or out of bounds) is refused with the
/// bounds, never rounded up to something that works (it was one hour).
#[test]
fn an_invitation_lifetime_of_zero_is_refused_with_its_bounds() {
    let dir = TempDir::new().expect("a temporary directory");
    for ttl in ["0s", "0", "91d"] {
        Command::cargo_bin("cedargate")
            .expect("the cedargate binary is built")
            .current_dir(dir.path())
            .args(["serve", "--bind", "127.0.0.1:0", "--invite-ttl", ttl])
            // A parser that took it would start a server: bound the wait.
            .timeout(std::time::Duration::from_secs(60))
            .assert()
            .failure()
            .stderr(predicate::str::contains(
                "between 5 minutes (`5m`) and 90 days (`90d`)",
            ));
    }
}
