//! The proofs: each invariant in each request environment of its scope, and
//! every policy never erroring in every environment, each one solver check
//! through cedar-policy-symcc.
//!
//! SymCC decides as Cedar does: an erroring policy is skipped. cedargate
//! fails closed (any error denies), so what Cedar denies cedargate denies
//! too, and a `never` proof holds for cedargate a fortiori; an `always`
//! proof holds for cedargate where no policy errors, which the never-errors
//! checks establish.

use std::time::{Duration, Instant};

use cedar_policy::{EntityUid, RequestEnv};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicy, CompiledPolicySet, Env};

use super::invariants::{Claim, Invariant, request_envs, with_causes};
use super::solver::{Cvc5, SolverError};
use crate::policy::{Decision, PolicySnapshot};

/// A whole run's results.
#[derive(Debug)]
pub struct ProveReport {
    /// The solver's version.
    pub solver: String,
    /// The per-check time limit.
    pub time_limit: Duration,
    /// Every request environment of the schema.
    pub environments: usize,
    /// Checks made (a check the compiler decides alone, without the
    /// solver, counts too).
    pub checks: usize,
    /// Per invariant, in file order.
    pub invariants: Vec<ItemResult>,
    /// Per policy, in file and line order: it never errors.
    pub policies: Vec<ItemResult>,
    /// The whole run.
    pub elapsed: Duration,
}

impl ProveReport {
    /// Invariants and policies without a failure.
    pub fn passed(&self) -> usize {
        self.items().filter(|i| i.failures.is_empty()).count()
    }

    /// Invariants and policies with a failure.
    pub fn failed(&self) -> usize {
        self.items().filter(|i| !i.failures.is_empty()).count()
    }

    /// Invariants first, then policies.
    pub fn items(&self) -> impl Iterator<Item = &ItemResult> {
        self.invariants.iter().chain(&self.policies)
    }
}

/// One invariant's or one policy's results over its environments.
#[derive(Debug)]
pub struct ItemResult {
    /// The invariant's or the policy's id.
    pub id: String,
    /// What the item claims, in words.
    pub claim: String,
    /// Environments checked.
    pub environments: usize,
    /// Each environment where it does not hold, in order.
    pub failures: Vec<Failure>,
    /// Time spent on it.
    pub elapsed: Duration,
}

/// An environment where an item does not hold, or was not decided.
#[derive(Debug)]
pub struct Failure {
    /// `principal type, action, resource type`.
    pub env: String,
    /// What went wrong, in words.
    pub what: String,
    /// The request and entities showing it, when the solver gave one.
    pub counterexample: Option<Counterexample>,
}

/// A request and an entity store (without the action entities) on which an
/// item fails, re-checked with the ordinary authorizer as a test case.
#[derive(Debug, Clone)]
pub struct Counterexample {
    /// A name for the test case.
    pub name: String,
    /// `Type::"id"`.
    pub principal: String,
    /// `Action::"name"`.
    pub action: String,
    /// `Type::"id"`.
    pub resource: String,
    /// The context, as Cedar JSON.
    pub context: serde_json::Value,
    /// The entities, as Cedar JSON, without action entities.
    pub entities: serde_json::Value,
    /// `allow` or `deny`: what the invariant demands of this request.
    pub expect: &'static str,
    /// The authorizer's decision (`PolicySnapshot::decide`) on the case as
    /// written, or its refusal of the case.
    pub decision: Decision,
    /// The authorizer agrees that the item fails on it.
    pub confirmed: bool,
}

/// Why a run could not be made at all.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The solver is missing or unusable.
    #[error(transparent)]
    Solver(#[from] SolverError),
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

/// What a check establishes, for the counterexample's re-check.
#[derive(Debug, Clone, Copy)]
enum Expectation {
    Claim(Claim),
    NoError,
}

/// Proves `invariants` and that no policy errors, with one solver process
/// whose every check is limited to `time_limit`.
pub async fn prove(
    snapshot: &PolicySnapshot,
    invariants: &[Invariant],
    cvc5: &Cvc5,
    time_limit: Duration,
) -> Result<ProveReport, ProveError> {
    let started = Instant::now();
    let schema = snapshot.schema();
    let envs = request_envs(schema);
    let mut run = Run {
        snapshot,
        compiler: new_compiler(cvc5, time_limit)?,
        cvc5,
        time_limit,
        checks: 0,
        compiled: envs.iter().map(|_| None).collect(),
        envs: &envs,
    };
    let mut results = Vec::with_capacity(invariants.len());
    for invariant in invariants {
        results.push(run.invariant(invariant).await?);
    }
    let mut policies = Vec::new();
    for (id, _) in snapshot.policy_ids() {
        if let Some(policy) = snapshot
            .policies()
            .policy(&cedar_policy::PolicyId::new(&id))
        {
            policies.push(run.never_errors(&id, policy).await?);
        }
    }
    Ok(ProveReport {
        solver: cvc5.version.clone(),
        time_limit,
        environments: envs.len(),
        checks: run.checks,
        invariants: results,
        policies,
        elapsed: started.elapsed(),
    })
}

pub(super) fn new_compiler(
    cvc5: &Cvc5,
    time_limit: Duration,
) -> Result<CedarSymCompiler<LocalSolver>, SolverError> {
    let solver = cvc5.start(time_limit)?;
    CedarSymCompiler::new(solver).map_err(|e| SolverError::Spawn {
        path: cvc5.path.clone(),
        source: cedar_policy_symcc::err::SolverError::Solver(e.to_string()),
    })
}

struct Run<'a> {
    snapshot: &'a PolicySnapshot,
    compiler: CedarSymCompiler<LocalSolver>,
    cvc5: &'a Cvc5,
    time_limit: Duration,
    checks: usize,
    envs: &'a [RequestEnv],
    /// The policy set compiled per environment (index into `envs`), on
    /// first use: every invariant of that environment shares it.
    compiled: Vec<Option<Result<CompiledPolicySet, String>>>,
}

/// A check's answer: holds, a counterexample, or why it was not decided.
type Answer = Result<Option<Env>, cedar_policy_symcc::err::Error>;

impl Run<'_> {
    fn policy_set(&mut self, env: &RequestEnv) -> Result<CompiledPolicySet, String> {
        let index = self.envs.iter().position(|e| e == env).unwrap_or_default();
        let snapshot = self.snapshot;
        self.compiled
            .get_mut(index)
            .map(|slot| {
                slot.get_or_insert_with(|| {
                    CompiledPolicySet::compile(snapshot.policies(), env, snapshot.schema())
                        .map_err(|e| format!("the policies do not compile: {}", symcc_error(&e)))
                })
                .clone()
            })
            .unwrap_or_else(|| Err("unknown request environment".to_owned()))
    }

    /// A solver that answered `unknown` or failed may be mid-answer: the
    /// next check gets a fresh process.
    fn restart(&mut self) -> Result<(), SolverError> {
        self.compiler = new_compiler(self.cvc5, self.time_limit)?;
        Ok(())
    }

    /// Turns a check's answer into a failure (or none), restarting the
    /// solver after an undecided check.
    fn judge(
        &mut self,
        env: &RequestEnv,
        answer: Answer,
        expectation: Expectation,
        what: &str,
        name: &str,
    ) -> Result<Option<Failure>, SolverError> {
        self.checks += 1;
        let label = env_label(env);
        match answer {
            Ok(None) => Ok(None),
            Ok(Some(found)) => {
                let cex = counterexample(self.snapshot, &found, expectation, name);
                Ok(Some(Failure {
                    env: label,
                    what: what.to_owned(),
                    counterexample: Some(cex),
                }))
            }
            Err(e) => {
                let what = match e {
                    cedar_policy_symcc::err::Error::SolverUnknown => format!(
                        "not decided: the solver gave up (time limit {} ms per check)",
                        self.time_limit.as_millis()
                    ),
                    other => format!("not decided: {}", symcc_error(&other)),
                };
                self.restart()?;
                Ok(Some(Failure {
                    env: label,
                    what,
                    counterexample: None,
                }))
            }
        }
    }

    async fn invariant(&mut self, invariant: &Invariant) -> Result<ItemResult, SolverError> {
        let started = Instant::now();
        let mut failures = Vec::new();
        let schema = self.snapshot.schema();
        for env in &invariant.envs {
            let name = format!(
                "invariant {}: {} (counterexample)",
                invariant.id,
                short_env(env)
            );
            let assumption = match CompiledPolicy::compile(&invariant.assumption, env, schema) {
                Ok(a) => a,
                Err(e) => {
                    failures.push(Failure {
                        env: env_label(env),
                        what: format!(
                            "the condition does not type-check here: {}",
                            symcc_error(&e)
                        ),
                        counterexample: None,
                    });
                    continue;
                }
            };
            // A condition that errors would exempt the requests it errors
            // on: the proof would be vacuous there.
            let answer = self
                .compiler
                .check_never_errors_with_counterexample_opt(&assumption)
                .await;
            if let Some(failure) = self.judge(
                env,
                answer,
                Expectation::NoError,
                "the condition itself can error (guard it, e.g. `hasTag` before `getTag`)",
                &name,
            )? {
                // The case shows the error, not the claim: no decision to expect.
                failures.push(failure);
                continue;
            }
            let policies = match self.policy_set(env) {
                Ok(p) => p,
                Err(what) => {
                    failures.push(Failure {
                        env: env_label(env),
                        what,
                        counterexample: None,
                    });
                    continue;
                }
            };
            let assumption = assumption.into_compiled_policyset();
            let (answer, what) = match invariant.claim {
                Claim::Never => (
                    self.compiler
                        .check_disjoint_with_counterexample_opt(&policies, &assumption)
                        .await,
                    "allowed, but the invariant says never",
                ),
                Claim::Always => (
                    self.compiler
                        .check_implies_with_counterexample_opt(&assumption, &policies)
                        .await,
                    "denied, but the invariant says always allowed",
                ),
            };
            if let Some(failure) = self.judge(
                env,
                answer,
                Expectation::Claim(invariant.claim),
                what,
                &name,
            )? {
                failures.push(failure);
            }
        }
        Ok(ItemResult {
            id: invariant.id.clone(),
            claim: format!(
                "{} allowed when {}",
                invariant.claim.as_str(),
                invariant.condition
            ),
            environments: invariant.envs.len(),
            failures,
            elapsed: started.elapsed(),
        })
    }

    async fn never_errors(
        &mut self,
        id: &str,
        policy: &cedar_policy::Policy,
    ) -> Result<ItemResult, SolverError> {
        let started = Instant::now();
        let mut failures = Vec::new();
        let schema = self.snapshot.schema();
        for env in self.envs {
            let compiled = match CompiledPolicy::compile(policy, env, schema) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(Failure {
                        env: env_label(env),
                        what: format!("does not compile: {}", symcc_error(&e)),
                        counterexample: None,
                    });
                    continue;
                }
            };
            let answer = self
                .compiler
                .check_never_errors_with_counterexample_opt(&compiled)
                .await;
            let name = format!("policy {id} errors: {} (counterexample)", short_env(env));
            if let Some(failure) = self.judge(
                env,
                answer,
                Expectation::NoError,
                "the policy can error (so cedargate denies)",
                &name,
            )? {
                failures.push(failure);
            }
        }
        Ok(ItemResult {
            id: id.to_owned(),
            claim: "never errors".to_owned(),
            environments: self.envs.len(),
            failures,
            elapsed: started.elapsed(),
        })
    }
}

/// A SymCC error with its causes and, for a policy that does not type-check,
/// the validator's errors (which SymCC keeps as related diagnostics).
pub(super) fn symcc_error(e: &cedar_policy_symcc::err::Error) -> String {
    let mut text = with_causes(e);
    if let cedar_policy_symcc::err::Error::PolicyNotWellTyped { errs } = e {
        for err in errs {
            text.push_str("; ");
            text.push_str(&with_causes(err));
        }
    }
    text
}

/// `User, Action::"organization.manage", Organization`.
pub(super) fn env_label(env: &RequestEnv) -> String {
    format!("{}, {}, {}", env.principal(), env.action(), env.resource())
}

/// `User organization.manage Organization`, for test case names.
fn short_env(env: &RequestEnv) -> String {
    format!(
        "{} {} {}",
        env.principal(),
        env.action().id().unescaped(),
        env.resource()
    )
}

/// The solver's request and entities as a test case, re-checked the way
/// `cedargate test` would run it: from the JSON, through the schema, with
/// the snapshot's fail-closed decision.
fn counterexample(
    snapshot: &PolicySnapshot,
    found: &Env,
    expectation: Expectation,
    name: &str,
) -> Counterexample {
    let uid = |u: Option<&EntityUid>| u.map(ToString::to_string).unwrap_or_default();
    let request = &found.request;
    let context = request
        .context()
        .and_then(|c| c.to_json_value().ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let entities = case_entities(found);
    let decision = recheck(snapshot, request, &context, &entities)
        .unwrap_or_else(|e| Decision::deny_with_error(format!("the case is refused: {e}")));
    let (expect, confirmed) = match expectation {
        Expectation::Claim(Claim::Never) => ("deny", decision.allow),
        Expectation::Claim(Claim::Always) => ("allow", !decision.allow),
        // No decision is demanded of an erroring request; a deny with the
        // error is what cedargate answers, and what the case pins down.
        Expectation::NoError => ("deny", !decision.errors.is_empty()),
    };
    Counterexample {
        name: name.to_owned(),
        principal: uid(request.principal()),
        action: uid(request.action()),
        resource: uid(request.resource()),
        context,
        entities,
        expect,
        decision,
        confirmed,
    }
}

/// The solver's entities without the action entities (the schema gives
/// those), in a stable order, so that a rerun prints the same case.
pub(super) fn case_entities(found: &Env) -> serde_json::Value {
    let mut kept: Vec<_> = match found.entities.to_json_value() {
        Ok(serde_json::Value::Array(all)) => {
            all.into_iter().filter(|e| !is_action_entity(e)).collect()
        }
        _ => Vec::new(),
    };
    kept.sort_by_cached_key(|e| {
        let part = |key: &str| {
            e.pointer(&format!("/uid/{key}"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        (part("type"), part("id"))
    });
    serde_json::Value::Array(kept)
}

fn is_action_entity(entity: &serde_json::Value) -> bool {
    entity
        .pointer("/uid/type")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|t| t == "Action" || t.ends_with("::Action"))
}

pub(super) fn recheck(
    snapshot: &PolicySnapshot,
    request: &cedar_policy::Request,
    context: &serde_json::Value,
    entities: &serde_json::Value,
) -> Result<Decision, String> {
    let (Some(p), Some(a), Some(r)) = (request.principal(), request.action(), request.resource())
    else {
        return Err("the solver's request lacks a principal, action or resource".to_owned());
    };
    let entities = snapshot
        .entities(entities.clone())
        .map_err(|e| e.to_string())?;
    let request = snapshot
        .request(p.clone(), a.clone(), r.clone(), context)
        .map_err(|e| e.to_string())?;
    Ok(snapshot.decide(&request, &entities))
}
