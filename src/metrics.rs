//! Prometheus metrics. One registry per application (not a process-global
//! recorder), so that several servers in one test process stay apart.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the decision counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allow` or `deny`.
    pub decision: &'static str,
}

/// Labels of the HTTP response counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The HTTP status code.
    pub status: u16,
}

/// Every metric the sidecar exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Decisions by outcome.
    pub decisions: Family<DecisionLabels, Counter>,
    /// The `allow` and `deny` members of `decisions`, resolved once: the
    /// hot path increments them without a label lookup.
    pub allowed: Counter,
    /// See `allowed`.
    pub denied: Counter,
    /// Decisions that carried an error (and so were denied).
    pub decision_errors: Counter,
    /// Time to decide, cache hits included.
    pub decision_seconds: Histogram,
    /// Decisions served from the decision cache.
    pub cache_hits: Counter,
    /// Decisions evaluated because the cache had none.
    pub cache_misses: Counter,
    /// The revision of the policy set in force.
    pub policy_revision: Gauge,
    /// Reloads refused because the new policy set was invalid.
    pub reload_failures: Counter,
    /// HTTP responses by status code.
    pub http_responses: Family<StatusLabels, Counter>,
    /// 1 while the PostgreSQL change notifications are listened to, 0 while
    /// only polling finds other sidecars' writes.
    pub change_notifications_connected: Gauge,
    /// Times the notification connection was lost.
    pub change_notification_losses: Counter,
    /// Argon2 password hashes computed (one per accepted invitation that
    /// sets a password).
    pub password_hashes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cedargate");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let decision_errors = Counter::default();
        // 5 µs .. ~84 ms
        let decision_seconds = Histogram::new(exponential_buckets(5e-6, 2.0, 15));
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let policy_revision = Gauge::default();
        let reload_failures = Counter::default();
        let http_responses = Family::<StatusLabels, Counter>::default();
        let change_notifications_connected = Gauge::default();
        let change_notification_losses = Counter::default();
        let password_hashes = Counter::default();
        registry.register(
            "password_hashes",
            "Argon2 password hashes computed",
            password_hashes.clone(),
        );
        registry.register(
            "change_notifications_connected",
            "1 while PostgreSQL change notifications are received (else polling only)",
            change_notifications_connected.clone(),
        );
        registry.register(
            "change_notification_losses",
            "Losses of the PostgreSQL notification connection",
            change_notification_losses.clone(),
        );
        registry.register("decisions", "Decisions by outcome", decisions.clone());
        registry.register(
            "decision_errors",
            "Decisions denied because of an error",
            decision_errors.clone(),
        );
        registry.register(
            "decision_duration_seconds",
            "Time to decide",
            decision_seconds.clone(),
        );
        registry.register(
            "decision_cache_hits",
            "Decisions served from the cache",
            cache_hits.clone(),
        );
        registry.register(
            "decision_cache_misses",
            "Decisions evaluated (cache miss)",
            cache_misses.clone(),
        );
        registry.register(
            "policy_revision",
            "Revision of the policy set in force",
            policy_revision.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Reloads refused as invalid",
            reload_failures.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses by status",
            http_responses.clone(),
        );
        let allowed = decisions
            .get_or_create(&DecisionLabels { decision: "allow" })
            .clone();
        let denied = decisions
            .get_or_create(&DecisionLabels { decision: "deny" })
            .clone();
        Self {
            registry,
            allowed,
            denied,
            decisions,
            decision_errors,
            decision_seconds,
            cache_hits,
            cache_misses,
            policy_revision,
            reload_failures,
            http_responses,
            change_notifications_connected,
            change_notification_losses,
            password_hashes,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
