//! Assembling a slice: the entities one decision needs, as of one store
//! revision (see the INVARIANTs of the parent module).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use cedar_policy::{Entities, EntityTypeName, EntityUid};
// cedar-policy's own (hidden but public) conversions to its core types: the
// core API lets a slice share cached entities and skip the closure pass,
// which the public `Entities::from_entities` always runs. cedar-policy pins
// the core crate to its exact version, so the two cannot drift apart.
use cedar_policy_core::ast::{Entity as CoreEntity, EntityUID};
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;

use super::sql::{self, Seed};
use super::stored::parse;
use super::{
    Closed, EntityStore, MAX_DEREF_DEPTH, Parsed, Plan, Position, SchemaRef, SliceError, StoreError,
};
use crate::policy::Supplied;

/// How many times a slice is assembled from the caches again after the
/// store moved under it, before it is read inside one database snapshot.
const SLICE_ATTEMPTS: usize = 4;

/// What one slice assembly reads with: the schema, and the position every
/// read must agree with.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    schema: SchemaRef<'a>,
    at: Position,
    /// Set when the slice is read inside one database snapshot instead:
    /// then no cache is read or filled.
    snapshot: Option<&'a Snapshot>,
}

/// What one decision needs from the store.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The principal and the resource.
    pub roots: [&'a EntityUid; 2],
    /// The request's action entity and its groups (from the schema).
    pub action: &'a [Arc<CoreEntity>],
    /// Request-scoped entities (Cedar entity JSON).
    pub extra: &'a [&'a serde_json::Value],
    /// How far `extra` is believed: `None` lets it replace stored entities
    /// (the sidecar's own services).
    pub supplied: Option<&'a Supplied>,
    /// How much the slice must hold.
    pub plan: Plan<'a>,
}

/// A read transaction: every read in it sees one committed state.
struct Snapshot(tokio::sync::Mutex<sqlx::Transaction<'static, sqlx::Any>>);

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

/// A slice being assembled, by uid.
type SliceMap = HashMap<EntityUid, Arc<CoreEntity>, foldhash::fast::RandomState>;

impl EntityStore {
    /// Loads one entity: from the cache, else from `rows` (one statement's
    /// read of the slice), else from the database. Without `rows`, a cache
    /// miss stops the walk ([`Stop::Miss`]) so that the slice is read in
    /// one statement instead of one round trip per entity. A database read
    /// made at another revision than `view.at` fails with
    /// [`SliceError::Moved`]: it cannot be mixed with the cached entities.
    async fn get(
        &self,
        view: View<'_>,
        rows: Option<&sql::Rows>,
        uid: &EntityUid,
    ) -> Result<Option<Arc<Parsed>>, Stop> {
        if view.snapshot.is_none()
            && let Some(hit) = self.cache.get(uid)
            && hit.as_ref().is_none_or(|p| p.schema == view.schema.digest)
        {
            return Ok(hit);
        }
        let parsed = match rows.map(|r| r.body(uid)) {
            Some(Some(body)) => parse_body(view, uid, body)?,
            // Not visited by the statement: only when Rust and SQL disagree
            // on what an entity references. Correct, one round trip more.
            Some(None) => self.get_one(view, uid).await?,
            None if view.snapshot.is_some() => self.get_one(view, uid).await?,
            None => return Err(Stop::Miss),
        };
        if view.snapshot.is_none() {
            self.cache_at(view, uid, &parsed);
        }
        Ok(parsed)
    }

    /// Reads one entity from the database (inside the view's snapshot if
    /// it has one).
    async fn get_one(
        &self,
        view: View<'_>,
        uid: &EntityUid,
    ) -> Result<Option<Arc<Parsed>>, SliceError> {
        self.slice_reads.fetch_add(1, Ordering::Relaxed);
        if let Some(snapshot) = view.snapshot {
            let mut tx = snapshot.0.lock().await;
            let (_, body) = sql::get(&mut **tx, uid).await?;
            return parse_body(view, uid, body.as_deref());
        }
        let (revision, body) = sql::get(&self.pool, uid).await?;
        if revision != view.at.revision {
            return Err(SliceError::Moved);
        }
        parse_body(view, uid, body.as_deref())
    }

    /// Reads everything `walk` reaches in one statement, at `view.at`.
    async fn read_walk(
        &self,
        view: View<'_>,
        walk: &sql::Walk<'_>,
    ) -> Result<sql::Rows, SliceError> {
        self.slice_reads.fetch_add(1, Ordering::Relaxed);
        if let Some(snapshot) = view.snapshot {
            let mut tx = snapshot.0.lock().await;
            return Ok(sql::walk(&mut tx, walk).await?.1);
        }
        let mut conn = self.pool.acquire().await.map_err(StoreError::from)?;
        let (revision, rows) = sql::walk(&mut conn, walk).await?;
        if revision != view.at.revision {
            return Err(SliceError::Moved);
        }
        Ok(rows)
    }

    /// Caches an entity read from the database at `view.at`: only if
    /// nothing moved since the view was taken, and atomically so with
    /// respect to invalidation (see INVARIANT).
    fn cache_at(&self, view: View<'_>, uid: &EntityUid, parsed: &Option<Arc<Parsed>>) {
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        if self.position() == view.at {
            self.cache.insert(uid.clone(), parsed.clone());
        }
    }

    /// How many database statements slice assembly has run in this
    /// process: one per slice not (wholly) in the entity cache, whatever
    /// the depth of its hierarchy (more only if the store moved under it).
    pub fn slice_reads(&self) -> u64 {
        self.slice_reads.load(Ordering::Relaxed)
    }

    /// A reader of one store state: the cached position for the first
    /// `SLICE_ATTEMPTS` attempts, then one database snapshot (read
    /// transaction, REPEATABLE READ on PostgreSQL) bypassing the caches.
    pub async fn reader<'s>(
        &'s self,
        schema: SchemaRef<'s>,
        attempt: usize,
    ) -> Result<Reader<'s>, SliceError> {
        if attempt < SLICE_ATTEMPTS {
            return Ok(Reader {
                store: self,
                schema,
                at: self.position(),
                snapshot: None,
            });
        }
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        if tx.backend_name() == "PostgreSQL" {
            // One snapshot for the whole transaction, not one per statement.
            sqlx::query("set transaction isolation level repeatable read, read only")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
        }
        let revision = sql::revision(&mut *tx).await?;
        Ok(Reader {
            store: self,
            schema,
            at: Position {
                revision,
                ..self.position()
            },
            snapshot: Some(Snapshot(tokio::sync::Mutex::new(tx))),
        })
    }

    /// What one attempt of reading a store state came to: its result
    /// and that state's revision, or `None` to try again with the next
    /// reader (the store moved under it; this process has caught up).
    ///
    /// The pattern, until a read settles (a snapshot reader always does):
    /// `for attempt in 0.. { let r = store.reader(schema, attempt).await?;
    /// if let Some(out) = store.settle(&r, read(&r).await).await? { .. } }`
    /// (closures cannot express it: their futures are not `Send`).
    pub async fn settle<T>(
        &self,
        reader: &Reader<'_>,
        result: Result<T, SliceError>,
    ) -> Result<Option<(T, u64)>, SliceError> {
        match result {
            Ok(out) if reader.holds() => Ok(Some((out, reader.at.revision))),
            Ok(_) => Ok(None),
            Err(SliceError::Moved) => {
                self.sync().await?;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// Reads of one store state (see [`EntityStore::consistently`]).
#[derive(Debug)]
pub struct Reader<'s> {
    store: &'s EntityStore,
    schema: SchemaRef<'s>,
    at: Position,
    snapshot: Option<Snapshot>,
}

impl Reader<'_> {
    fn view(&self) -> View<'_> {
        View {
            schema: self.schema,
            at: self.at,
            snapshot: self.snapshot.as_ref(),
        }
    }

    /// Whether every read so far saw the state this reader started at.
    fn holds(&self) -> bool {
        self.snapshot.is_some() || self.store.position() == self.at
    }

    /// The entities one decision needs (see [`EntityStore::slice`]).
    pub async fn slice(&self, wanted: Wanted<'_>) -> Result<Entities, SliceError> {
        self.store.slice_at(self.view(), wanted).await
    }

    /// Up to `limit` ids of stored entities of type `ty` after `after`, in
    /// id order.
    pub async fn ids(
        &self,
        ty: &EntityTypeName,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, SliceError> {
        let ty = ty.to_string();
        if let Some(snapshot) = &self.snapshot {
            let mut tx = snapshot.0.lock().await;
            return Ok(sql::ids(&mut **tx, &ty, after, limit).await?.1);
        }
        let (revision, ids) = sql::ids(&self.store.pool, &ty, after, limit).await?;
        if revision != self.at.revision {
            return Err(SliceError::Moved);
        }
        Ok(ids)
    }
}

/// A stored body parsed against the view's schema.
fn parse_body(
    view: View<'_>,
    uid: &EntityUid,
    body: Option<&str>,
) -> Result<Option<Arc<Parsed>>, SliceError> {
    Ok(match body {
        None => None,
        Some(body) => Some(Arc::new(parse(view.schema, body).map_err(|e| {
            SliceError::Corrupt {
                uid: uid.to_string(),
                reason: e,
            }
        })?)),
    })
}

impl EntityStore {
    /// Builds the entities one request needs, and the store revision they
    /// are as of: the slice's entities, then
    /// `action` (the request's action entity and its groups). `extra`
    /// (request-scoped entities) take precedence over stored entities with
    /// the same uid; with them the plan is always [`Plan::Everything`].
    ///
    /// The slice is one state of the store (see INVARIANT): when the store
    /// moves while it is assembled, this process catches up and assembles
    /// it again, up to `SLICE_ATTEMPTS` times, then reads it inside one
    /// database snapshot, bypassing the caches.
    pub async fn slice(
        &self,
        schema: SchemaRef<'_>,
        wanted: Wanted<'_>,
    ) -> Result<(Entities, u64), SliceError> {
        let read = async {
            for attempt in 0.. {
                let reader = self.reader(schema, attempt).await?;
                let slice = reader.slice(wanted).await;
                if let Some(done) = self.settle(&reader, slice).await? {
                    return Ok(done);
                }
            }
            unreachable!("a snapshot reader always settles")
        };
        tokio::time::timeout(self.read_timeout, read)
            .await
            .unwrap_or(Err(SliceError::Timeout(self.read_timeout)))
    }

    async fn slice_at(&self, view: View<'_>, wanted: Wanted<'_>) -> Result<Entities, SliceError> {
        let Wanted {
            roots,
            action,
            extra,
            supplied,
            plan,
        } = wanted;
        let built = match plan {
            Plan::Analysed {
                id,
                follow,
                literals,
            } if extra.is_empty() => {
                let wanted = Analysed {
                    roots,
                    analysis: id,
                    follow,
                    literals,
                };
                let out = self.analysed(view, &wanted).await?;
                // Sound without a transitive-closure pass: the roots carry
                // their whole ancestor set, action entities come closed from
                // the schema, and the analysis proved nothing else is ever
                // left of `in`.
                CoreEntities::new().add_entities(
                    out.into_values().chain(action.iter().cloned()),
                    None::<&NoEntitiesSchema>,
                    TCComputation::AssumeAlreadyComputed,
                    Extensions::all_available(),
                )
            }
            _ => {
                let out = self.full(view, roots, extra, supplied).await?;
                CoreEntities::from_entities(
                    out.into_values()
                        .chain(action.iter().cloned())
                        .map(Arc::unwrap_or_clone),
                    None::<&NoEntitiesSchema>,
                    TCComputation::ComputeNow,
                    Extensions::all_available(),
                )
            }
        };
        built
            .map(Entities::from)
            .map_err(|e| SliceError::Build(e.to_string()))
    }

    /// An analysed slice: from the caches alone if they hold it, else read
    /// in one statement (the uncached roots with their ancestors and what
    /// they reach, and the literals with what they reach), then walked
    /// over what was read.
    async fn analysed(
        &self,
        view: View<'_>,
        wanted: &Analysed<'_>,
    ) -> Result<SliceMap, SliceError> {
        if view.snapshot.is_none() {
            match self.analysed_slice(view, None, wanted).await {
                Err(Stop::Miss) => {}
                other => return other.map_err(Stop::failed),
            }
        }
        let roots = (wanted.roots.into_iter())
            .filter(|root| self.closed_hit(view, root, wanted.analysis).is_none())
            .map(|uid| Seed::new(uid, 0, true));
        let literals = wanted.literals.iter().map(|uid| Seed::new(uid, 0, false));
        let walk = sql::Walk {
            seeds: roots.chain(literals).collect(),
            max_depth: MAX_DEREF_DEPTH,
            follow: Some(wanted.follow),
            parents_of_references: false,
        };
        let rows = self.read_walk(view, &walk).await?;
        self.analysed_slice(view, Some(&rows), wanted)
            .await
            .map_err(Stop::failed)
    }

    /// Roots with their whole ancestor set and what they reach, then the
    /// literals and what they reach. No ancestor entity is needed: nothing
    /// but a root is ever on the left of `in` (the analysis checked).
    async fn analysed_slice(
        &self,
        view: View<'_>,
        rows: Option<&sql::Rows>,
        wanted: &Analysed<'_>,
    ) -> Result<SliceMap, Stop> {
        let mut out = SliceMap::with_capacity_and_hasher(8, Default::default());
        let mut closed = Vec::with_capacity(2);
        for root in wanted.roots {
            if !out.contains_key(root)
                && let Some(c) = self.closed(view, rows, root, wanted).await?
            {
                out.insert(root.clone(), Arc::clone(&c.entity));
                closed.push(c);
            }
        }
        // After both roots, so that a root reached from the other one keeps
        // its closed form.
        for (uid, entity) in closed.iter().flat_map(|c| &c.reach) {
            out.entry(uid.clone()).or_insert_with(|| Arc::clone(entity));
        }
        if !wanted.literals.is_empty() {
            let start = wanted.literals.iter().map(|u| (u.clone(), 0)).collect();
            for (uid, entity) in self.reach(view, rows, start, wanted.follow, None).await? {
                out.entry(uid).or_insert(entity);
            }
        }
        Ok(out)
    }

    /// Entities reachable from `queue` (uid, depth) through references of
    /// `follow` types, to `MAX_DEREF_DEPTH`, breadth first so each is met
    /// at its least depth. `from` (a root) is never included.
    async fn reach(
        &self,
        view: View<'_>,
        rows: Option<&sql::Rows>,
        mut queue: VecDeque<(EntityUid, usize)>,
        follow: &HashSet<EntityTypeName>,
        from: Option<&EntityUid>,
    ) -> Result<Vec<(EntityUid, Arc<CoreEntity>)>, Stop> {
        let mut seen: HashSet<EntityUid> = from.into_iter().cloned().collect();
        let mut out = Vec::new();
        while let Some((uid, depth)) = queue.pop_front() {
            if !seen.insert(uid.clone()) {
                continue;
            }
            let Some(parsed) = self.get(view, rows, &uid).await? else {
                continue;
            };
            if depth < MAX_DEREF_DEPTH {
                let followed = parsed
                    .refs
                    .iter()
                    .filter(|r| follow.contains(r.type_name()));
                queue.extend(followed.map(|r| (r.clone(), depth + 1)));
            }
            out.push((uid, Arc::clone(&parsed.entity)));
        }
        Ok(out)
    }

    /// The cached closed form of `uid`, if built at the view's epoch for
    /// this analysis (never for a snapshot reader, which bypasses caches).
    fn closed_hit(&self, view: View<'_>, uid: &EntityUid, analysis: u64) -> Option<Arc<Closed>> {
        if view.snapshot.is_some() {
            return None;
        }
        self.closed
            .get(uid)
            .filter(|hit| hit.epoch == view.at.epoch && hit.analysis == analysis)
    }

    /// The entity `uid` with its whole ancestor set and what it reaches,
    /// built once per entity epoch and policy analysis.
    async fn closed(
        &self,
        view: View<'_>,
        rows: Option<&sql::Rows>,
        uid: &EntityUid,
        wanted: &Analysed<'_>,
    ) -> Result<Option<Arc<Closed>>, Stop> {
        if let Some(hit) = self.closed_hit(view, uid, wanted.analysis) {
            return Ok(Some(hit));
        }
        let Some(parsed) = self.get(view, rows, uid).await? else {
            return Ok(None);
        };
        let mut ancestors: HashSet<EntityUid> = HashSet::new();
        let mut stack: Vec<EntityUid> = parsed.parents().collect();
        while let Some(a) = stack.pop() {
            if ancestors.insert(a.clone())
                && let Some(p) = self.get(view, rows, &a).await?
            {
                stack.extend(p.parents());
            }
        }
        // Writes are validated one batch at a time, so two batches can
        // close a cycle; Cedar's closure pass would refuse it, and so do we.
        if ancestors.contains(uid) {
            return Err(Stop::Failed(SliceError::Build(format!(
                "`{uid}` is its own ancestor: the entity hierarchy has a cycle"
            ))));
        }
        let entity = if ancestors.len() == parsed.entity.parents().count() {
            Arc::clone(&parsed.entity)
        } else {
            let mut entity = CoreEntity::clone(&parsed.entity);
            for a in ancestors {
                let a: EntityUID = a.into();
                if !entity.is_child_of(&a) {
                    entity.add_indirect_ancestor(a);
                }
            }
            Arc::new(entity)
        };
        let start = parsed
            .refs
            .iter()
            .filter(|r| wanted.follow.contains(r.type_name()))
            .map(|r| (r.clone(), 1))
            .collect();
        let reach = self
            .reach(view, rows, start, wanted.follow, Some(uid))
            .await?;
        // Built from data read at the view's epoch: a later write moved the
        // epoch, so this entry is never served after it.
        let closed = Arc::new(Closed {
            epoch: view.at.epoch,
            analysis: wanted.analysis,
            entity,
            reach,
        });
        if view.snapshot.is_none() {
            self.closed.insert(uid.clone(), Arc::clone(&closed));
        }
        Ok(Some(closed))
    }

    /// A full slice: from the caches alone if they hold it, else read in
    /// one statement (the roots and the stored and described forms of the
    /// request's entities, with every ancestor and every reference), then
    /// walked over what was read.
    async fn full(
        &self,
        view: View<'_>,
        roots: [&EntityUid; 2],
        extra: &[&serde_json::Value],
        supplied: Option<&Supplied>,
    ) -> Result<SliceMap, SliceError> {
        if view.snapshot.is_none() {
            match self.full_slice(view, None, roots, extra, supplied).await {
                Err(Stop::Miss) => {}
                other => return other.map_err(Stop::failed),
            }
        }
        // A request-scoped entity's stored form, if any, and the parents
        // it names: what its resolved form can descend from.
        let uid_of =
            |v: Option<&serde_json::Value>| v.and_then(|u| EntityUid::from_json(u.clone()).ok());
        let given: Vec<EntityUid> = extra
            .iter()
            .flat_map(|e| {
                let parents = e.get("parents").and_then(serde_json::Value::as_array);
                let parents = parents
                    .into_iter()
                    .flatten()
                    .filter_map(|p| uid_of(Some(p)));
                uid_of(e.get("uid")).into_iter().chain(parents)
            })
            .collect();
        let seeds = (roots.into_iter().map(|uid| Seed::new(uid, 0, true))).chain(
            given
                .iter()
                .map(|uid| Seed::new(uid, MAX_DEREF_DEPTH, true)),
        );
        let walk = sql::Walk {
            seeds: seeds.collect(),
            max_depth: MAX_DEREF_DEPTH,
            follow: None,
            parents_of_references: true,
        };
        let rows = self.read_walk(view, &walk).await?;
        self.full_slice(view, Some(&rows), roots, extra, supplied)
            .await
            .map_err(Stop::failed)
    }

    /// Everything reachable: references to `MAX_DEREF_DEPTH` and every
    /// ancestor, with request-scoped entities in place of stored ones.
    async fn full_slice(
        &self,
        view: View<'_>,
        rows: Option<&sql::Rows>,
        roots: [&EntityUid; 2],
        extra: &[&serde_json::Value],
        supplied: Option<&Supplied>,
    ) -> Result<SliceMap, Stop> {
        let mut out = SliceMap::with_capacity_and_hasher(8, Default::default());
        // Entities the store does not hold, which the request describes whole.
        let mut request_scoped: HashSet<EntityUid> = HashSet::new();
        for given in extra {
            let (entity, stored) = match supplied {
                Some(rules) => {
                    let uid = given
                        .get("uid")
                        .and_then(|u| EntityUid::from_json(u.clone()).ok());
                    let stored = match &uid {
                        Some(uid) => self.get(view, rows, uid).await?,
                        None => None,
                    };
                    let stored_entity = stored.as_ref().map(|p| &*p.entity);
                    let entity = rules
                        .resolve(view.schema.schema, stored_entity, given)
                        .map_err(SliceError::from)?;
                    (entity, stored.is_some())
                }
                None => (
                    crate::policy::describe(view.schema.schema, given).map_err(SliceError::from)?,
                    false,
                ),
            };
            let uid = EntityUid::from(entity.uid().clone());
            if !stored {
                request_scoped.insert(uid.clone());
            }
            out.insert(uid, Arc::new(entity));
        }
        // The smallest depth each entity was expanded at: an entity met first
        // as an ancestor and later as a nearer reference is expanded again.
        let mut expanded: HashMap<EntityUid, usize> = HashMap::new();
        // (uid, depth); ancestors are queued at depth MAX so that only their
        // parents are followed, not their references.
        let mut queue: VecDeque<(EntityUid, usize)> =
            roots.iter().map(|u| ((*u).clone(), 0)).collect();
        for entity in out.values() {
            queue.extend(
                entity
                    .parents()
                    .map(|p| (EntityUid::from(p.clone()), MAX_DEREF_DEPTH)),
            );
        }
        while let Some((uid, depth)) = queue.pop_front() {
            if request_scoped.contains(&uid) || expanded.get(&uid).is_some_and(|d| *d <= depth) {
                continue;
            }
            expanded.insert(uid.clone(), depth);
            let Some(parsed) = self.get(view, rows, &uid).await? else {
                continue;
            };
            queue.extend(parsed.parents().map(|p| (p, MAX_DEREF_DEPTH)));
            if depth < MAX_DEREF_DEPTH {
                for r in &parsed.refs {
                    queue.push_back((r.clone(), depth + 1));
                }
            }
            out.entry(uid).or_insert_with(|| Arc::clone(&parsed.entity));
        }
        Ok(out)
    }
}

/// What an analysed slice needs (see [`Plan::Analysed`]).
#[derive(Debug)]
struct Analysed<'a> {
    roots: [&'a EntityUid; 2],
    analysis: u64,
    follow: &'a HashSet<EntityTypeName>,
    literals: &'a [EntityUid],
}

/// Why a walk over the caches stopped.
#[derive(Debug)]
enum Stop {
    /// An entity it needs is not cached: the slice is read in one
    /// statement and walked again over what was read.
    Miss,
    /// The slice cannot be built.
    Failed(SliceError),
}

impl Stop {
    /// What a walk over a statement's rows failed with (it never misses:
    /// an entity the statement did not visit is read on its own).
    fn failed(self) -> SliceError {
        match self {
            Self::Failed(e) => e,
            Self::Miss => SliceError::Build("an entity of the slice was not read".to_owned()),
        }
    }
}

impl From<SliceError> for Stop {
    fn from(e: SliceError) -> Self {
        Self::Failed(e)
    }
}
