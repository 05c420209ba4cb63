//! Cold slices: a slice the entity cache does not hold is read in one
//! database statement, whatever the depth of its hierarchy, and decides
//! exactly as the same slice from the cache (deep hierarchies, a cycle of
//! parents closed by two writes, missing parents and references,
//! request-described entities; with the policy analysis and without it).

use std::sync::Arc;
use std::time::Duration;

use cedargate::config::DatabaseUrl;
use cedargate::decisionlog::DecisionLog;
use cedargate::engine::{AuthzRequest, Describer, Engine, Shape, UidRef};
use cedargate::entities::{DEFAULT_CHANGE_LOG_KEEP, EntityStore};
use cedargate::metrics::Metrics;
use cedargate::policy::PolicyArgs;
use serde_json::{Value, json};

use crate::helpers::{Backend, fresh_postgres_database};

/// Groups nest, folders nest, a document's folder has a space, and a
/// space names the group that may read it: `resource.folder.space.team`
/// is two hops of references from the resource.
const SCHEMA: &str = r#"
entity Group in [Group];
entity User in [Group];
entity Settings { frozen: Bool };
entity Space { team: Group };
entity Folder in [Folder] { space: Space };
entity Doc in [Folder] { folder: Folder };
action "read" appliesTo { principal: [User, Group], resource: [Doc] };
"#;

/// Only `principal` and `resource` left of `in`: the analysed slice.
const ANALYSED: &str = r#"
@id("team-reads") permit (principal, action, resource) when { principal in resource.folder.space.team };
@id("archive") forbid (principal, action, resource in Folder::"archive");
@id("frozen") forbid (principal, action, resource) when { Settings::"global".frozen };
"#;

/// A reference left of `in`: the analysis gives up and every reference
/// and ancestor is loaded (but no literal: a full slice never held them).
const EVERYTHING: &str = r#"
@id("team-reads") permit (principal, action, resource) when { principal in resource.folder.space.team };
@id("archive") forbid (principal, action, resource) when { resource.folder in Folder::"archive" };
"#;

fn entity(kind: &str, id: &str, attrs: Value, parents: &[(&str, &str)]) -> Value {
    let parents: Vec<Value> = parents
        .iter()
        .map(|(t, i)| json!({"type": t, "id": i}))
        .collect();
    json!({"uid": {"type": kind, "id": id}, "attrs": attrs, "parents": parents})
}

fn reference(kind: &str, id: &str) -> Value {
    json!({"__entity": {"type": kind, "id": id}})
}

/// `prefix1` in `prefix2` in … in `prefix{depth}` (in `last`, if any).
fn chain(kind: &str, prefix: &str, depth: usize, last: Option<&str>) -> Vec<Value> {
    (1..=depth)
        .map(|i| {
            let next = format!("{prefix}{}", i + 1);
            let parent = if i < depth { Some(next.as_str()) } else { last };
            let parents: Vec<(&str, &str)> = parent.map(|p| (kind, p)).into_iter().collect();
            let attrs = match kind {
                "Folder" => json!({"space": reference("Space", "team-space")}),
                _ => json!({}),
            };
            entity(kind, &format!("{prefix}{i}"), attrs, &parents)
        })
        .collect()
}

/// The test's entities: ten-deep group and folder chains, a missing
/// parent, a dangling reference; the cycle is closed by a second write.
fn entities() -> Vec<Value> {
    let mut all = vec![
        entity("Settings", "global", json!({"frozen": false}), &[]),
        entity(
            "Space",
            "team-space",
            json!({"team": reference("Group", "g10")}),
            &[],
        ),
        entity(
            "Space",
            "other-space",
            json!({"team": reference("Group", "elsewhere")}),
            &[],
        ),
        entity("Group", "elsewhere", json!({}), &[]),
        entity(
            "Folder",
            "archive",
            json!({"space": reference("Space", "team-space")}),
            &[],
        ),
        entity(
            "Folder",
            "other",
            json!({"space": reference("Space", "other-space")}),
            &[],
        ),
        entity("User", "ann", json!({}), &[("Group", "g1")]),
        entity(
            "User",
            "ghost-member",
            json!({}),
            &[("Group", "ghost"), ("Group", "g1")],
        ),
        entity(
            "User",
            "looped",
            json!({}),
            &[("Group", "c1"), ("Group", "g1")],
        ),
        entity("User", "outsider", json!({}), &[("Group", "elsewhere")]),
        entity("Group", "c1", json!({}), &[("Group", "c2")]),
        entity("Group", "c2", json!({}), &[]),
        entity(
            "Doc",
            "deep",
            json!({"folder": reference("Folder", "fa1")}),
            &[("Folder", "fa1")],
        ),
        entity(
            "Doc",
            "archived",
            json!({"folder": reference("Folder", "fb1")}),
            &[("Folder", "fb1")],
        ),
        entity(
            "Doc",
            "other",
            json!({"folder": reference("Folder", "other")}),
            &[("Folder", "other")],
        ),
        entity(
            "Doc",
            "dangling",
            json!({"folder": reference("Folder", "gone")}),
            &[("Folder", "gone")],
        ),
    ];
    all.extend(chain("Group", "g", 10, None));
    all.extend(chain("Folder", "fa", 10, None));
    all.extend(chain("Folder", "fb", 10, Some("archive")));
    all
}

/// An engine without a decision cache over a fresh store of the test's
/// backend, holding [`entities`] with the cycle `c1 → c2 → c1` closed.
async fn engine(dir: &std::path::Path, policies: &str) -> (Engine, cedar_policy::Schema) {
    let args = PolicyArgs {
        policies: dir.join("slice.cedar"),
        schema: dir.join("slice.cedarschema"),
    };
    std::fs::write(&args.policies, policies).expect("the policies are written");
    std::fs::write(&args.schema, SCHEMA).expect("the schema is written");
    let snapshot = cedargate::policy::load(&args.policies, &args.schema)
        .unwrap_or_else(|e| panic!("{}", e.render()));
    let url: DatabaseUrl = match Backend::current() {
        Backend::Sqlite => format!("sqlite://{}", dir.join("slice.db").display())
            .parse()
            .expect("a sqlite URL"),
        Backend::Postgres => fresh_postgres_database().await,
    };
    let pool = cedargate::db::connect(&url).await.expect("the store opens");
    let store = EntityStore::new(pool, 10_000, DEFAULT_CHANGE_LOG_KEEP);
    store.mark_synced().await.expect("the revision is read");
    let schema = snapshot.schema().clone();
    let schema = &schema;
    store
        .upsert(schema, Value::Array(entities()))
        .await
        .expect("the entities are written");
    // Each batch is validated alone, so a second one can close a cycle.
    let closing = entity("Group", "c2", json!({}), &[("Group", "c1")]);
    store
        .upsert(schema, json!([closing]))
        .await
        .expect("the cycle is written");
    let engine = Engine::new(
        args,
        snapshot,
        Arc::new(store),
        0,
        Duration::from_secs(60),
        Arc::new(Metrics::default()),
        DecisionLog::off(),
    )
    .expect("the engine starts");
    (engine, schema.clone())
}

fn request(principal: (&str, &str), resource: (&str, &str), entities: Vec<Value>) -> AuthzRequest {
    AuthzRequest {
        principal: UidRef::parts(principal.0, principal.1),
        action: UidRef::parts("Action", "read"),
        resource: UidRef::parts(resource.0, resource.1),
        context: json!({}),
        entities,
        described_by: Describer::Caller,
        shape: Shape::Cedar,
    }
}

/// Every principal against every resource, and one resource the request
/// describes (a host-owned document under the archive chain).
fn requests() -> Vec<AuthzRequest> {
    let principals = [
        ("User", "ann"),
        ("User", "ghost-member"),
        ("User", "looped"),
        ("User", "outsider"),
        ("User", "nobody"),
        ("Group", "g1"),
        ("Group", "c1"),
    ];
    let resources = [
        ("Doc", "deep"),
        ("Doc", "archived"),
        ("Doc", "other"),
        ("Doc", "dangling"),
        ("Doc", "unstored"),
    ];
    let described = entity(
        "Doc",
        "described",
        json!({"folder": reference("Folder", "fa1")}),
        &[("Folder", "fb1")],
    );
    let mut all = Vec::new();
    for p in principals {
        for r in resources {
            all.push(request(p, r, Vec::new()));
        }
        all.push(request(p, ("Doc", "described"), vec![described.clone()]));
    }
    all
}

/// (allow, reasons, errors) of one decision.
type Outcome = (bool, Vec<String>, Vec<String>);

/// Decides `request` on a cold slice, then on the same slice from the
/// cache, and returns both outcomes with the statements each read took.
async fn cold_then_warm(engine: &Engine, request: &AuthzRequest) -> [(Outcome, u64); 2] {
    let store = engine.store();
    store.clear_cache();
    let mut out = Vec::with_capacity(2);
    for _ in 0..2 {
        let before = store.slice_reads();
        let d = engine.decide(request, "").await.decision;
        out.push(((d.allow, d.reasons, d.errors), store.slice_reads() - before));
    }
    let [cold, warm] = <[_; 2]>::try_from(out).expect("two decisions");
    [cold, warm]
}

async fn cold_and_warm_slices_decide_alike(policies: &str, full: bool) {
    // Arrange
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (engine, _) = engine(dir.path(), policies).await;

    for request in requests() {
        // Act
        let [(cold, cold_reads), (warm, warm_reads)] = cold_then_warm(&engine, &request).await;

        // Assert
        let which = format!("{} on {}", request.principal, request.resource);
        assert_eq!(cold, warm, "{which}: a cold slice decided otherwise");
        assert_eq!(
            cold_reads, 1,
            "{which}: a cold slice took {cold_reads} statements"
        );
        assert_eq!(warm_reads, 0, "{which}: a warm slice read the database");
    }
    // The cases the comparison covers are the intended ones.
    let decide = |p, r| {
        let engine = &engine;
        async move {
            engine.store().clear_cache();
            engine.decide(&request(p, r, Vec::new()), "").await.decision
        }
    };
    for p in [("User", "ann"), ("User", "ghost-member")] {
        let d = decide(p, ("Doc", "deep")).await;
        assert!(d.allow, "{p:?} reaches g10 through ten groups: {d:?}");
        assert!(!decide(p, ("Doc", "archived")).await.allow, "{p:?}");
    }
    // A full slice holds the cycle's groups, and Cedar's closure pass
    // refuses it; a closed principal only needs its ancestor set.
    let d = decide(("User", "looped"), ("Doc", "deep")).await;
    assert_eq!(d.allow, !full, "{d:?}");
    assert!(!decide(("User", "outsider"), ("Doc", "deep")).await.allow);
    let looped = decide(("Group", "c1"), ("Doc", "deep")).await;
    assert!(!looped.allow && !looped.errors.is_empty(), "{looped:?}");
    let dangling = decide(("User", "ann"), ("Doc", "dangling")).await;
    assert!(
        !dangling.allow && !dangling.errors.is_empty(),
        "{dangling:?}"
    );
}

on_both_backends!(a_cold_analysed_slice_is_one_statement_and_decides_like_a_warm_one);
async fn a_cold_analysed_slice_is_one_statement_and_decides_like_a_warm_one() {
    cold_and_warm_slices_decide_alike(ANALYSED, false).await;
}

on_both_backends!(a_cold_full_slice_is_one_statement_and_decides_like_a_warm_one);
async fn a_cold_full_slice_is_one_statement_and_decides_like_a_warm_one() {
    cold_and_warm_slices_decide_alike(EVERYTHING, true).await;
}

on_both_backends!(a_cold_slice_is_one_statement_whatever_the_depth_of_the_hierarchy);
async fn a_cold_slice_is_one_statement_whatever_the_depth_of_the_hierarchy() {
    // Arrange: principals at the bottom of chains of 1 to 40 groups, the
    // top one the team of the document's space.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (engine, schema) = engine(dir.path(), ANALYSED).await;
    for depth in [1, 10, 40] {
        let prefix = format!("d{depth}-");
        let mut written = chain("Group", &prefix, depth, Some("g10"));
        written.push(entity(
            "User",
            &format!("at-{depth}"),
            json!({}),
            &[("Group", &format!("{prefix}1"))],
        ));
        engine
            .store()
            .upsert(&schema, Value::Array(written))
            .await
            .expect("the chain is written");

        // Act
        let user = format!("at-{depth}");
        let [(cold, reads), (warm, _)] = cold_then_warm(
            &engine,
            &request(("User", &user), ("Doc", "deep"), Vec::new()),
        )
        .await;

        // Assert
        assert!(cold.0, "{depth} groups deep: {cold:?}");
        assert_eq!(cold, warm);
        assert_eq!(reads, 1, "{depth} groups deep: {reads} statements");
    }
}

/// A slice's entities as JSON, parents sorted (their order is a set's).
fn contents(slice: &cedar_policy::Entities) -> Vec<String> {
    let mut all: Vec<String> = slice
        .iter()
        .map(|e| {
            let mut json = e.to_json_value().expect("an entity as JSON");
            if let Some(Value::Array(parents)) = json.get_mut("parents") {
                parents.sort_by_key(Value::to_string);
            }
            json.to_string()
        })
        .collect();
    all.sort();
    all
}

on_both_backends!(a_slice_read_inside_a_snapshot_is_one_statement_and_holds_what_a_cold_read_holds);
async fn a_slice_read_inside_a_snapshot_is_one_statement_and_holds_what_a_cold_read_holds() {
    // Arrange: the reader a decision falls back to once the store kept
    // moving (attempt 4 and later: one read transaction, no cache).
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (engine, schema) = engine(dir.path(), ANALYSED).await;
    let store = engine.store();
    let names = cedargate::policy::type_names(&schema);
    let schema = cedargate::entities::SchemaRef {
        schema: &schema,
        digest: [7; 32],
        names: &names,
    };
    let follow: std::collections::HashSet<cedar_policy::EntityTypeName> =
        ["Doc", "Folder", "Space", "Settings"]
            .iter()
            .map(|t| t.parse().expect("a type name"))
            .collect();
    let literals = ["Settings::\"global\"".parse().expect("a uid")];
    let plans = [
        cedargate::entities::Plan::Analysed {
            id: 1,
            follow: &follow,
            literals: &literals,
        },
        cedargate::entities::Plan::Everything,
    ];
    let uid = |s: &str| -> cedar_policy::EntityUid { s.parse().expect("a uid") };
    let cases = [
        (uid("User::\"ann\""), uid("Doc::\"deep\"")),
        (uid("User::\"looped\""), uid("Doc::\"archived\"")),
        (uid("User::\"nobody\""), uid("Doc::\"dangling\"")),
    ];
    for plan in plans {
        for (principal, resource) in &cases {
            let wanted = cedargate::entities::Wanted {
                roots: [principal, resource],
                action: &[],
                extra: &[],
                supplied: None,
                plan,
            };

            // Act
            store.clear_cache();
            let before = store.slice_reads();
            let cold = store.reader(schema, 0).await.expect("a reader");
            let cold = cold.slice(wanted).await;
            let cold_reads = store.slice_reads() - before;
            let snapshot = store.reader(schema, 4).await.expect("a snapshot reader");
            let before = store.slice_reads();
            let inside = snapshot.slice(wanted).await;
            let inside_reads = store.slice_reads() - before;

            // Assert
            let which = format!("{principal} on {resource} ({plan:?})");
            match (cold, inside) {
                (Ok(cold), Ok(inside)) => {
                    assert_eq!(contents(&cold), contents(&inside), "{which}");
                }
                // The cycle: refused both ways (a full slice holds it).
                (Err(cold), Err(inside)) => {
                    assert_eq!(cold.to_string(), inside.to_string(), "{which}");
                }
                (cold, inside) => panic!("{which}: {cold:?} but inside a snapshot {inside:?}"),
            }
            assert_eq!((cold_reads, inside_reads), (1, 1), "{which}");
        }
    }
}
