//! The decision cache (moka). Keys carry the policy revision, so entries
//! made before a reload are never hit again. Each entry remembers the
//! entity epoch it was computed at and the entities it read: it is served
//! only while none of them changed since
//! ([`crate::entities::EntityStore::unchanged_since`]), so a write retires
//! the decisions that read what it wrote and no other.

use std::sync::Arc;
use std::time::Duration;

use cedar_policy::EntityUid;

use crate::policy::Decision;

use super::RequestUids;

/// What a cached decision depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DecisionKey {
    policy_revision: u64,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    /// The context as text (`serde_json` orders object keys, so equal
    /// contexts are equal text); empty for an empty context.
    context: String,
}

impl DecisionKey {
    pub(super) fn new(
        policy_revision: u64,
        uids: &RequestUids,
        context: &serde_json::Value,
    ) -> Self {
        let empty = context.as_object().is_some_and(serde_json::Map::is_empty);
        Self {
            policy_revision,
            principal: uids.principal.clone(),
            action: uids.action.clone(),
            resource: uids.resource.clone(),
            context: if empty {
                String::new()
            } else {
                context.to_string()
            },
        }
    }
}

/// A cached decision and what it was computed from.
#[derive(Debug)]
pub(super) struct Cached {
    pub(super) decision: Decision,
    /// The entity epoch read before any entity it was computed on.
    pub(super) epoch: u64,
    /// The stamp slots of the entities it read.
    pub(super) read: Box<[u32]>,
}

/// A bounded, time-limited cache of decisions; capacity 0 disables it.
#[derive(Debug)]
pub(super) struct DecisionCache(
    Option<moka::sync::Cache<DecisionKey, Arc<Cached>, foldhash::fast::RandomState>>,
);

impl DecisionCache {
    pub(super) fn new(capacity: u64, ttl: Duration) -> Self {
        Self((capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                // Randomly seeded per process, and much cheaper than SipHash
                // on a hit path that is otherwise a few hundred nanoseconds.
                .build_with_hasher(foldhash::fast::RandomState::default())
        }))
    }

    pub(super) fn enabled(&self) -> bool {
        self.0.is_some()
    }

    pub(super) fn get(&self, key: &DecisionKey) -> Option<Arc<Cached>> {
        self.0.as_ref()?.get(key)
    }

    pub(super) fn insert(&self, key: DecisionKey, cached: Cached) {
        if let Some(cache) = &self.0 {
            cache.insert(key, Arc::new(cached));
        }
    }

    pub(super) fn clear(&self) {
        if let Some(cache) = &self.0 {
            cache.invalidate_all();
        }
    }
}
