//! Errors of loading a policy set and of deciding a request.

use std::path::PathBuf;

/// Why a policy set (policies + schema) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The policy directory holds no `.cedar` file.
    #[error("no `.cedar` file under `{}`", .0.display())]
    NoPolicies(PathBuf),
    /// The schema path holds no schema file.
    #[error("no schema file (`*.cedarschema` or `*.cedarschema.json`) at `{}`", .0.display())]
    NoSchema(PathBuf),
    /// Parsing or validation found problems; each carries its file and span.
    #[error("{} problem(s) in the policies or the schema", .0.len())]
    Invalid(Vec<miette::Report>),
    /// A candidate policy set fails the policy test suites beside it.
    #[error("the policies fail {failed} case(s) of their test suites:\n{report}")]
    TestsFailed {
        /// Failing cases and suites that could not be loaded.
        failed: usize,
        /// Each failure with expected and actual decision.
        report: String,
    },
}

impl LoadError {
    /// Every problem rendered as text with file, line and a caret under the
    /// span (no colours), for logs and the `/v1/policies` status.
    pub fn render(&self) -> String {
        match self {
            LoadError::Invalid(problems) => problems
                .iter()
                .map(render_report)
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        }
    }

    /// The individual problems (one per diagnostic), for the CLI to print.
    pub fn problems(&self) -> &[miette::Report] {
        match self {
            LoadError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

/// Renders one diagnostic without colours.
pub fn render_report(report: &miette::Report) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100);
    let mut out = String::new();
    if handler.render_report(&mut out, report.as_ref()).is_err() {
        out = format!("{report}");
    }
    out
}

/// Why a request could not be turned into a Cedar request. On the decision
/// path every one of these becomes a Deny that carries the message.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// An entity reference is neither `Type::"id"` nor `{"type","id"}`.
    #[error("invalid {field} `{value}`: {reason}")]
    Uid {
        /// Which part of the request (principal, action, resource).
        field: &'static str,
        /// What was given.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The context does not match the schema for this action.
    #[error("invalid context: {0}")]
    Context(String),
    /// The request does not match the schema (unknown action, wrong types).
    #[error("request does not match the schema: {0}")]
    Schema(String),
    /// Entities failed to parse or to match the schema.
    #[error("invalid entities: {0}")]
    Entities(String),
    /// Partial evaluation refused the query.
    #[error("cannot evaluate partially: {0}")]
    Partial(String),
}

/// A diagnostic shown against a named file. Cedar's errors carry their own
/// unnamed copy of the source, which miette would prefer over one attached
/// with `with_source_code`; this wrapper puts the file name first.
#[derive(Debug, thiserror::Error)]
#[error("{inner}")]
pub(crate) struct InFile<E> {
    inner: E,
    file: miette::NamedSource<String>,
}

impl<E: miette::Diagnostic + Send + Sync + 'static> InFile<E> {
    /// `inner`, shown against `file`.
    pub(crate) fn report(inner: E, file: miette::NamedSource<String>) -> miette::Report {
        miette::Report::new(Self { inner, file })
    }
}

impl<E: miette::Diagnostic> miette::Diagnostic for InFile<E> {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.inner.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.inner.severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.inner.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.inner.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.file)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.inner.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        self.inner.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn miette::Diagnostic> {
        self.inner.diagnostic_source()
    }
}
