//! SQL of the entity store. Every write transaction bumps `store_revision`
//! once and records what it changed in `entity_change` under that revision.

use std::collections::{HashMap, HashSet};

use cedar_policy::{EntityTypeName, EntityUid};
use sqlx::{AnyPool, Row};

/// A failure of the entity store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("entity store: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite file in use was deleted or replaced.
    #[error(transparent)]
    FileChanged(#[from] crate::db::FileChanged),
}

/// The PostgreSQL notification channel a committed store revision is
/// announced on.
pub const CHANGE_CHANNEL: &str = "cedargate_store_revision";

fn type_and_id(uid: &EntityUid) -> (String, String) {
    (uid.type_name().to_string(), uid.id().unescaped().to_owned())
}

/// One entity's body (`None`: not stored) and the store revision it was
/// read at, in one statement and so from one snapshot.
pub(super) async fn get<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    uid: &EntityUid,
) -> Result<(u64, Option<String>), StoreError> {
    let (ty, id) = type_and_id(uid);
    let row = sqlx::query(
        "select (select revision from store_revision where id = 1),
                (select body from entity where entity_type = $1 and entity_id = $2)",
    )
    .bind(ty)
    .bind(id)
    .fetch_one(executor)
    .await?;
    let revision: i64 = row.get(0);
    Ok((revision.max(0) as u64, row.get(1)))
}

/// Where a slice walk starts: an entity, the reference depth it is met at,
/// and whether its parents are followed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seed<'a> {
    pub uid: &'a EntityUid,
    pub depth: usize,
    pub parents: bool,
}

impl<'a> Seed<'a> {
    pub(super) fn new(uid: &'a EntityUid, depth: usize, parents: bool) -> Self {
        Self {
            uid,
            depth,
            parents,
        }
    }
}

/// What one slice statement reads: from the seeds, parents (transitively)
/// of every entity whose parents are followed, and references to
/// `max_depth` hops. A superset of what the slice needs is harmless: the
/// slice is still walked in Rust over what was read.
#[derive(Debug)]
pub(super) struct Walk<'a> {
    pub seeds: Vec<Seed<'a>>,
    /// The reference depth of ancestors: their references are not followed.
    pub max_depth: usize,
    /// Only references to these types are followed (`None`: every type).
    pub follow: Option<&'a HashSet<EntityTypeName>>,
    /// Whether the parents of referenced entities are followed too.
    pub parents_of_references: bool,
}

/// Every entity one slice statement visited, by type then id, with its
/// stored body (`None`: not stored).
#[derive(Debug, Default)]
pub(super) struct Rows(HashMap<String, HashMap<String, Option<String>>>);

impl Rows {
    /// `None` when the statement did not visit `uid`; `Some(None)` when it
    /// did and the store does not hold it.
    pub(super) fn body(&self, uid: &EntityUid) -> Option<Option<&str>> {
        let body = self
            .0
            .get(uid.type_name().to_string().as_str())?
            .get(uid.id().unescaped())?;
        Some(body.as_deref())
    }
}

/// The walk's seeds (`$1`): a JSON array of `{"type","id","depth","anc"}`.
/// Parameters `$2` (followed types, a JSON array or null), `$3` (the
/// ancestors' depth, also the last depth whose references are followed)
/// and `$4` (1 when references' parents are followed) are shared by both
/// backends' statements.
///
/// UNION (not UNION ALL) over (type, id, depth, anc) ends the recursion
/// whatever the data: depth only grows to `$3` and anc is 0 or 1, so each
/// entity is visited at most `2 × ($3 + 1)` times, even through a cycle of
/// parents, which two write batches can close. Parents and references
/// are two recursive steps (SQLite 3.34+), so that only the entities whose
/// references are followed have their whole body walked.
const WALK_SQLITE: &str = "
with recursive walk(entity_type, entity_id, depth, anc) as (
    select s.value ->> '$.type', s.value ->> '$.id', s.value ->> '$.depth', s.value ->> '$.anc'
    from json_each($1) s
    union
    select p.value ->> '$.type', p.value ->> '$.id', $3, 1
    from walk w
    join json_each((select e.body from entity e
                    where e.entity_type = w.entity_type and e.entity_id = w.entity_id),
                   '$.parents') p
    where w.anc = 1
    union
    select j.value ->> '$.type', j.value ->> '$.id', w.depth + 1, $4
    from walk w
    join json_tree((select e.body from entity e
                    where e.entity_type = w.entity_type and e.entity_id = w.entity_id)) j
    where w.depth < $3 and j.key = '__entity' and j.type = 'object'
      and ($2 is null or j.value ->> '$.type' in (select value from json_each($2)))
)
select r.revision, v.entity_type, v.entity_id,
       (select e.body from entity e
        where e.entity_type = v.entity_type and e.entity_id = v.entity_id)
from store_revision r
left join (select distinct entity_type, entity_id from walk) v on 1 = 1
where r.id = 1";

/// [`WALK_SQLITE`] for PostgreSQL. Each body is looked up by a scalar
/// subquery, so by primary key: as a join, the planner's guess at the
/// walk's size made it hash the whole table (30 ms at 13k entities).
const WALK_POSTGRES: &str = "
with recursive walk(entity_type, entity_id, depth, anc) as (
    select s->>'type', s->>'id', (s->>'depth')::int, (s->>'anc')::int
    from jsonb_path_query($1::jsonb, 'strict $[*]') s
    where jsonb_typeof(s) = 'object'
    union
    select n.entity_type, n.entity_id, n.depth, n.anc
    from walk w
    cross join lateral (
        select (select e.body from entity e
                where e.entity_type = w.entity_type and e.entity_id = w.entity_id)::jsonb as b
        offset 0
    ) j
    cross join lateral (
        select p->>'type' as entity_type, p->>'id' as entity_id, $3::int as depth, 1 as anc
        from jsonb_path_query(j.b, 'lax $.parents[*]') p
        where w.anc = 1 and jsonb_typeof(p) = 'object'
        union all
        select r->>'type', r->>'id', w.depth + 1, $4::int
        from jsonb_path_query(j.b, 'lax $.**.__entity') r
        where w.depth < $3::int and jsonb_typeof(r) = 'object'
          and ($2::jsonb is null
               or r->>'type' in (select jsonb_array_elements_text($2::jsonb)))
    ) n
)
select r.revision, v.entity_type, v.entity_id,
       (select e.body from entity e
        where e.entity_type = v.entity_type and e.entity_id = v.entity_id)
from store_revision r
left join (select distinct entity_type, entity_id from walk) v on true
where r.id = 1";

/// Reads a slice's entities in one statement, and so from one snapshot,
/// with the store revision they were read at.
pub(super) async fn walk(
    conn: &mut sqlx::AnyConnection,
    walk: &Walk<'_>,
) -> Result<(u64, Rows), StoreError> {
    let seeds: Vec<serde_json::Value> = walk
        .seeds
        .iter()
        .map(|s| {
            let (ty, id) = type_and_id(s.uid);
            serde_json::json!({"type": ty, "id": id, "depth": s.depth, "anc": i32::from(s.parents)})
        })
        .collect();
    let follow = walk.follow.map(|types| {
        serde_json::Value::from_iter(types.iter().map(|t| serde_json::Value::from(t.to_string())))
            .to_string()
    });
    let sql = if conn.backend_name() == "PostgreSQL" {
        WALK_POSTGRES
    } else {
        WALK_SQLITE
    };
    let rows = sqlx::query(sql)
        .bind(serde_json::Value::Array(seeds).to_string())
        .bind(follow)
        .bind(i64::try_from(walk.max_depth).unwrap_or(i64::MAX))
        .bind(i64::from(walk.parents_of_references))
        .fetch_all(conn)
        .await?;
    let revision = rows.first().map_or(0, |r| r.get::<i64, _>(0).max(0) as u64);
    let mut out = Rows::default();
    for row in rows {
        // A malformed reference has no type or id: nothing to look up.
        let (Some(ty), Some(id)) = (row.get::<Option<String>, _>(1), row.get(2)) else {
            continue;
        };
        out.0.entry(ty).or_default().insert(id, row.get(3));
    }
    Ok((revision, out))
}

/// Up to `limit` ids of stored entities of type `ty` after `after`, in id
/// order, and the store revision they were read at, in one statement and
/// so from one snapshot.
pub(super) async fn ids<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    ty: &str,
    after: &str,
    limit: usize,
) -> Result<(u64, Vec<String>), StoreError> {
    let rows = sqlx::query(
        "select r.revision, e.entity_id from store_revision r
         left join (select entity_id from entity where entity_type = $1 and entity_id > $2
                    order by entity_id limit $3) e on 1 = 1
         where r.id = 1 order by e.entity_id",
    )
    .bind(ty)
    .bind(after)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(executor)
    .await?;
    let revision = rows.first().map_or(0, |r| r.get::<i64, _>(0).max(0) as u64);
    let ids = rows
        .iter()
        .filter_map(|r| r.get::<Option<String>, _>(1))
        .collect();
    Ok((revision, ids))
}

/// Writes the rows only: [`commit`] records the change.
pub(super) async fn upsert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[(EntityUid, String)],
) -> Result<(), StoreError> {
    let now = crate::clock::unix_now();
    for (uid, body) in rows {
        let (ty, id) = type_and_id(uid);
        sqlx::query(
            "insert into entity (entity_type, entity_id, body, updated_at) values ($1, $2, $3, $4)
             on conflict (entity_type, entity_id) do update set body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(&ty)
        .bind(&id)
        .bind(body)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Deletes the row only: [`commit`] records the change.
pub(super) async fn delete_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    uid: &EntityUid,
) -> Result<bool, StoreError> {
    let (ty, id) = type_and_id(uid);
    Ok(
        sqlx::query("delete from entity where entity_type = $1 and entity_id = $2")
            .bind(&ty)
            .bind(&id)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            > 0,
    )
}

/// Gives the transaction one new store revision, records `changed` under
/// it and commits: a transaction is one revision however many entities it
/// wrote. Returns that revision, or `None` when nothing changed (then no
/// revision is taken).
pub(super) async fn commit(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    changed: &[EntityUid],
    keep: u64,
) -> Result<Option<u64>, StoreError> {
    if changed.is_empty() {
        tx.commit().await?;
        return Ok(None);
    }
    let revision = bump_revision(&mut tx, keep).await?;
    for uid in changed {
        let (ty, id) = type_and_id(uid);
        record_change(&mut tx, revision, &ty, &id).await?;
    }
    if tx.backend_name() == "PostgreSQL" {
        // Delivered at commit: the other sidecars catch up at once.
        sqlx::query("select pg_notify($1, $2)")
            .bind(CHANGE_CHANNEL)
            .bind(revision.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Some(revision.max(0) as u64))
}

/// Takes the next revision and prunes the change log to the last `keep`
/// revisions.
async fn bump_revision(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    keep: u64,
) -> Result<i64, StoreError> {
    let revision: i64 = sqlx::query(
        "update store_revision set revision = revision + 1 where id = 1 returning revision",
    )
    .fetch_one(&mut **tx)
    .await?
    .get(0);
    sqlx::query("delete from entity_change where revision < $1")
        .bind(revision.saturating_sub(i64::try_from(keep).unwrap_or(i64::MAX)))
        .execute(&mut **tx)
        .await?;
    Ok(revision)
}

async fn record_change(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    revision: i64,
    ty: &str,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("insert into entity_change (revision, entity_type, entity_id) values ($1, $2, $3)")
        .bind(revision)
        .bind(ty)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn revision<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
) -> Result<u64, StoreError> {
    let revision: i64 = sqlx::query("select revision from store_revision where id = 1")
        .fetch_one(executor)
        .await?
        .get(0);
    Ok(revision.max(0) as u64)
}

/// Takes the write lock: a no-op update of the revision row.
pub(super) async fn lock_revision(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
) -> Result<(), StoreError> {
    sqlx::query("update store_revision set revision = revision where id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What the change log says happened after a revision.
#[derive(Debug)]
pub(super) struct ChangeLog {
    /// The current store revision.
    pub revision: u64,
    /// The entities changed after the asked revision, each with the
    /// revision that changed it.
    pub changes: Vec<(u64, EntityUid)>,
    /// Whether the log still holds every revision after the asked one.
    pub complete: bool,
    /// The oldest revision the log still holds.
    pub oldest: Option<u64>,
}

/// The changes after `since`, up to the current revision.
pub(super) async fn changes_since(pool: &AnyPool, since: u64) -> Result<ChangeLog, StoreError> {
    let current = revision(pool).await?;
    if current <= since {
        return Ok(ChangeLog {
            revision: current,
            changes: Vec::new(),
            complete: true,
            oldest: None,
        });
    }
    let rows = sqlx::query(
        "select revision, entity_type, entity_id from entity_change where revision > $1 and revision <= $2",
    )
    .bind(since as i64)
    .bind(current as i64)
    .fetch_all(pool)
    .await?;
    let changes = rows
        .into_iter()
        .filter_map(|r| {
            let revision: i64 = r.get(0);
            let ty: String = r.get(1);
            let id: String = r.get(2);
            let uid =
                EntityUid::from_type_name_and_id(ty.parse().ok()?, cedar_policy::EntityId::new(id));
            Some((revision.max(0) as u64, uid))
        })
        .collect();
    // Read after the changes: pruning only removes, so if the log still
    // reaches back to `since` now, it did when the changes were read.
    let oldest: Option<i64> = sqlx::query("select min(revision) from entity_change")
        .fetch_one(pool)
        .await?
        .get(0);
    let oldest = oldest.map(|o| o.max(0) as u64);
    Ok(ChangeLog {
        revision: current,
        changes,
        // Every revision records at least one change, so the revision
        // after `since` is in the log unless it was pruned.
        complete: oldest.is_some_and(|o| o <= since + 1),
        oldest,
    })
}
