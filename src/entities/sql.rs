//! SQL of the entity store. Every write transaction bumps `store_revision`
//! once and records what it changed in `entity_change` under that revision.

use cedar_policy::EntityUid;
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
