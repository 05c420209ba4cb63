//! Reading suite files: the YAML format, the entities, and each case turned
//! once into a Cedar request, so that a run, the condition coverage and
//! every mutant evaluate the same parsed cases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cedar_policy::{Entities, Request};
use miette::{LabeledSpan, NamedSource, Report};
use serde::Deserialize;

use super::Expect;
use crate::policy::{PolicySnapshot, parse_uid};

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

/// Suite files read and parsed against a snapshot's schema: requests and
/// entities built once, evaluated by any number of policy sets.
#[derive(Debug)]
pub struct Loaded {
    pub(crate) suites: Vec<LoadedSuite>,
}

#[derive(Debug)]
pub(crate) struct LoadedSuite {
    pub(crate) path: String,
    /// The suite could not be loaded at all (rendered diagnostic).
    pub(crate) error: Option<String>,
    pub(crate) entities: Entities,
    pub(crate) cases: Vec<LoadedCase>,
}

#[derive(Debug)]
pub(crate) struct LoadedCase {
    /// 1-based position in its suite.
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) expect: Expect,
    /// The expected determining policies, sorted.
    pub(crate) reasons: Option<Vec<String>>,
    /// The request and the case's own entities merged with the suite's,
    /// or why the case cannot be evaluated.
    pub(crate) prepared: Result<(Request, Option<Entities>), String>,
}

impl Loaded {
    /// Every case that can be evaluated, with its suite, request and
    /// entities, in suite and case order.
    pub(crate) fn requests(
        &self,
    ) -> impl Iterator<Item = (&LoadedSuite, &LoadedCase, &Request, &Entities)> {
        self.suites.iter().flat_map(|suite| {
            suite
                .cases
                .iter()
                .filter_map(move |case| match &case.prepared {
                    Ok((request, merged)) => Some((
                        suite,
                        case,
                        request,
                        merged.as_ref().unwrap_or(&suite.entities),
                    )),
                    Err(_) => None,
                })
        })
    }
}

/// Reads and parses every suite against `snapshot`'s schema. A suite or a
/// case that cannot be read is kept with its error, to be reported.
pub fn load(snapshot: &PolicySnapshot, suites: &[PathBuf]) -> Loaded {
    Loaded {
        suites: suites.iter().map(|p| load_one(snapshot, p)).collect(),
    }
}

fn load_one(snapshot: &PolicySnapshot, path: &Path) -> LoadedSuite {
    let display = path.display().to_string();
    let loaded = load_suite(path).and_then(|suite| {
        let entities = load_entities(snapshot, path, &suite.entities)?;
        Ok((suite, entities))
    });
    let (suite, entities) = match loaded {
        Ok(loaded) => loaded,
        Err(report) => {
            return LoadedSuite {
                path: display,
                error: Some(crate::policy::render_report(&report)),
                entities: Entities::empty(),
                cases: Vec::new(),
            };
        }
    };
    let cases = suite
        .cases
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, case)| prepare_case(snapshot, &entities, i + 1, case))
        .collect();
    LoadedSuite {
        path: display,
        error: None,
        entities,
        cases,
    }
}

fn prepare_case(
    snapshot: &PolicySnapshot,
    entities: &Entities,
    index: usize,
    case: CaseSpec,
) -> LoadedCase {
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
    LoadedCase {
        index,
        name: case.name,
        expect: case.expect,
        reasons: case.reasons.map(|mut reasons| {
            reasons.sort();
            reasons
        }),
        prepared,
    }
}

fn build_request(snapshot: &PolicySnapshot, case: &CaseSpec) -> Result<Request, String> {
    let principal = parse_uid("principal", &case.principal).map_err(|e| e.to_string())?;
    let action = crate::policy::parse_action(&case.action).map_err(|e| e.to_string())?;
    let resource = parse_uid("resource", &case.resource).map_err(|e| e.to_string())?;
    snapshot
        .request(principal, action, resource, &case.context)
        .map_err(|e| e.to_string())
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
