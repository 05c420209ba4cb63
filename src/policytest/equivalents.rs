//! The list of equivalent mutants: mutants that decide every request the
//! schema allows exactly as the policy does, so that no case can kill
//! them. Each entry names the policy and the mutation and says why; the
//! list is checked against every run, so that it cannot hide a mutant a
//! case kills, the schema rejects, or that no longer exists.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::mutate::{Fate, Mutant, MutateError};

/// The default name of the list of equivalent mutants, in the policy
/// directory.
pub const EQUIVALENTS_FILE: &str = "equivalent-mutants.yaml";

/// (policy id, mutation) → the reason it is equivalent.
pub(crate) type Equivalents = BTreeMap<(String, String), String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    policy: String,
    mutation: String,
    reason: String,
}

/// Reads the list (a YAML sequence of `policy`, `mutation`, `reason`) at
/// `path`; a missing file is no list unless `required`.
pub(crate) fn read(path: &Path, required: bool) -> Result<Option<Equivalents>, MutateError> {
    let error = |message: String| MutateError::Equivalents {
        path: path.to_owned(),
        message,
    };
    if !required && !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let entries: Vec<Entry> = serde_yaml_ng::from_str::<Option<Vec<Entry>>>(&text)
        .map_err(|e| error(e.to_string()))?
        .unwrap_or_default();
    let mut list = Equivalents::new();
    for entry in entries {
        if entry.reason.trim().is_empty() {
            return Err(error(format!(
                "`{}` {}: the reason is empty; say why no request tells the mutant apart",
                entry.policy, entry.mutation
            )));
        }
        let key = (entry.policy, entry.mutation);
        if list.contains_key(&key) {
            return Err(error(format!("`{}` {} is listed twice", key.0, key.1)));
        }
        list.insert(key, entry.reason);
    }
    Ok(Some(list))
}

/// Marks the listed survivors equivalent; returns what is wrong with the
/// list: entries naming no mutant, a mutant a case kills, or one the schema
/// rejects.
pub(crate) fn apply(list: &Equivalents, mutants: &mut [Mutant], path: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for ((policy, mutation), reason) in list {
        let listed = format!(
            "{}: `{policy}` {mutation} is listed as equivalent",
            path.display()
        );
        match mutants
            .iter_mut()
            .find(|m| &m.policy == policy && &m.mutation == mutation)
        {
            None => problems.push(format!("{listed} but there is no such mutant")),
            Some(m) => match &m.fate {
                Fate::Survived | Fate::Equivalent(_) => m.fate = Fate::Equivalent(reason.clone()),
                Fate::Killed { suite, case } => {
                    problems.push(format!("{listed} but `{case}` ({suite}) kills it"));
                }
                Fate::Rejected(_) => {
                    problems.push(format!("{listed} but the schema rejects it"));
                }
            },
        }
    }
    problems
}
