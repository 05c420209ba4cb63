//! Reading, parsing and validating a policy directory and a schema.
//!
//! Every problem is collected (not just the first) and carries its file and
//! span, so `cedargate validate` shows a caret under each mistake.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cedar_policy::{PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode, Validator};
use miette::{NamedSource, Report};
use sha2::{Digest, Sha256};

use super::error::{InFile, LoadError};
use super::{PolicyOrigin, PolicySnapshot};

/// A source file read into memory, kept for diagnostics.
struct SourceFile {
    display: String,
    text: Arc<str>,
}

impl SourceFile {
    fn read(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            display: path.display().to_string(),
            text: text.into(),
        })
    }

    /// Whether `diagnostic`'s source code is exactly this file's text.
    fn is_source_of(&self, diagnostic: &dyn miette::Diagnostic) -> bool {
        // From the first line, with every line after it: the whole source.
        diagnostic
            .source_code()
            .and_then(|source| source.read_span(&(0, 0).into(), 0, usize::MAX).ok())
            .is_some_and(|whole| whole.data() == self.text.as_bytes())
    }

    fn named(&self) -> NamedSource<String> {
        NamedSource::new(&self.display, self.text.to_string()).with_language("cedar")
    }
}

/// Loads every `.cedar` file under `policies` (recursively) and the schema at
/// `schema` (a file, or a directory of `*.cedarschema` / `*.cedarschema.json`),
/// then validates the policies strictly against the schema.
pub fn load(policies: &Path, schema: &Path) -> Result<PolicySnapshot, LoadError> {
    let mut problems = Vec::new();
    let (schema, schema_digest, fragment_json) = load_schema(schema, &mut problems)?;
    let policy_files = list_files(policies, |p| has_suffix(p, ".cedar"))?;
    if policy_files.is_empty() {
        return Err(LoadError::NoPolicies(policies.to_owned()));
    }

    let mut set = PolicySet::new();
    let mut origins: HashMap<PolicyId, PolicyOrigin> = HashMap::new();
    let mut sources: HashMap<String, NamedSource<String>> = HashMap::new();
    for path in &policy_files {
        let file = SourceFile::read(path)?;
        add_file(&file, &mut set, &mut origins, &mut problems);
        sources.insert(file.display.clone(), file.named());
    }

    if let Some(schema) = &schema {
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for error in result.validation_errors() {
            let source = origins
                .get(error.policy_id())
                .and_then(|origin| sources.get(&origin.file));
            problems.push(match source {
                Some(source) => InFile::report(error.clone(), source.clone()),
                None => Report::new(error.clone()),
            });
        }
    }

    match schema {
        Some(schema) if problems.is_empty() => Ok(PolicySnapshot::new(
            super::deref::dereferenced_types(&fragment_json, &set),
            super::Supplied::from_fragments(&fragment_json),
            set,
            schema,
            schema_digest,
            origins,
            policy_files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
        )),
        _ => Err(LoadError::Invalid(problems)),
    }
}

/// Parses one policy file, renames each policy to its `@id` annotation (or
/// `file#N` without one), and records where each policy starts.
fn add_file(
    file: &SourceFile,
    set: &mut PolicySet,
    origins: &mut HashMap<PolicyId, PolicyOrigin>,
    problems: &mut Vec<Report>,
) {
    let parsed: PolicySet = match file.text.parse() {
        Ok(parsed) => parsed,
        Err(errors) => {
            let errors: cedar_policy::ParseErrors = errors;
            problems.push(InFile::report(errors, file.named()));
            return;
        }
    };
    // cedar-policy keeps source spans private; the core AST exposes them, and
    // both parsers number policies `policy0..` in file order.
    let lines = policy_lines(&file.text);

    for policy in parsed.policies() {
        let line = lines
            .get(AsRef::<str>::as_ref(policy.id()))
            .copied()
            .unwrap_or(1);
        let id = policy_id(policy.annotation("id"), &file.display, line);
        if let Some(previous) = origins.get(&id) {
            problems.push(miette::miette!(
                "duplicate policy id `{id}` at {}:{line}; first defined at {}:{}",
                file.display,
                previous.file,
                previous.line
            ));
            continue;
        }
        let origin = PolicyOrigin {
            file: file.display.clone(),
            line,
            effect: policy.effect(),
        };
        if let Err(e) = set.add(policy.new_id(id.clone())) {
            problems.push(Report::new(e));
            continue;
        }
        origins.insert(id, origin);
    }
    for template in parsed.templates() {
        let line = lines
            .get(AsRef::<str>::as_ref(template.id()))
            .copied()
            .unwrap_or(1);
        let id = policy_id(template.annotation("id"), &file.display, line);
        let origin = PolicyOrigin {
            file: file.display.clone(),
            line,
            effect: template.effect(),
        };
        if let Err(e) = set.add_template(template.new_id(id.clone())) {
            problems.push(Report::new(e));
            continue;
        }
        origins.insert(id, origin);
    }
}

fn policy_id(annotation: Option<&str>, file: &str, line: usize) -> PolicyId {
    match annotation {
        Some(id) => PolicyId::new(id),
        None => PolicyId::new(format!("{file}:{line}")),
    }
}

/// The 1-based line where each policy (by its parser-assigned id) starts.
fn policy_lines(text: &str) -> HashMap<String, usize> {
    let Ok(ast) = cedar_policy_core::parser::parse_policyset(text) else {
        return HashMap::new();
    };
    ast.all_templates()
        .filter_map(|t| {
            let offset = t.loc()?.span.offset();
            let line = text[..offset.min(text.len())].matches('\n').count() + 1;
            Some((t.id().to_string(), line))
        })
        .collect()
}

/// A loaded schema: the schema if valid, a digest of its source files, and
/// its fragments as JSON (for the dereference analysis).
type LoadedSchema = (Option<Schema>, [u8; 32], Vec<serde_json::Value>);

fn load_schema(path: &Path, problems: &mut Vec<Report>) -> Result<LoadedSchema, LoadError> {
    let files = if path.is_dir() {
        list_files_shallow(path, is_schema_file)?
    } else {
        vec![path.to_owned()]
    };
    if files.is_empty() {
        return Err(LoadError::NoSchema(path.to_owned()));
    }
    let mut fragments = Vec::new();
    let mut fragment_json = Vec::new();
    let mut digest = Sha256::new();
    let mut sources = Vec::with_capacity(files.len());
    for path in &files {
        let file = SourceFile::read(path)?;
        digest.update(file.text.as_bytes());
        let parsed = if file.display.ends_with(".json") {
            SchemaFragment::from_json_str(&file.text).map_err(|e| InFile::report(e, file.named()))
        } else {
            SchemaFragment::from_cedarschema_str(&file.text)
                .map(|(fragment, _warnings)| fragment)
                .map_err(|e| InFile::report(e, file.named()))
        };
        match parsed {
            Ok(fragment) => {
                fragment_json.push(
                    fragment
                        .clone()
                        .to_json_value()
                        .unwrap_or(serde_json::Value::Null),
                );
                fragments.push(fragment);
            }
            Err(report) => problems.push(report),
        }
        sources.push(file);
    }
    let digest = digest.finalize().into();
    if !problems.is_empty() {
        return Ok((None, digest, fragment_json));
    }
    match Schema::from_schema_fragments(fragments) {
        Ok(schema) => Ok((Some(schema), digest, fragment_json)),
        Err(e) => {
            // Errors found when combining the fragments (an undeclared type)
            // carry the text of their fragment but not its file name.
            let report = match sources.iter().find(|file| file.is_source_of(&e)) {
                Some(file) => InFile::report(e, file.named()),
                None => match sources.as_slice() {
                    [only] => Report::new(e).wrap_err(format!("in the schema `{}`", only.display)),
                    _ => Report::new(e),
                },
            };
            problems.push(report);
            Ok((None, digest, fragment_json))
        }
    }
}

fn is_schema_file(path: &Path) -> bool {
    has_suffix(path, ".cedarschema") || has_suffix(path, ".cedarschema.json")
}

fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(suffix))
}

/// Files under `dir` (recursively) that match, sorted for a stable order.
pub(crate) fn list_files(
    dir: &Path,
    matches: impl Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>, LoadError> {
    if dir.is_file() {
        return Ok(vec![dir.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| LoadError::Io {
            path: e.path().unwrap_or(dir).to_owned(),
            source: e.into(),
        })?;
        if entry.file_type().is_file() && matches(entry.path()) {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

fn list_files_shallow(
    dir: &Path,
    matches: impl Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && matches(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
