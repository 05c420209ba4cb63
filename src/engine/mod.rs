//! The decision engine: the policy snapshot in force, the entity store, the
//! decision cache, reloads, metrics and the decision log.
//!
//! Read path: load the current `Arc<Loaded>` (lock-free, `arc-swap`), read
//! the entity epoch, look up the decision cache under (policy revision,
//! request), and only on a miss build the entity slice and ask Cedar. A
//! reload makes every older entry unreachable (the key carries the policy
//! revision); an entity write retires exactly the entries that read what it
//! wrote (each entry keeps the epoch it was computed at and the entities it
//! read, checked on every hit): no stale decision, and no needless miss
//! after a write elsewhere.
//!
//! INVARIANT: every error on the decision path becomes a Deny carrying the
//! error (fail closed); `decide` itself never fails.

mod cache;
mod request;
mod search;
mod uid;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cedar_policy::EntityUid;
use cedar_policy_core::ast::Entity as CoreEntity;
use serde::Serialize;

use crate::decisionlog::{DecisionLog, DecisionRecord};
use crate::entities::{EntityStore, Plan, ReachError, SchemaRef, Wanted};
use crate::metrics::Metrics;
use crate::policy::{
    self, Decision, Explanation, LoadError, PolicyArgs, PolicySnapshot, parse_uid,
};
use cache::{Cached, DecisionCache, DecisionKey};
use request::{RequestUids, conform, parse_request, request_entities, uid};
pub use search::{Found, FoundActions, PlanFailure, Planned, Search, SearchError, Searched};
pub use uid::UidRef;

/// How often one decision-path error is written to the log.
const ERROR_LOG_WINDOW: Duration = Duration::from_secs(10);

/// A policy snapshot in force, with its revision.
#[derive(Debug)]
pub struct Loaded {
    /// The validated policies and schema.
    pub snapshot: PolicySnapshot,
    /// Starts at 1 and grows by one per successful reload.
    pub revision: u64,
    /// Each action of the schema: its entity followed by its groups', as
    /// one slice needs them.
    actions: HashMap<EntityUid, Vec<Arc<CoreEntity>>>,
    /// Unix seconds when this revision was loaded.
    pub loaded_at: i64,
}

impl Loaded {
    fn new(snapshot: PolicySnapshot, revision: u64) -> Result<Self, LoadError> {
        let entities = snapshot.schema().action_entities().map_err(|e| {
            LoadError::Invalid(vec![miette::miette!("schema action entities: {e}")])
        })?;
        let by_uid: HashMap<EntityUid, Arc<CoreEntity>> = entities
            .iter()
            .map(|e| (e.uid(), Arc::new(CoreEntity::clone(e.as_ref()))))
            .collect();
        // Cedar keeps action hierarchies closed, so `ancestors` is every group.
        let actions = by_uid
            .iter()
            .map(|(uid, entity)| {
                let groups = entity
                    .ancestors()
                    .filter_map(|a| by_uid.get(&EntityUid::from(a.clone())).cloned());
                let all = std::iter::once(Arc::clone(entity)).chain(groups).collect();
                (uid.clone(), all)
            })
            .collect();
        Ok(Self {
            snapshot,
            revision,
            actions,
            loaded_at: crate::clock::unix_now(),
        })
    }
}

impl Loaded {
    fn schema_ref(&self) -> SchemaRef<'_> {
        SchemaRef {
            schema: self.snapshot.schema(),
            digest: *self.snapshot.schema_digest(),
            names: self.snapshot.type_names(),
        }
    }

    /// What a decision on `roots` needs from the store under this snapshot.
    fn wanted<'a>(
        &'a self,
        roots: [&'a EntityUid; 2],
        action: &'a [Arc<CoreEntity>],
        extra: &'a [&'a serde_json::Value],
        described_by: Describer,
    ) -> Wanted<'a> {
        let snapshot = &self.snapshot;
        Wanted {
            roots,
            action,
            extra,
            supplied: match described_by {
                Describer::Caller => Some(snapshot.supplied()),
                Describer::Sidecar => None,
            },
            plan: match snapshot.dereferenced_types() {
                Some(follow) => Plan::Analysed {
                    id: snapshot.analysis_id(),
                    follow,
                    literals: snapshot.dereferenced_literals(),
                },
                None => Plan::Everything,
            },
        }
    }
}

/// One authorization request as callers give it: entity references as
/// JSON (`Type::"id"` strings or `{"type","id"}` objects), so that a bad
/// reference is a Deny with a reason rather than a transport error.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    /// The principal.
    pub principal: UidRef,
    /// The action.
    pub action: UidRef,
    /// The resource.
    pub resource: UidRef,
    /// The context object (`{}` when absent).
    pub context: serde_json::Value,
    /// Request-scoped entities (Cedar entity JSON).
    pub entities: Vec<serde_json::Value>,
    /// Who describes `entities`, and so how far they are believed.
    pub described_by: Describer,
    /// How the context and the entities' attributes are read.
    pub shape: Shape,
}

/// How a request's context and entity attributes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// As Cedar reads JSON against the schema: an undeclared key is an
    /// error (the native API, the sidecar's own services).
    Cedar,
    /// As the AuthZEN standard asks: undeclared context keys and entity
    /// properties are ignored, declared values converted to their type
    /// ([`PolicySnapshot::conform_context`]).
    AuthZen,
}

/// Who describes a request's entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Describer {
    /// A host application: the store stays authoritative
    /// ([`crate::policy::Supplied`]).
    Caller,
    /// This sidecar's own invitation service, which writes the store and
    /// describes entities it is about to create (a new organization): its
    /// descriptions replace stored entities.
    Sidecar,
}

/// A decision and how it was reached.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    /// The decision, its reasons and errors.
    #[serde(flatten)]
    pub decision: Decision,
    /// The policy revision that decided.
    pub policy_revision: u64,
    /// The store revision whose entities decided (a consistency token: a
    /// later request may ask for at least this state).
    pub store_revision: u64,
    /// Served from the decision cache.
    pub cached: bool,
    /// Why, at the level of conditions, when asked for
    /// ([`Engine::decide_explained`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// What [`Engine::evaluate`] computed.
struct Evaluated {
    decision: Decision,
    /// The store revision of the entities it was made on (`None` when it
    /// failed before reading any).
    revision: Option<u64>,
    explanation: Option<Explanation>,
    /// The stamp slots of the entities it read, when it may be cached.
    read: Option<Box<[u32]>>,
}

impl Evaluated {
    /// A Deny with `error`, before any entity was read.
    fn refused(error: impl ToString) -> Self {
        Self {
            decision: Decision::deny_with_error(error),
            revision: None,
            explanation: None,
            read: None,
        }
    }
}

/// The outcome of a reload attempt, kept for `GET /v1/policies`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// Reloads attempted since start (taken or refused).
    pub attempts: u64,
    /// The last refused reload's diagnostics (file, line, caret), if the
    /// last attempt failed.
    pub last_error: Option<String>,
    /// Unix seconds of the last attempt.
    pub last_attempt_at: Option<i64>,
}

/// The decision engine shared by every handler.
#[derive(Debug)]
pub struct Engine {
    policy: PolicyArgs,
    current: ArcSwap<Loaded>,
    store: Arc<EntityStore>,
    decisions: DecisionCache,
    metrics: Arc<Metrics>,
    log: DecisionLog,
    status: std::sync::Mutex<ReloadStatus>,
    reloading: tokio::sync::Mutex<()>,
    /// Reloads take a candidate only if the policy test suites pass on it.
    test_gate: bool,
    /// One log line per distinct decision-path error per window.
    errors: crate::decisionlog::Throttle,
    /// Longest wait for a store revision a request asks for.
    consistency_wait: Duration,
}

impl Engine {
    /// An engine serving `snapshot` (revision 1).
    pub fn new(
        policy: PolicyArgs,
        snapshot: PolicySnapshot,
        store: Arc<EntityStore>,
        cache_capacity: u64,
        cache_ttl: Duration,
        metrics: Arc<Metrics>,
        log: DecisionLog,
    ) -> Result<Self, LoadError> {
        let loaded = Loaded::new(snapshot, 1)?;
        metrics.policy_revision.set(1);
        Ok(Self {
            policy,
            current: ArcSwap::from_pointee(loaded),
            store,
            decisions: DecisionCache::new(cache_capacity, cache_ttl),
            metrics,
            log,
            status: std::sync::Mutex::new(ReloadStatus::default()),
            reloading: tokio::sync::Mutex::new(()),
            test_gate: true,
            errors: crate::decisionlog::Throttle::new(ERROR_LOG_WINDOW),
            consistency_wait: Duration::from_secs(1),
        })
    }

    /// Whether a reload requires the test suites under `<policies>/tests/`
    /// to pass on the candidate (on by default; a directory without suites
    /// passes).
    pub fn with_test_gate(mut self, on: bool) -> Self {
        self.test_gate = on;
        self
    }

    /// The snapshot in force. Callers keep the `Arc` for the whole request,
    /// so a reload never mixes two policy sets in one answer.
    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    /// How long a request asking for a store revision may wait for it.
    pub fn with_consistency_wait(mut self, wait: Duration) -> Self {
        self.consistency_wait = wait;
        self
    }

    /// Makes the decisions that follow see at least store revision
    /// `wanted` (a consistency token from a write): catches up at once and
    /// waits for it at most the consistency bound. `None` asks nothing.
    pub async fn at_least(&self, wanted: Option<u64>) -> Result<(), ReachError> {
        match wanted {
            Some(wanted) => self
                .store
                .catch_up_to(wanted, self.consistency_wait)
                .await
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// The entity store.
    pub fn store(&self) -> &Arc<EntityStore> {
        &self.store
    }

    /// The last reload's outcome.
    pub fn reload_status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Decides one request. Never fails: errors are Denies (fail closed).
    pub async fn decide(&self, request: &AuthzRequest, request_id: &str) -> Decided {
        let loaded = self.current();
        self.decide_with(&loaded, request, request_id, false).await
    }

    /// Decides `request` and explains the decision from the same policies
    /// and entities (never from the cache, whose entry has no explanation).
    pub async fn decide_explained(&self, request: &AuthzRequest, request_id: &str) -> Decided {
        let loaded = self.current();
        self.decide_with(&loaded, request, request_id, true).await
    }

    /// Decides a batch against one snapshot, in order.
    pub async fn decide_batch(&self, requests: &[AuthzRequest], request_id: &str) -> Vec<Decided> {
        self.decide_batch_until(requests, request_id, false, |_| false)
            .await
    }

    /// Decides a batch against one snapshot, in order, stopping after the
    /// first decision for which `stop` holds (AuthZEN's short-circuiting
    /// evaluation semantics).
    pub async fn decide_batch_until(
        &self,
        requests: &[AuthzRequest],
        request_id: &str,
        explain: bool,
        stop: impl Fn(&Decided) -> bool,
    ) -> Vec<Decided> {
        let loaded = self.current();
        let mut out = Vec::with_capacity(requests.len());
        for request in requests {
            let decided = self
                .decide_with(&loaded, request, request_id, explain)
                .await;
            let done = stop(&decided);
            out.push(decided);
            if done {
                break;
            }
        }
        out
    }

    /// Decides against a given snapshot (batches pin one for all items).
    async fn decide_with(
        &self,
        loaded: &Loaded,
        request: &AuthzRequest,
        request_id: &str,
        explain: bool,
    ) -> Decided {
        let started = Instant::now();
        // The revision before the epoch (writers move them the other way
        // round): a cached answer under this epoch was computed with no
        // entity change applied since, so it holds at least at this
        // revision, never claims a later one.
        let mut store_revision = self.store.revision();
        // Read the epoch before any entity: a write during evaluation
        // stamps what it wrote with a later epoch, which retires this
        // answer if it read any of it.
        let epoch = self.store.epoch();
        let parsed = parse_request(&loaded.snapshot, request);
        // Before `parsed` is consumed: the log shows the uids parsed here
        // instead of parsing the request's references again.
        let logged = self
            .log
            .wants()
            .then(|| logged_uids(parsed.as_ref().ok(), request));
        let conformed = match (&parsed, request.shape) {
            (Ok(uids), Shape::AuthZen) => Some(conform(&loaded.snapshot, &uids.action, request)),
            _ => None,
        };
        let request = conformed.as_ref().unwrap_or(request);
        let key = match &parsed {
            Ok(p) if !explain && request.entities.is_empty() && self.decisions.enabled() => {
                Some(DecisionKey::new(loaded.revision, p, &request.context))
            }
            _ => None,
        };
        let cached = key
            .as_ref()
            .and_then(|k| self.decisions.get(k))
            .filter(|c| self.store.unchanged_since(c.epoch, &c.read));
        let mut explanation = None;
        let (decision, hit) = match cached {
            Some(cached) => (cached.decision.clone(), true),
            None => {
                let mut read = None;
                let decision = match parsed {
                    Ok(uids) => {
                        let evaluated = self
                            .evaluate(loaded, uids, request, explain, key.is_some())
                            .await;
                        store_revision = evaluated.revision.unwrap_or(store_revision);
                        explanation = evaluated.explanation;
                        read = evaluated.read;
                        evaluated.decision
                    }
                    Err(e) => Decision::deny_with_error(e),
                };
                if explain && explanation.is_none() {
                    // Refused before evaluation: the errors are the explanation.
                    explanation = Some(Explanation::default());
                }
                // Errors may be transient (an unreachable store): never cache them.
                if let (Some(key), Some(read)) = (key, read)
                    && decision.errors.is_empty()
                {
                    let cached = Cached {
                        decision: decision.clone(),
                        epoch,
                        read,
                    };
                    self.decisions.insert(key, cached);
                }
                (decision, false)
            }
        };
        let elapsed = started.elapsed();
        self.observe(&decision, hit, elapsed);
        if let Some(uids) = logged {
            self.log_decision(
                &uids,
                request,
                request_id,
                &decision,
                loaded.revision,
                elapsed,
                hit,
            );
        }
        Decided {
            decision,
            policy_revision: loaded.revision,
            store_revision,
            cached: hit,
            explanation,
        }
    }

    /// The decision, the store revision of the entities it was made on,
    /// its explanation when `explain`, and the entities it read when
    /// `to_cache`.
    async fn evaluate(
        &self,
        loaded: &Loaded,
        uids: RequestUids,
        request: &AuthzRequest,
        explain: bool,
        to_cache: bool,
    ) -> Evaluated {
        let snapshot = &loaded.snapshot;
        let RequestUids {
            principal,
            action,
            resource,
        } = uids;
        let cedar_request = match snapshot.request(principal, action, resource, &request.context) {
            Ok(r) => r,
            Err(e) => return Evaluated::refused(e),
        };
        // A validated request always names its principal, action and resource.
        let (Some(principal), Some(action), Some(resource)) = (
            cedar_request.principal(),
            cedar_request.action(),
            cedar_request.resource(),
        ) else {
            return Evaluated::refused("the request lost its principal, action or resource");
        };
        let extra = match request_entities(loaded, &request.entities) {
            Ok(extra) => extra,
            Err(e) => return Evaluated::refused(e),
        };
        let wanted = loaded.wanted(
            [principal, resource],
            loaded.actions.get(action).map_or(&[], Vec::as_slice),
            &extra,
            request.described_by,
        );
        match self.store.slice(loaded.schema_ref(), wanted).await {
            Ok((entities, revision)) => {
                let decision = snapshot.decide(&cedar_request, &entities);
                let explanation =
                    explain.then(|| snapshot.explain(&cedar_request, &entities, &decision));
                let read = to_cache.then(|| {
                    let looked_for = [principal, resource]
                        .into_iter()
                        .chain(snapshot.dereferenced_literals());
                    self.store.read_set(&entities, looked_for)
                });
                Evaluated {
                    decision,
                    revision: Some(revision),
                    explanation,
                    read,
                }
            }
            Err(e) => {
                let message = e.to_string();
                if let Some(repeats) = self.errors.admit(&message, Instant::now()) {
                    tracing::error!(error = %message, repeats, "cannot load entities for a decision (denied)");
                }
                Evaluated::refused(message)
            }
        }
    }

    fn observe(&self, decision: &Decision, hit: bool, elapsed: Duration) {
        let m = &self.metrics;
        if decision.allow {
            m.allowed.inc();
        } else {
            m.denied.inc();
        }
        if !decision.errors.is_empty() {
            m.decision_errors.inc();
        }
        if hit {
            m.cache_hits.inc();
        } else {
            m.cache_misses.inc();
        }
        m.decision_seconds.observe(elapsed.as_secs_f64());
    }

    #[expect(clippy::too_many_arguments, reason = "one record's fields, private")]
    fn log_decision(
        &self,
        [principal, action, resource]: &[String; 3],
        request: &AuthzRequest,
        request_id: &str,
        decision: &Decision,
        revision: u64,
        elapsed: Duration,
        cached: bool,
    ) {
        let time_ms = crate::clock::unix_now_ms();
        let (context, redacted) = if self.log.logs_requests() {
            let (context, redacted) = self.log.redacted_context(&request.context);
            (Some(context), redacted)
        } else {
            (None, Vec::new())
        };
        self.log.write(&DecisionRecord {
            request_id,
            time_ms,
            principal,
            action,
            resource,
            decision: decision.as_str(),
            reasons: &decision.reasons,
            errors: &crate::decisionlog::withhold_context(&decision.errors, &request.context),
            policy_revision: revision,
            latency_us: elapsed.as_micros(),
            cached,
            context,
            entities: self
                .log
                .logs_requests()
                .then_some(request.entities.as_slice()),
            redacted: &redacted,
        });
    }

    /// Loads the policy and schema directories again, validates them, runs
    /// the policy test suites on them (unless the gate is off), and only
    /// then swaps them in. A refused set leaves the previous one serving;
    /// the diagnostics or failing cases are kept for `GET /v1/policies`.
    pub async fn reload(&self) -> Result<u64, Arc<LoadError>> {
        let _one_at_a_time = self.reloading.lock().await;
        let args = self.policy.clone();
        let gate = self.test_gate;
        let loaded = tokio::task::spawn_blocking(move || {
            let snapshot = policy::load(&args.policies, &args.schema)?;
            if gate {
                pass_suites(&snapshot, &args.policies)?;
                // Off without `invariants.yaml` beside the policies or without cvc5.
                crate::assurance::check_invariants(&snapshot, &args.policies).map_err(|e| {
                    LoadError::Invalid(vec![miette::miette!(
                        "{}",
                        crate::assurance::invariants::with_causes(&e)
                    )])
                })?;
            }
            Ok(snapshot)
        })
        .await
        .unwrap_or_else(|e| {
            Err(LoadError::Invalid(vec![miette::miette!(
                "reload task failed: {e}"
            )]))
        });
        let now = crate::clock::unix_now();
        let result = loaded.and_then(|snapshot| Loaded::new(snapshot, self.current().revision + 1));
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_attempt_at = Some(now);
        status.attempts += 1;
        match result {
            Ok(next) => {
                let revision = next.revision;
                let schema_changed =
                    next.snapshot.schema_digest() != self.current().snapshot.schema_digest();
                self.current.store(Arc::new(next));
                if schema_changed {
                    // Stored entities are parsed against the schema.
                    self.store.clear_cache();
                }
                self.decisions.clear();
                status.last_error = None;
                self.metrics.policy_revision.set(revision as i64);
                tracing::info!(revision, "policies reloaded");
                Ok(revision)
            }
            Err(e) => {
                let rendered = e.render();
                tracing::error!(diagnostics = %rendered, "policy reload refused; the previous policies keep serving");
                status.last_error = Some(rendered);
                self.metrics.reload_failures.inc();
                Err(Arc::new(e))
            }
        }
    }
}

/// Runs the test suites under `<policies>/tests/` on a candidate set.
fn pass_suites(snapshot: &PolicySnapshot, policies: &std::path::Path) -> Result<(), LoadError> {
    let dir = policies.join("tests");
    if !dir.is_dir() {
        return Ok(());
    }
    let suites = crate::policytest::find_suites(&[dir])?;
    let run = crate::policytest::run(snapshot, &suites);
    let failed = run.failed();
    if failed == 0 {
        return Ok(());
    }
    let mut report = String::new();
    crate::policytest::print_failures(&run, snapshot, &mut report);
    Err(LoadError::TestsFailed { failed, report })
}

/// The principal, action and resource as the decision log shows them: a
/// reference given as text as it was given, any other as Cedar writes the
/// uid (`parsed`, when the request's references all parsed).
fn logged_uids(parsed: Option<&RequestUids>, request: &AuthzRequest) -> [String; 3] {
    let show = |given: &UidRef, parsed: Option<&EntityUid>| match (given, parsed) {
        (UidRef::Json(serde_json::Value::String(s)), _) => s.clone(),
        (_, Some(uid)) => uid.to_string(),
        (other, None) => parse_uid("entity", &other.to_json())
            .map(|u| u.to_string())
            .unwrap_or_else(|_| other.to_string()),
    };
    [
        show(&request.principal, parsed.map(|p| &p.principal)),
        show(&request.action, parsed.map(|p| &p.action)),
        show(&request.resource, parsed.map(|p| &p.resource)),
    ]
}
