//! `cedargate fmt`: the Cedar formatter over a policy directory.

use std::path::{Path, PathBuf};

use cedar_policy_formatter::{Config, policies_str_to_pretty};

use super::error::LoadError;

/// Line width of formatted policies: wide enough that a membership lookup
/// (`principal.getTag(resource.tenant).perms.x`) stays on one line.
const LINE_WIDTH: usize = 120;
/// Indentation of formatted policies, in spaces.
const INDENT_WIDTH: isize = 2;

/// One file the formatter would change, or could not format.
#[derive(Debug)]
pub enum FmtOutcome {
    /// The file is already formatted.
    Unchanged(PathBuf),
    /// The file was (or, with `check`, would be) rewritten.
    Changed(PathBuf),
    /// The file does not parse; nothing was written.
    Failed(PathBuf, miette::Report),
}

/// Formats every `.cedar` file under `dir`. With `check`, nothing is written.
pub fn format_dir(dir: &Path, check: bool) -> Result<Vec<FmtOutcome>, LoadError> {
    let files = super::list_files(dir, |p| p.extension().is_some_and(|e| e == "cedar"))?;
    if files.is_empty() {
        return Err(LoadError::NoPolicies(dir.to_owned()));
    }
    let mut outcomes = Vec::with_capacity(files.len());
    for path in files {
        let io = |source| LoadError::Io {
            path: path.clone(),
            source,
        };
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let config = Config {
            line_width: LINE_WIDTH,
            indent_width: INDENT_WIDTH,
        };
        match policies_str_to_pretty(&text, &config) {
            Ok(pretty) if pretty == text => outcomes.push(FmtOutcome::Unchanged(path)),
            Ok(pretty) => {
                if !check {
                    std::fs::write(&path, pretty).map_err(io)?;
                }
                outcomes.push(FmtOutcome::Changed(path));
            }
            Err(e) => {
                let source = miette::NamedSource::new(path.display().to_string(), text);
                outcomes.push(FmtOutcome::Failed(path, e.with_source_code(source)));
            }
        }
    }
    Ok(outcomes)
}
