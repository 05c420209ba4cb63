//! The entity store: Cedar entities persisted in the `entity` table, a cache
//! of parsed entities, and the per-request slice the engine evaluates on.
//!
//! A decision never sees the whole store: it sees the principal, the
//! resource, the entities they reference (to `MAX_DEREF_DEPTH` hops, which
//! covers `principal.getTag(t).org.requireMfa`), every ancestor of those,
//! and the request's action. Cost therefore follows the size of the slice,
//! not of the store.
//!
//! INVARIANT: after `upsert`/`delete`/`commit` returns, no cache holds the
//! entities it changed, they carry a stamp of the new epoch and `epoch()`
//! has moved to it, so no decision that read them before the write can be
//! served after it ([`EntityStore::unchanged_since`]). Each write transaction is one
//! store revision; `sync` applies other processes' revisions and skips this
//! process's own, which were applied when they were written.
//!
//! INVARIANT: every cached entity is as it was at the store revision the
//! process has synced to (a change is evicted before that revision moves
//! past it, and a database read is cached only if it was made at that
//! revision). A slice is therefore one state of the store: it takes its
//! entities from the cache and from database reads made at the synced
//! revision, and is accepted only if neither the revision nor the epoch
//! moved while it was assembled; otherwise the process catches up and
//! assembles it again, and after a few attempts reads it inside one
//! database snapshot (a read transaction), bypassing the caches.

mod slice;
mod sql;
mod stamps;
mod stored;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use cedar_policy::{Entities, EntityTypeName, EntityUid, Schema};
use cedar_policy_core::ast::Entity as CoreEntity;
use sqlx::AnyPool;

use crate::policy::TypeNames;

pub use slice::{Reader, Wanted};
pub use sql::{CHANGE_CHANNEL, StoreError};

/// How many attribute/tag hops from the principal and the resource are
/// loaded. Two hops reach `principal.getTag(t).org` (User → Membership →
/// Organization) and `resource.account` / `resource.org`.
pub const MAX_DEREF_DEPTH: usize = 2;

/// A stored entity, parsed once and shared.
#[derive(Debug)]
struct Parsed {
    /// Digest of the schema this was parsed with: after a schema change a
    /// request still pinned to the old snapshot may parse and insert, and
    /// the new snapshot must not use what it parsed.
    schema: [u8; 32],
    /// Cedar's own form: slices are assembled from these `Arc`s, so building
    /// a slice never copies an entity.
    entity: Arc<CoreEntity>,
    /// Entities referenced from attributes and tags.
    refs: Vec<EntityUid>,
}

impl Parsed {
    fn parents(&self) -> impl Iterator<Item = EntityUid> + '_ {
        self.entity.parents().cloned().map(EntityUid::from)
    }
}

/// A principal or resource with its whole ancestor set as ancestors, and
/// the entities the policies can dereference from it, valid for the entity
/// epoch and the policy analysis it was built for.
#[derive(Debug)]
struct Closed {
    epoch: u64,
    analysis: u64,
    entity: Arc<CoreEntity>,
    /// References of followed types, to `MAX_DEREF_DEPTH` hops.
    reach: Vec<(EntityUid, Arc<CoreEntity>)>,
}

/// How many store revisions of the change log writes keep by default.
pub const DEFAULT_CHANGE_LOG_KEEP: u64 = 100_000;

/// How long a slice may wait for the database by default.
pub const DEFAULT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// The state this process's caches reflect: the store revision synced to
/// and the invalidation epoch. Both only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    revision: u64,
    epoch: u64,
}

/// Caches keyed by entity uid. foldhash rather than SipHash: these lookups
/// are most of the slice-building cost, and the seed is still random per
/// process.
type UidCache<V> = moka::sync::Cache<EntityUid, V, foldhash::fast::RandomState>;

fn uid_cache<V: Clone + Send + Sync + 'static>(capacity: u64) -> UidCache<V> {
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .build_with_hasher(foldhash::fast::RandomState::default())
}

/// The schema stored entities are parsed with, and its digest.
#[derive(Debug, Clone, Copy)]
pub struct SchemaRef<'a> {
    /// The schema.
    pub schema: &'a Schema,
    /// Its digest (SHA-256 of its text), telling schemas apart.
    pub digest: [u8; 32],
    /// Its entity type names by their text ([`crate::policy::type_names`]).
    pub names: &'a TypeNames,
}

/// How much a slice must hold.
#[derive(Debug, Clone, Copy)]
pub enum Plan<'a> {
    /// The policies' static analysis holds (only `principal`, `resource`
    /// and `action` are ever left of `in`): the principal and resource carry
    /// their whole ancestor set, so no ancestor entity is loaded, and
    /// references are followed only to the types some policy dereferences.
    Analysed {
        /// Identifies the analysis (unique per loaded policy set): what a
        /// root reaches is cached for one analysis only.
        id: u64,
        /// Types whose attributes or tags some policy reads.
        follow: &'a HashSet<EntityTypeName>,
        /// Entity literals some policy dereferences.
        literals: &'a [EntityUid],
    },
    /// Every reference (to `MAX_DEREF_DEPTH`) and every ancestor.
    Everything,
}

/// Why an entity write was refused. Nothing is written when any entity of
/// the request is invalid.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The body does not describe valid entities for the schema.
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Entity persistence and the parsed-entity cache.
#[derive(Debug)]
pub struct EntityStore {
    pool: AnyPool,
    /// `None` caches "not in the store", so unknown resources cost one query.
    cache: UidCache<Option<Arc<Parsed>>>,
    /// Principals and resources rebuilt with their whole ancestor set.
    closed: UidCache<Arc<Closed>>,
    /// Moves on every invalidation.
    epoch: AtomicU64,
    /// The epoch each entity last changed at, for decisions cached across
    /// unrelated writes.
    stamps: stamps::Stamps,
    /// Makes "insert if the epoch has not moved" (readers, shared) atomic
    /// with "drop the entries, move the epoch" (writers, exclusive), so an
    /// entity read before a write can never be cached after it.
    gate: RwLock<()>,
    /// Highest store revision whose changes this process has applied.
    synced: AtomicU64,
    /// Highest store revision this process wrote.
    written: AtomicU64,
    /// Revisions this process wrote (and applied then) that `sync` has not
    /// passed yet: applying them again would only empty the caches.
    own: Mutex<BTreeSet<u64>>,
    /// One catch-up at a time: readers that found the store moved wait for
    /// the one in progress instead of each reading the change log.
    syncing: tokio::sync::Mutex<()>,
    /// How many revisions of the change log a write keeps for the other
    /// sidecars.
    change_log_keep: u64,
    /// How long a decision waits for the store before it denies.
    read_timeout: std::time::Duration,
    /// Database statements run to assemble slices (see
    /// [`EntityStore::slice_reads`]).
    slice_reads: AtomicU64,
    /// The SQLite file opened, checked before every write and readiness
    /// probe.
    file: Option<crate::db::FileIdentity>,
}

impl EntityStore {
    /// A store over `pool` caching up to `capacity` parsed entities, whose
    /// writes keep the last `change_log_keep` revisions of the change log
    /// for other sidecars to catch up on.
    pub fn new(pool: AnyPool, capacity: u64, change_log_keep: u64) -> Self {
        Self {
            pool,
            cache: uid_cache(capacity),
            closed: uid_cache(capacity),
            epoch: AtomicU64::new(0),
            stamps: stamps::Stamps::default(),
            gate: RwLock::new(()),
            synced: AtomicU64::new(0),
            written: AtomicU64::new(0),
            own: Mutex::new(BTreeSet::new()),
            syncing: tokio::sync::Mutex::new(()),
            change_log_keep,
            read_timeout: DEFAULT_READ_TIMEOUT,
            slice_reads: AtomicU64::new(0),
            file: None,
        }
    }

    /// Refuses writes and readiness once the SQLite file `file` was deleted
    /// or replaced.
    pub fn with_file_identity(mut self, file: Option<crate::db::FileIdentity>) -> Self {
        self.file = file;
        self
    }

    /// Fails when the database file in use was deleted or replaced.
    pub fn check_file(&self) -> Result<(), StoreError> {
        match &self.file {
            Some(file) => Ok(file.check()?),
            None => Ok(()),
        }
    }

    /// Sets how long assembling one slice may wait for the database before
    /// the decision is denied (an unreachable store must not hold callers
    /// for the pool's connect timeout).
    pub fn with_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The database pool (shared with the invitation service).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The invalidation epoch: any entity change moves it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The store revision this process's caches reflect.
    pub fn revision(&self) -> u64 {
        self.synced.load(Ordering::SeqCst)
    }

    /// A consistency token for the writes this process has made: a store
    /// revision at or after each of them (and after every change applied).
    pub fn token(&self) -> u64 {
        self.written.load(Ordering::SeqCst).max(self.revision())
    }

    fn position(&self) -> Position {
        // The revision first: writers move the epoch before the revision,
        // so a pair read in between never matches a later reading.
        let revision = self.revision();
        Position {
            revision,
            epoch: self.epoch(),
        }
    }

    /// Forgets every parsed entity (after a schema change, parsing may differ).
    pub fn clear_cache(&self) {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        // Empty first: a request that sees the new epoch must not find an
        // entry parsed with the old schema.
        self.cache.invalidate_all();
        self.stamps.stamp_all(self.epoch() + 1);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The stamp slots of the entities a decision on `slice` read (see
    /// [`EntityStore::unchanged_since`]), with `also`, the entities it
    /// looked for (principal, resource, literals), found or not.
    pub fn read_set<'a>(
        &self,
        slice: &'a Entities,
        also: impl IntoIterator<Item = &'a EntityUid>,
    ) -> Box<[u32]> {
        let mut slots = Vec::with_capacity(4 * slice.len() + 4);
        stamps::read_by(slice, also, |uid| slots.push(self.stamps.slot(uid)));
        slots.sort_unstable();
        slots.dedup();
        slots.into_boxed_slice()
    }

    /// Whether no entity of `read_set` changed after `epoch`: a decision
    /// computed on entities read at `epoch` or later still holds.
    pub fn unchanged_since(&self, epoch: u64, read_set: &[u32]) -> bool {
        self.stamps.unchanged_since(epoch, read_set)
    }

    /// Validates `json` (an array of Cedar entities) against `schema`, then
    /// writes all of them as one revision. Returns how many were written.
    pub async fn upsert(
        &self,
        schema: &Schema,
        json: serde_json::Value,
    ) -> Result<usize, WriteError> {
        let rows = normalize(schema, json)?;
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        sql::upsert_in(&mut tx, &rows).await?;
        let uids: Vec<EntityUid> = rows.into_iter().map(|(uid, _)| uid).collect();
        self.commit(tx, &uids).await?;
        Ok(uids.len())
    }

    /// Opens a write transaction that takes the store's write lock first,
    /// so that transactions which read before writing never deadlock or
    /// fail to upgrade (SQLite) and writers queue in one order (PostgreSQL
    /// row lock on the revision row). Refused when the database file in use
    /// was deleted or replaced (the write would be lost). Commit it with
    /// [`EntityStore::commit`].
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        self.check_file()?;
        let mut tx = self.pool.begin().await?;
        sql::lock_revision(&mut tx).await?;
        Ok(tx)
    }

    /// A string attribute of a stored entity, read on the caller's
    /// connection; `None` when the entity or the attribute is missing or
    /// not a string.
    pub async fn string_attribute<'e>(
        executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
        uid: &EntityUid,
        attribute: &str,
    ) -> Result<Option<String>, StoreError> {
        let (_, body) = sql::get(executor, uid).await?;
        Ok(body.and_then(|body| {
            let body: serde_json::Value = serde_json::from_str(&body).ok()?;
            body.get("attrs")?
                .get(attribute)?
                .as_str()
                .map(str::to_owned)
        }))
    }

    /// Writes already-validated entity rows inside the caller's transaction
    /// (the invitation service projects its rows this way). The caller
    /// passes the uids to [`EntityStore::commit`].
    pub async fn upsert_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        schema: &Schema,
        json: serde_json::Value,
    ) -> Result<Vec<EntityUid>, WriteError> {
        let rows = normalize(schema, json)?;
        sql::upsert_in(tx, &rows).await?;
        Ok(rows.into_iter().map(|(uid, _)| uid).collect())
    }

    /// Deletes entities inside the caller's transaction (the caller passes
    /// the uids to [`EntityStore::commit`]).
    pub async fn delete_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        uids: &[EntityUid],
    ) -> Result<(), StoreError> {
        for uid in uids {
            sql::delete_in(tx, uid).await?;
        }
        Ok(())
    }

    /// Commits a transaction that wrote `changed` through
    /// [`EntityStore::upsert_in`] or [`EntityStore::delete_in`], as one
    /// store revision, then drops them from the caches. Returns the
    /// revision (`None` when `changed` is empty).
    pub async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Any>,
        changed: &[EntityUid],
    ) -> Result<Option<u64>, StoreError> {
        self.check_file()?;
        let revision = sql::commit(tx, changed, self.change_log_keep).await?;
        self.applied(revision, changed);
        Ok(revision)
    }

    /// Deletes one entity. Returns `false` if it did not exist.
    pub async fn delete(&self, uid: &EntityUid) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !sql::delete_in(&mut tx, uid).await? {
            return Ok(false);
        }
        self.commit(tx, std::slice::from_ref(uid)).await?;
        Ok(true)
    }

    /// After this process committed `revision`: drops what it changed from
    /// the caches, moves the epoch, and remembers the revision as applied.
    /// When it directly follows the synced revision, the caches now reflect
    /// it: the synced revision moves to it (after the eviction, see
    /// INVARIANT) without a read of the change log.
    fn applied<'a>(&self, revision: Option<u64>, changed: impl IntoIterator<Item = &'a EntityUid>) {
        let Some(revision) = revision else { return };
        self.written.fetch_max(revision, Ordering::SeqCst);
        self.own
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(revision);
        self.invalidate(changed);
        let _ = self.synced.compare_exchange(
            revision - 1,
            revision,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Drops `uids` from the cache, stamps them with the next epoch and
    /// moves the epoch to it (stamps first: a reader that sees the new
    /// epoch sees the stamps).
    fn invalidate<'a>(&self, uids: impl IntoIterator<Item = &'a EntityUid>) {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        let next = self.epoch() + 1;
        for uid in uids {
            self.cache.invalidate(uid);
            self.stamps.stamp(uid, next);
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Forgets every cached entity, retires every cached decision and
    /// moves the epoch.
    fn invalidate_all(&self) {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.cache.invalidate_all();
        self.closed.invalidate_all();
        self.stamps.stamp_all(self.epoch() + 1);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Catches up with the store: applies the revisions other processes
    /// wrote since the last call (the sidecars sharing a database); this
    /// process's own were applied when written. When the change log no
    /// longer holds every revision since the last call (this process was
    /// paused while more than the kept window was written), every cache is
    /// emptied. Returns how many entities were invalidated.
    pub async fn sync(&self) -> Result<usize, StoreError> {
        let _one = self.syncing.lock().await;
        let seen = self.revision();
        let log = sql::changes_since(&self.pool, seen).await?;
        if log.revision <= seen {
            // The log is read only after `seen` from now on. Trimmed here,
            // not in `applied`: a sync that read the log before a write
            // marked its revision synced must still find it own.
            let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
            own.retain(|r| *r > seen);
            return Ok(0);
        }
        let mut changed = log.changes;
        {
            let mut own = self.own.lock().unwrap_or_else(PoisonError::into_inner);
            changed.retain(|(r, _)| !own.contains(r));
            // A revision committed but not yet marked own is applied here
            // as well: one needless invalidation, never a missed one.
            own.retain(|r| *r > log.revision);
        }
        let invalidated = if log.complete {
            if !changed.is_empty() {
                self.invalidate(changed.iter().map(|(_, uid)| uid));
            }
            changed.len()
        } else {
            tracing::warn!(
                from = seen,
                to = log.revision,
                oldest_kept = log.oldest,
                "this sidecar fell behind the pruned change log: every cached entity is dropped"
            );
            let cached = self.cache.entry_count() as usize;
            self.invalidate_all();
            cached
        };
        self.synced.fetch_max(log.revision, Ordering::SeqCst);
        Ok(invalidated)
    }

    /// Waits until this process's caches reflect at least store revision
    /// `wanted`, reading the change log at once and then as often as it
    /// takes, for at most `bound`. Returns the revision reached.
    pub async fn catch_up_to(
        &self,
        wanted: u64,
        bound: std::time::Duration,
    ) -> Result<u64, ReachError> {
        let deadline = tokio::time::Instant::now() + bound;
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            if self.revision() >= wanted {
                return Ok(self.revision());
            }
            self.sync().await?;
            let reached = self.revision();
            if reached >= wanted {
                return Ok(reached);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ReachError::NotReached {
                    wanted,
                    reached,
                    waited: bound,
                });
            }
            // The revision may not be committed yet (a write in flight on
            // another sidecar), or may never be (a token from elsewhere).
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(25));
        }
    }

    /// Marks every change up to now as applied (at start, when caches are empty).
    pub async fn mark_synced(&self) -> Result<(), StoreError> {
        let revision = sql::revision(&self.pool).await?;
        self.synced.fetch_max(revision, Ordering::SeqCst);
        Ok(())
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.check_file()?;
        sql::revision(&self.pool).await.map(|_| ())
    }
}

/// Why the store did not reach an asked revision.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The revision was not there within the bound.
    #[error("store revision {wanted} was not reached within {} ms (this sidecar is at {reached}); retry, or check the token", waited.as_millis())]
    NotReached {
        /// The revision asked for.
        wanted: u64,
        /// The revision reached.
        reached: u64,
        /// How long it waited.
        waited: std::time::Duration,
    },
}

/// Why a slice could not be built. On the decision path this is a Deny.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored entity no longer parses against the current schema.
    #[error("stored entity `{uid}` does not match the schema: {reason}")]
    Corrupt {
        /// The entity.
        uid: String,
        /// Cedar's message.
        reason: String,
    },
    /// Cedar refused the slice (e.g. a hierarchy cycle).
    #[error("cannot build the entity slice: {0}")]
    Build(String),
    /// The request contradicts the store about an entity.
    #[error(transparent)]
    Supplied(#[from] crate::policy::SupplyError),
    /// A database read was made at another store revision than the cached
    /// entities reflect. [`EntityStore::slice`] catches up and retries.
    #[error("the store moved while the slice was read")]
    Moved,
    /// The store did not answer in time.
    #[error("the entity store did not answer within {} ms", .0.as_millis())]
    Timeout(std::time::Duration),
}

/// Validates an array of entities against the schema and returns each with
/// its normalized JSON (what is stored).
fn normalize(
    schema: &Schema,
    json: serde_json::Value,
) -> Result<Vec<(EntityUid, String)>, WriteError> {
    let serde_json::Value::Array(items) = &json else {
        return Err(WriteError::Invalid(
            "expected a JSON array of entities".to_owned(),
        ));
    };
    let mut given: Vec<EntityUid> = Vec::with_capacity(items.len());
    let mut unique: HashSet<EntityUid> = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let uid = item
            .get("uid")
            .ok_or_else(|| WriteError::Invalid(format!("entity #{i} has no `uid`")))
            .and_then(|u| {
                EntityUid::from_json(u.clone()).map_err(|e| {
                    WriteError::Invalid(format!("entity #{i} has an invalid `uid`: {e}"))
                })
            })?;
        if !unique.insert(uid.clone()) {
            return Err(WriteError::Invalid(format!("`{uid}` appears twice")));
        }
        given.push(uid);
    }
    // Cedar names the offending entity and attribute only in the causes.
    let entities = Entities::from_json_value(json, Some(schema))
        .map_err(|e| WriteError::Invalid(crate::policy::with_causes(&e)))?;
    given
        .into_iter()
        // Action entities come from the schema (Cedar checked that any given
        // here are declared there and agree with it); storing them would
        // only duplicate it.
        .filter(|uid| !uid.as_ref().entity_type().is_action())
        .map(|uid| {
            let entity = entities
                .get(&uid)
                .ok_or_else(|| WriteError::Invalid(format!("`{uid}` was not accepted")))?;
            let body = entity
                .to_json_value()
                .map_err(|e| WriteError::Invalid(format!("`{uid}`: {e}")))?;
            Ok((uid, body.to_string()))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::expect_used, reason = "tests may panic")]
mod tests;
