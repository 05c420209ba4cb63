//! `cedargate replay`: what a candidate policy set would change for the
//! requests a sidecar actually received. The decision log (written with
//! `--decision-log-requests`) holds each request with its context; replay
//! decides every logged request twice on the current entities of the
//! store, with the policies in force and with the candidate, and groups
//! the requests whose decision changes by (action, old → new, policies).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::DatabaseUrl;
use crate::decisionlog::DecisionLog;
use crate::engine::{AuthzRequest, Decided, Describer, Engine, Shape};
use crate::metrics::Metrics;
use crate::policy::{self, PolicyArgs};

/// `cedargate replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A decision log written with `--decision-log-requests` (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
    /// The candidate policy directory.
    #[arg(long = "policies", value_name = "CANDIDATE_DIR")]
    pub candidate: PathBuf,
    /// The policy directory in force, the baseline.
    #[arg(long, value_name = "DIR", default_value = "policies")]
    pub current_policies: PathBuf,
    /// The schema both are validated against.
    #[arg(long, env = "CEDARGATE_SCHEMA", default_value = "schema")]
    pub schema: PathBuf,
    /// The store whose current entities decide (the sidecar's database).
    #[arg(
        long,
        env = "CEDARGATE_DATABASE_URL",
        default_value = "sqlite://cedargate.db"
    )]
    pub database_url: DatabaseUrl,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when any decision changes (for CI).
    #[arg(long)]
    pub fail_on_change: bool,
}

/// One line of the decision log, as replay reads it.
#[derive(Debug, Deserialize)]
struct Logged {
    principal: String,
    action: String,
    resource: String,
    #[serde(default)]
    context: Option<serde_json::Value>,
    #[serde(default)]
    entities: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    redacted: Vec<String>,
}

/// Requests whose decision changes the same way.
#[derive(Debug, Serialize)]
pub struct ChangeGroup {
    /// The action.
    pub action: String,
    /// `allow → deny` or `deny → allow`.
    pub change: String,
    /// The determining policies before and after (`-` for a default deny).
    pub policies: String,
    /// How many requests.
    pub count: usize,
    /// Up to five of them, `principal on resource`.
    pub examples: Vec<String>,
}

/// What replay found.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Log lines read.
    pub lines: usize,
    /// Requests decided again.
    pub replayed: usize,
    /// Lines without the request's context (logged without
    /// `--decision-log-requests`) or unreadable: not replayed.
    pub skipped: usize,
    /// Replayed requests whose context had redacted keys (their replay
    /// may differ for that reason alone).
    pub redacted: usize,
    /// Replayed requests whose decision changes.
    pub changed: usize,
    /// The changes, most frequent first.
    pub groups: Vec<ChangeGroup>,
}

/// Replays `log` against `current` and `candidate` engines sharing one store.
pub async fn replay(
    log: impl BufRead,
    current: &Engine,
    candidate: &Engine,
) -> anyhow::Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let mut groups: BTreeMap<(String, String, String), ChangeGroup> = BTreeMap::new();
    for line in log.lines() {
        let line = line.context("cannot read the decision log")?;
        if line.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let Some((logged, context)) = serde_json::from_str::<Logged>(&line)
            .ok()
            .and_then(|l| l.context.clone().map(|c| (l, c)))
        else {
            report.skipped += 1;
            continue;
        };
        report.replayed += 1;
        report.redacted += usize::from(!logged.redacted.is_empty());
        let request = AuthzRequest {
            principal: serde_json::Value::String(logged.principal.clone()).into(),
            action: serde_json::Value::String(logged.action.clone()).into(),
            resource: serde_json::Value::String(logged.resource.clone()).into(),
            context,
            entities: logged.entities.clone().unwrap_or_default(),
            described_by: Describer::Caller,
            shape: Shape::Cedar,
        };
        let old = current.decide(&request, "replay").await;
        let new = candidate.decide(&request, "replay").await;
        if old.decision.allow == new.decision.allow {
            continue;
        }
        report.changed += 1;
        let key = (
            logged.action.clone(),
            format!("{} → {}", old.decision.as_str(), new.decision.as_str()),
            format!("{} → {}", responsible(&old), responsible(&new)),
        );
        let group = groups.entry(key.clone()).or_insert_with(|| ChangeGroup {
            action: key.0,
            change: key.1,
            policies: key.2,
            count: 0,
            examples: Vec::new(),
        });
        group.count += 1;
        if group.examples.len() < 5 {
            group
                .examples
                .push(format!("{} on {}", logged.principal, logged.resource));
        }
    }
    report.groups = groups.into_values().collect();
    report.groups.sort_by_key(|g| std::cmp::Reverse(g.count));
    Ok(report)
}

fn responsible(decided: &Decided) -> String {
    let d = &decided.decision;
    if !d.errors.is_empty() {
        "error".to_owned()
    } else if d.reasons.is_empty() {
        "-".to_owned()
    } else {
        d.reasons.join(",")
    }
}

/// The report for people.
pub fn text(report: &ReplayReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replayed {} of {} logged requests ({} without their context, not replayed; {} with redacted context keys)",
        report.replayed, report.lines, report.skipped, report.redacted
    );
    let _ = writeln!(
        out,
        "{} change under the candidate policies",
        report.changed
    );
    for g in &report.groups {
        let _ = writeln!(
            out,
            "  {:>6}  {}  {}  (policies {})",
            g.count, g.action, g.change, g.policies
        );
        for example in &g.examples {
            let _ = writeln!(out, "          {example}");
        }
    }
    out
}

/// Runs `cedargate replay`.
pub async fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let load = |dir: &PathBuf| {
        policy::load(dir, &args.schema)
            .map_err(|e| anyhow::anyhow!("{}:\n{}", dir.display(), e.render()))
    };
    let (current, candidate) = (load(&args.current_policies)?, load(&args.candidate)?);
    let file = std::fs::File::open(&args.log)
        .with_context(|| format!("cannot open `{}`", args.log.display()))?;
    let store = crate::startup::open_store(&args.database_url).await?;
    let engine = |dir: &PathBuf, snapshot| {
        let args = PolicyArgs {
            policies: dir.clone(),
            schema: args.schema.clone(),
        };
        // No decision cache: each request is decided once per engine.
        Engine::new(
            args,
            snapshot,
            Arc::clone(&store),
            0,
            Duration::from_secs(1),
            Arc::new(Metrics::default()),
            DecisionLog::off(),
        )
    };
    let current = engine(&args.current_policies, current)?;
    let candidate = engine(&args.candidate, candidate)?;
    let report = replay(std::io::BufReader::new(file), &current, &candidate).await?;
    let printed = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        text(&report)
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), printed.as_bytes())?;
    Ok(if args.fail_on_change && report.changed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
