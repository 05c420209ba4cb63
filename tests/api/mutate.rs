//! `cedargate test --mutate` (mutation testing of the suites) and the
//! condition coverage of `cedargate test`, run as a process against a copy
//! of the shipped policies, suites and schema.

use std::process::Output;

use crate::cli::Workspace;

fn text_of(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Removes from every shipped suite the cases whose context says
/// `lastActiveManager: false`. Only such a case can show
/// `context.lastActiveManager` false, so `keep-last-manager`'s conjunct is
/// never seen false and dropping it changes no remaining case's decision,
/// whatever other cases the suites hold.
fn weaken(workspace: &Workspace) -> usize {
    let dir = workspace.path("policies/tests");
    let mut removed = 0;
    for entry in std::fs::read_dir(&dir).expect("read the suites") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a suite");
        let mut suite: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("a suite");
        let Some(cases) = suite
            .get_mut("cases")
            .and_then(serde_yaml_ng::Value::as_sequence_mut)
        else {
            continue;
        };
        let before = cases.len();
        cases.retain(|case| {
            case.get("context")
                .and_then(|c| c.get("lastActiveManager"))
                .and_then(serde_yaml_ng::Value::as_bool)
                != Some(false)
        });
        removed += before - cases.len();
        let text = serde_yaml_ng::to_string(&suite).expect("a suite as YAML");
        std::fs::write(&path, text).expect("write a suite");
    }
    removed
}

/// The line `keep-last-manager` starts on, as `cedargate` prints it.
fn keep_last_manager(workspace: &Workspace) -> String {
    let line = workspace.line_of(
        "policies/administration.cedar",
        r#"@id("keep-last-manager")"#,
    );
    format!("keep-last-manager (policies/administration.cedar:{line})")
}

#[test]
fn the_shipped_suites_kill_every_mutant_and_cover_every_condition() {
    // Arrange
    let workspace = Workspace::new();

    // Act
    let output = workspace
        .cedargate()
        .args([
            "test",
            "--require-coverage",
            "--require-condition-coverage",
            "100",
            "--require-mutation-score",
            "100",
            "--junit",
            "report.xml",
        ])
        .output()
        .expect("run cedargate");

    // Assert
    let (stdout, stderr) = text_of(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stdout.contains("SURVIVED"), "{stdout}");
    let score = stdout
        .lines()
        .find(|l| l.starts_with("mutation score: "))
        .unwrap_or_else(|| panic!("no mutation score in:\n{stdout}"));
    assert!(score.ends_with("killed (100.0%)"), "{score}");
    assert!(
        stdout.lines().any(|l| l.starts_with("condition coverage: ")
            && l.ends_with("seen both true and false (100.0%)")),
        "{stdout}"
    );
    // The one equivalent mutant is listed with its reason, not counted.
    assert!(
        stdout.contains("equivalent no-self-administration (policies/administration.cedar:"),
        "{stdout}"
    );
    let xml = workspace.read("report.xml");
    assert!(
        xml.contains(r#"<testsuite name="mutation testing""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase name="keep-last-manager drop-conjunct-1.2""#),
        "{xml}"
    );
}

#[test]
fn a_weakened_suite_leaves_a_named_survivor_and_fails_the_required_score() {
    // Arrange
    let workspace = Workspace::new();
    assert!(weaken(&workspace) > 0, "no case to remove: update the test");

    // Act
    let output = workspace
        .cedargate()
        .args([
            "test",
            "--require-mutation-score",
            "100",
            "--junit",
            "report.xml",
        ])
        .output()
        .expect("run cedargate");

    // Assert: every remaining case passes, the mutant survives, by name.
    let (stdout, stderr) = text_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.lines().any(|l| l.ends_with(" passed, 0 failed")),
        "{stdout}"
    );
    let survivor = format!(
        "SURVIVED {} drop-conjunct-1.2\n         drop conjunct 2 of 2 of the `when` clause: `context.lastActiveManager`",
        keep_last_manager(&workspace)
    );
    assert!(stdout.contains(&survivor), "{survivor}\nnot in:\n{stdout}");
    let score = stdout
        .lines()
        .find(|l| l.starts_with("mutation score: "))
        .unwrap_or_else(|| panic!("no mutation score in:\n{stdout}"));
    assert!(!score.ends_with("(100.0%)"), "{score}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: --require-mutation-score 100"))
        .unwrap_or_else(|| panic!("no score error in:\n{stderr}"));
    assert!(
        error.contains("keep-last-manager drop-conjunct-1.2"),
        "{error}"
    );
    // The survivor is a failing test case of the JUnit report.
    let xml = workspace.read("report.xml");
    let start = xml
        .find(r#"<testcase name="keep-last-manager drop-conjunct-1.2""#)
        .unwrap_or_else(|| panic!("no survivor testcase in:\n{xml}"));
    let end = start + xml[start..].find("</testcase>").expect("a closed testcase");
    assert!(xml[start..end].contains("<failure"), "{}", &xml[start..end]);
}

#[test]
fn condition_coverage_names_a_conjunct_a_weakened_suite_never_saw_false() {
    // Arrange
    let workspace = Workspace::new();
    weaken(&workspace);

    // Act
    let output = workspace
        .cedargate()
        .args(["test", "--require-condition-coverage", "100"])
        .output()
        .expect("run cedargate");

    // Assert
    let (stdout, stderr) = text_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let line = stdout
        .lines()
        .position(|l| {
            l.trim_start().starts_with("never false")
                && l.contains(&keep_last_manager(&workspace))
                && l.contains("`when` conjunct 2 of 2")
        })
        .unwrap_or_else(|| panic!("no uncovered keep-last-manager conjunct in:\n{stdout}"));
    assert_eq!(
        stdout.lines().nth(line + 1).map(str::trim),
        Some("context.lastActiveManager"),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: --require-condition-coverage 100:"),
        "{stderr}"
    );
}

#[test]
fn the_equivalent_mutants_list_is_checked_against_the_suites() {
    // Arrange: without the list, the equivalent mutant is a survivor.
    let workspace = Workspace::new();
    std::fs::remove_file(workspace.path("policies/equivalent-mutants.yaml"))
        .expect("the shipped list of equivalent mutants");

    // Act
    let output = workspace
        .cedargate()
        .args(["test", "--mutate"])
        .output()
        .expect("run cedargate");

    // Assert: reported, but without a required score the run passes.
    let (stdout, stderr) = text_of(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("SURVIVED no-self-administration (policies/administration.cedar:"),
        "{stdout}"
    );
    assert!(stdout.contains("widen-resource"), "{stdout}");

    // Arrange: a mutant the suites kill cannot be listed as equivalent.
    workspace.write(
        "wrong.yaml",
        "- policy: keep-last-manager\n  mutation: drop-policy\n  reason: claimed, not true\n",
    );

    // Act
    let output = workspace
        .cedargate()
        .args(["test", "--mutate", "--equivalent-mutants", "wrong.yaml"])
        .output()
        .expect("run cedargate");

    // Assert
    let (stdout, stderr) = text_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(
            "ERROR wrong.yaml: `keep-last-manager` drop-policy is listed as equivalent but `"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("the list of equivalent mutants is wrong"),
        "{stderr}"
    );
}
