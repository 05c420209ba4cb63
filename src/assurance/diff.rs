//! `cedargate diff OLD NEW`: what a policy change would do, proved per
//! request environment. For each (principal type, action, resource type)
//! of the schema, cedar-policy-symcc either proves the two policy sets
//! decide every request and every entity store alike, or finds a request
//! and entities on which they differ; that counterexample is re-decided
//! by both sets with the ordinary authorizer before it is shown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cedar_policy::RequestEnv;
use cedar_policy_symcc::CompiledPolicySet;
use serde::Serialize;

use super::invariants::{request_envs, with_causes};
use super::prove::{case_entities, env_label, new_compiler, recheck, symcc_error};
use super::{Cvc5, INSTALL_HINT, ProveError, SolverError};
use crate::policy::{self, Decision, PolicySnapshot};

/// `cedargate diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The policy directory as it is (`.cedar` files, searched recursively).
    #[arg(value_name = "OLD_POLICY_DIR")]
    pub old: PathBuf,
    /// The policy directory as it would be.
    #[arg(value_name = "NEW_POLICY_DIR")]
    pub new: PathBuf,
    /// The schema both sets are validated against.
    #[arg(long, env = "CEDARGATE_SCHEMA", default_value = "schema")]
    pub schema: PathBuf,
    /// The limit for one solver check, in seconds; a check past it is
    /// reported as not decided.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub time_limit: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One request environment where the sets differ, or could not be compared.
#[derive(Debug, Serialize)]
pub struct Difference {
    /// `User, Action::"billing.read", Organization`.
    pub env: String,
    /// A request and entities on which the sets decide differently (absent
    /// when the environment could not be decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<DifferingRequest>,
    /// Why it is not decided, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided: Option<String>,
}

/// The solver's request, re-decided by both policy sets.
#[derive(Debug, Serialize)]
pub struct DifferingRequest {
    /// The principal.
    pub principal: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The context.
    pub context: serde_json::Value,
    /// The entities (without the schema's action entities).
    pub entities: serde_json::Value,
    /// The old set's decision on it.
    pub old: Decision,
    /// The new set's decision on it.
    pub new: Decision,
}

/// The result of a comparison.
#[derive(Debug, Serialize)]
pub struct DiffReport {
    /// Request environments compared.
    pub environments: usize,
    /// Environments proved equivalent.
    pub equivalent: usize,
    /// Environments that differ or were not decided, in the schema's order.
    pub differences: Vec<Difference>,
    /// Wall time.
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// Compares `old` and `new` (validated against the same schema) in every
/// request environment of the schema.
pub async fn diff(
    old: &PolicySnapshot,
    new: &PolicySnapshot,
    cvc5: &Cvc5,
    time_limit: Duration,
) -> Result<DiffReport, SolverError> {
    let started = Instant::now();
    let envs = request_envs(new.schema());
    let mut compiler = new_compiler(cvc5, time_limit)?;
    let mut differences = Vec::new();
    for env in &envs {
        let compiled = compile(old, env).and_then(|o| Ok((o, compile(new, env)?)));
        let answer = match compiled {
            Ok((o, n)) => compiler
                .check_equivalent_with_counterexample_opt(&o, &n)
                .await
                .map_err(|e| match e {
                    cedar_policy_symcc::err::Error::SolverUnknown => format!(
                        "the solver gave up (time limit {} ms per check)",
                        time_limit.as_millis()
                    ),
                    other => symcc_error(&other),
                }),
            Err(e) => Err(e),
        };
        match answer {
            Ok(None) => {}
            Ok(Some(found)) => differences.push(Difference {
                env: env_label(env),
                request: Some(differing(old, new, &found)),
                undecided: None,
            }),
            Err(why) => {
                // A solver that gave up may be mid-answer: start afresh.
                compiler = new_compiler(cvc5, time_limit)?;
                differences.push(Difference {
                    env: env_label(env),
                    request: None,
                    undecided: Some(why),
                });
            }
        }
    }
    Ok(DiffReport {
        environments: envs.len(),
        equivalent: envs.len() - differences.len(),
        differences,
        elapsed: started.elapsed(),
    })
}

fn compile(snapshot: &PolicySnapshot, env: &RequestEnv) -> Result<CompiledPolicySet, String> {
    CompiledPolicySet::compile(snapshot.policies(), env, snapshot.schema())
        .map_err(|e| format!("the policies do not compile: {}", symcc_error(&e)))
}

fn differing(
    old: &PolicySnapshot,
    new: &PolicySnapshot,
    found: &cedar_policy_symcc::Env,
) -> DifferingRequest {
    let request = &found.request;
    let uid = |u: Option<&cedar_policy::EntityUid>| u.map(ToString::to_string).unwrap_or_default();
    let context = request
        .context()
        .and_then(|c| c.to_json_value().ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let entities = case_entities(found);
    let decide = |snapshot: &PolicySnapshot| {
        recheck(snapshot, request, &context, &entities)
            .unwrap_or_else(|e| Decision::deny_with_error(format!("the case is refused: {e}")))
    };
    DifferingRequest {
        principal: uid(request.principal()),
        action: uid(request.action()),
        resource: uid(request.resource()),
        old: decide(old),
        new: decide(new),
        context,
        entities,
    }
}

/// The report for people.
pub fn text(report: &DiffReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for d in &report.differences {
        match (&d.request, &d.undecided) {
            (Some(r), _) => {
                let _ = writeln!(
                    out,
                    "DIFFERS  {}\n  {} {} {}  context {}\n  old: {} {:?}  new: {} {:?}\n  entities: {}",
                    d.env,
                    r.principal,
                    r.action,
                    r.resource,
                    r.context,
                    r.old.as_str(),
                    r.old.reasons,
                    r.new.as_str(),
                    r.new.reasons,
                    r.entities,
                );
            }
            (None, why) => {
                let _ = writeln!(
                    out,
                    "UNDECIDED  {}: {}",
                    d.env,
                    why.as_deref().unwrap_or("")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "{} of {} request environments equivalent, {} differ or undecided ({} ms)",
        report.equivalent,
        report.environments,
        report.differences.len(),
        report.elapsed.as_millis()
    );
    out
}

/// Runs `cedargate diff`: success when the sets are equivalent in every
/// environment, failure when they differ, cannot be loaded or compared.
pub fn run(args: &DiffArgs) -> ExitCode {
    let Some(limit) = Duration::try_from_secs_f64(args.time_limit)
        .ok()
        .filter(|l| !l.is_zero())
    else {
        eprintln!("error: --time-limit must be a positive number of seconds");
        return ExitCode::FAILURE;
    };
    let load = |dir: &PathBuf| {
        policy::load(dir, &args.schema).map_err(|e| format!("{}: {}", dir.display(), e.render()))
    };
    let (old, new) = match (load(&args.old), load(&args.new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cvc5 = match Cvc5::find() {
        Ok(cvc5) => cvc5,
        Err(e) => {
            eprintln!("error: {}\n{INSTALL_HINT}", with_causes(&e));
            return ExitCode::FAILURE;
        }
    };
    let report = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ProveError::Runtime)?;
                Ok::<_, ProveError>(runtime.block_on(diff(&old, &new, &cvc5, limit))?)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(ProveError::Runtime(std::io::Error::other(
                    "the comparing thread panicked",
                )))
            })
    });
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {}", with_causes(&e));
            return ExitCode::FAILURE;
        }
    };
    let printed = if args.json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        text(&report)
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), printed.as_bytes());
    if report.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
