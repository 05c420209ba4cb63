//! Unit tests of the entity store.

use super::*;
use serde_json::json;

fn repo_schema() -> Schema {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    crate::policy::load(&repo.join("policies"), &repo.join("schema"))
        .unwrap_or_else(|e| panic!("{}", e.render()))
        .schema()
        .clone()
}

fn org(id: &str, name: &str) -> serde_json::Value {
    json!({"uid": {"type": "Organization", "id": id},
           "attrs": {"tenant": id, "name": name, "requireMfa": false}, "parents": []})
}

/// Two stores on one SQLite file: two sidecars sharing a database.
async fn two_stores(dir: &std::path::Path) -> (EntityStore, EntityStore) {
    let url = format!("sqlite://{}", dir.join("store.db").display())
        .parse()
        .expect("a sqlite URL");
    let open = || async {
        let store = EntityStore::new(
            crate::db::connect(&url).await.expect("open"),
            100,
            DEFAULT_CHANGE_LOG_KEEP,
        );
        store.mark_synced().await.expect("revision");
        store
    };
    (open().await, open().await)
}

#[tokio::test]
async fn sync_does_not_apply_this_process_s_own_writes_a_second_time() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, _) = two_stores(dir.path()).await;
    store
        .upsert(
            &repo_schema(),
            json!([org("acme", "Acme"), org("globex", "Globex")]),
        )
        .await
        .expect("written");
    let epoch = store.epoch();

    let applied = store.sync().await.expect("synced");

    assert_eq!(applied, 0, "the write was applied when it was made");
    assert_eq!(store.epoch(), epoch, "the caches were emptied again");
}

#[tokio::test]
async fn sync_applies_another_process_s_writes_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (a, b) = two_stores(dir.path()).await;
    let schema = repo_schema();
    a.upsert(&schema, json!([org("acme", "Acme")]))
        .await
        .expect("written");
    b.upsert(&schema, json!([org("globex", "Globex")]))
        .await
        .expect("written");
    let epoch = b.epoch();

    let first = b.sync().await.expect("synced");
    let moved = b.epoch();
    let second = b.sync().await.expect("synced");

    assert_eq!(first, 1, "A's one entity, not B's own");
    assert!(moved > epoch, "B's caches dropped A's change");
    assert_eq!((second, b.epoch()), (0, moved), "applied once");
}

#[tokio::test]
async fn a_write_of_many_entities_is_one_store_revision() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, _) = two_stores(dir.path()).await;
    let before = sql::revision(store.pool()).await.expect("revision");

    store
        .upsert(
            &repo_schema(),
            json!([org("a", "A"), org("b", "B"), org("c", "C")]),
        )
        .await
        .expect("written");

    let after = sql::revision(store.pool()).await.expect("revision");
    assert_eq!(after, before + 1);
}

#[tokio::test]
async fn a_lone_writer_does_not_remember_every_revision_it_wrote() {
    // A sidecar alone on its database syncs each of its writes as it makes
    // them, so the change log never shows them to `sync`, and the set of
    // its own revisions must not keep one entry per write for ever.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, _) = two_stores(dir.path()).await;
    let schema = repo_schema();

    for i in 0..50 {
        store
            .upsert(&schema, json!([org(&format!("o{i}"), "O")]))
            .await
            .expect("written");
        store.sync().await.expect("synced");
    }

    let own = store
        .own
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    assert!(own <= 1, "{own} revisions kept after 50 writes");
}
