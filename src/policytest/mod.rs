//! `cedargate test`: YAML policy test suites, run against a policy snapshot.
//!
//! A suite names its entities (inline Cedar entity JSON, or paths of JSON
//! files relative to the suite) and cases of principal, action, resource,
//! context and the expected decision, optionally with the expected
//! determining policy ids. The format is documented in the README.

mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cedar_policy::Entities;
use miette::{LabeledSpan, NamedSource, Report};
use serde::Deserialize;

use crate::policy::{Decision, PolicySnapshot, parse_uid};

pub use report::{junit_xml, print_failures, print_report};

/// One suite file as written. Top-level keys starting with `x-` are free
/// for the author (YAML anchors for shared contexts); any other unknown key
/// is an error, so a typo never silently drops part of a suite.
#[derive(Debug, Deserialize)]
struct SuiteFile {
    #[serde(default)]
    entities: EntitiesSpec,
    /// Optional here so that a misspelt `cases` key is reported as the
    /// unknown key it is, not as a missing `cases`.
    #[serde(default)]
    cases: Option<Vec<CaseSpec>>,
    #[serde(flatten)]
    extensions: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EntitiesSpec {
    File(String),
    List(Vec<EntityItem>),
}

impl Default for EntitiesSpec {
    fn default() -> Self {
        EntitiesSpec::List(Vec::new())
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EntityItem {
    File(String),
    Inline(serde_json::Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    principal: serde_json::Value,
    action: serde_json::Value,
    resource: serde_json::Value,
    #[serde(default = "empty_object")]
    context: serde_json::Value,
    expect: Expect,
    #[serde(default)]
    reasons: Option<Vec<String>>,
    /// Request-scoped entities added to the suite's for this case only.
    #[serde(default)]
    entities: Vec<serde_json::Value>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

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
    let mut coverage: BTreeMap<String, usize> = snapshot
        .policy_ids()
        .into_iter()
        .map(|(id, _)| (id, 0))
        .collect();
    let mut results = Vec::with_capacity(suites.len());
    for path in suites {
        let result = run_suite(snapshot, path);
        for decision in result.cases.iter().filter_map(|c| c.decision.as_ref()) {
            for id in &decision.reasons {
                *coverage.entry(id.clone()).or_default() += 1;
            }
        }
        results.push(result);
    }
    RunResult {
        suites: results,
        coverage,
    }
}

fn run_suite(snapshot: &PolicySnapshot, path: &Path) -> SuiteResult {
    let display = path.display().to_string();
    let loaded = load_suite(path).and_then(|suite| {
        let entities = load_entities(snapshot, path, &suite.entities)?;
        Ok((suite, entities))
    });
    let (suite, entities) = match loaded {
        Ok(loaded) => loaded,
        Err(report) => {
            return SuiteResult {
                path: display,
                error: Some(crate::policy::render_report(&report)),
                cases: Vec::new(),
            };
        }
    };
    let cases = suite
        .cases
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, case)| run_case(snapshot, &entities, i + 1, case))
        .collect();
    SuiteResult {
        path: display,
        error: None,
        cases,
    }
}

fn run_case(
    snapshot: &PolicySnapshot,
    entities: &Entities,
    index: usize,
    case: CaseSpec,
) -> CaseResult {
    let prepared = build_request(snapshot, &case).and_then(|request| {
        if case.entities.is_empty() {
            return Ok((request, None));
        }
        let extra = snapshot
            .entities(serde_json::Value::Array(case.entities.clone()))
            .map_err(|e| e.to_string())?;
        let merged = entities
            .clone()
            .add_entities(extra, Some(snapshot.schema()))
            .map_err(|e| format!("invalid case entities: {e}"))?;
        Ok((request, Some(merged)))
    });
    let (outcome, decision) = match prepared {
        Err(message) => (Outcome::Invalid(message), None),
        Ok((request, merged)) => {
            let decision = snapshot.decide(&request, merged.as_ref().unwrap_or(entities));
            (judge(&case, &decision), Some(decision))
        }
    };
    CaseResult {
        index,
        name: case.name,
        outcome,
        decision,
    }
}

fn build_request(
    snapshot: &PolicySnapshot,
    case: &CaseSpec,
) -> Result<cedar_policy::Request, String> {
    let principal = parse_uid("principal", &case.principal).map_err(|e| e.to_string())?;
    let action = crate::policy::parse_action(&case.action).map_err(|e| e.to_string())?;
    let resource = parse_uid("resource", &case.resource).map_err(|e| e.to_string())?;
    snapshot
        .request(principal, action, resource, &case.context)
        .map_err(|e| e.to_string())
}

fn judge(case: &CaseSpec, decision: &Decision) -> Outcome {
    let actual_decision = if decision.allow {
        Expect::Allow
    } else {
        Expect::Deny
    };
    let decision_ok = actual_decision == case.expect;
    let reasons_ok = case.reasons.as_ref().is_none_or(|expected| {
        let mut expected = expected.clone();
        expected.sort();
        expected == decision.reasons
    });
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

fn load_suite(path: &Path) -> Result<SuiteFile, Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| miette::miette!("cannot read `{}`: {e}", path.display()))?;
    let named = || NamedSource::new(path.display().to_string(), text.clone()).with_language("yaml");
    let suite: SuiteFile = serde_yaml_ng::from_str(&text).map_err(|e| {
        let labels = e
            .location()
            .map(|loc| vec![LabeledSpan::at_offset(loc.index(), "here")])
            .unwrap_or_default();
        miette::miette!(labels = labels, "invalid test suite: {e}").with_source_code(named())
    })?;
    if let Some(key) = suite.extensions.keys().find(|k| !k.starts_with("x-")) {
        let offset = text.find(&format!("{key}:")).unwrap_or(0);
        return Err(miette::miette!(
            labels = vec![LabeledSpan::at_offset(offset, "here")],
            help = "the keys are `entities` and `cases`; keys starting with `x-` are free",
            "invalid test suite: unknown key `{key}`"
        )
        .with_source_code(named()));
    }
    if suite.cases.is_none() {
        return Err(miette::miette!(
            labels = vec![LabeledSpan::at_offset(0, "here")],
            help = "the keys are `entities` and `cases`; keys starting with `x-` are free",
            "invalid test suite: missing key `cases`"
        )
        .with_source_code(named()));
    }
    Ok(suite)
}

fn load_entities(
    snapshot: &PolicySnapshot,
    suite: &Path,
    spec: &EntitiesSpec,
) -> Result<Entities, Report> {
    let base = suite.parent().unwrap_or(Path::new("."));
    let items: Vec<&EntityItem> = match spec {
        EntitiesSpec::List(items) => items.iter().collect(),
        EntitiesSpec::File(_) => Vec::new(),
    };
    let mut files: Vec<&str> = Vec::new();
    let mut inline: Vec<serde_json::Value> = Vec::new();
    if let EntitiesSpec::File(file) = spec {
        files.push(file);
    }
    for item in items {
        match item {
            EntityItem::File(file) => files.push(file),
            EntityItem::Inline(value) => inline.push(value.clone()),
        }
    }
    let mut all = inline;
    for file in files {
        let path = base.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            miette::miette!(
                "{}: cannot read entity file `{}`: {e}",
                suite.display(),
                path.display()
            )
        })?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(entities)) => all.extend(entities),
            Ok(_) => {
                return Err(miette::miette!(
                    "{}: entity file `{}` must hold a JSON array of entities",
                    suite.display(),
                    path.display()
                ));
            }
            Err(e) => {
                let offset = line_col_offset(&text, e.line(), e.column());
                return Err(miette::miette!(
                    labels = vec![LabeledSpan::at_offset(offset, "here")],
                    "invalid JSON in entity file: {e}"
                )
                .with_source_code(NamedSource::new(path.display().to_string(), text)));
            }
        }
    }
    snapshot
        .entities(serde_json::Value::Array(all))
        .map_err(|e| miette::miette!("{}: {e}", suite.display()))
}

fn line_col_offset(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (start + column.saturating_sub(1)).min(text.len())
}
