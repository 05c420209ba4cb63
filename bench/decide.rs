//! In-process benches of the decision path on the standard workload.
//!
//! `cargo bench --bench decide` (sizes for the store-size group:
//! `CEDARGATE_BENCH_SIZES=1k,13k,130k,1m`, default all four).
//!
//! - `decide/*`: the engine's `decide` with the decision cache off, entity
//!   slices from the parsed-entity cache (warm) or from SQLite (cold);
//!   with the decision cache on; a batch of 100.
//! - `baseline/*`: plain `cedar-policy` `is_authorized` with the whole
//!   13k-entity store prebuilt in memory and the whole policy set: the
//!   in-process rate the sidecar is compared with.
//! - `policy_load/*`: load + strict validation of 30, 1,000, 10,000 policies.
//! - `store_size/*`: a cold-slice decision at 1k..1M stored entities.
//! - `search/*`: which of the workload's 10,000 accounts one user may view:
//!   by resource search, by a filter plan, and by 10,000 single decisions
//!   in one batch (the same answer asked the slow way; checked equal).
//!
//! `CEDARGATE_COLD_DRIVE=N` runs no criterion bench but a plain driver of
//! N cold decisions (entity caches emptied before each), for before/after
//! comparisons and callgrind (see [`cold_drive`]).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benches may panic")]

mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cedar_policy::{Authorizer, Entities, EntityUid, PolicySet, Request};
use cedargate::cli::PolicyArgs;
use cedargate::config::DatabaseUrl;
use cedargate::decisionlog::DecisionLog;
use cedargate::engine::{AuthzRequest, Engine, UidRef};
use cedargate::entities::EntityStore;
use cedargate::metrics::Metrics;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use serde::Deserialize as _;
use tokio::runtime::Runtime;

/// Distinct requests cycled through by the per-decision benches: as many as
/// the HTTP harness sends, so that both work on the same set.
const REQUESTS: usize = 20_000;
/// Entities per write when filling a store.
const CHUNK: usize = 20_000;

fn policy_args(w: &workload::Workload) -> PolicyArgs {
    PolicyArgs {
        policies: w.source.join("policies.cedar"),
        schema: w.source.join("schema.cedarschema.json"),
    }
}

/// An engine over a SQLite store holding the workload of `size` (filled
/// once and kept under `target/bench-workload/<size>/store.db`).
fn engine(rt: &Runtime, size: &str, decision_cache: u64) -> (Arc<Engine>, workload::Workload) {
    let w = workload::generate(size);
    let args = policy_args(&w);
    let snapshot = cedargate::policy::load(&args.policies, &args.schema)
        .unwrap_or_else(|e| panic!("{}", e.render()));
    let db = w.dir.join("store.db");
    let filled = w.dir.join("store.filled");
    let url: DatabaseUrl = format!("sqlite://{}", db.display()).parse().unwrap();
    let engine = rt.block_on(async {
        if !filled.is_file() {
            let _ = std::fs::remove_file(&db);
        }
        let pool = cedargate::db::connect(&url).await.unwrap();
        let store = Arc::new(EntityStore::new(
            pool,
            2_000_000,
            cedargate::entities::DEFAULT_CHANGE_LOG_KEEP,
        ));
        if !filled.is_file() {
            fill(&store, snapshot.schema(), &w.dir.join("entities.json")).await;
            std::fs::write(&filled, b"").unwrap();
        }
        Engine::new(
            args,
            snapshot,
            store,
            decision_cache,
            Duration::from_secs(600),
            Arc::new(Metrics::default()),
            DecisionLog::off(),
        )
        .unwrap()
    });
    (Arc::new(engine), w)
}

async fn fill(store: &EntityStore, schema: &cedar_policy::Schema, path: &Path) {
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for chunk in all.chunks(CHUNK) {
        store
            .upsert(schema, serde_json::Value::Array(chunk.to_vec()))
            .await
            .unwrap();
    }
}

fn authz_requests(w: &workload::Workload, n: usize) -> Vec<AuthzRequest> {
    w.requests(n)
        .into_iter()
        .map(|r| AuthzRequest {
            // Read as the HTTP API reads them.
            principal: UidRef::deserialize(&r["principal"]).unwrap(),
            action: UidRef::deserialize(&r["action"]).unwrap(),
            resource: UidRef::deserialize(&r["resource"]).unwrap(),
            context: r["context"].clone(),
            entities: Vec::new(),
            described_by: cedargate::engine::Describer::Caller,
            shape: cedargate::engine::Shape::Cedar,
        })
        .collect()
}

fn decide(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let (engine, w) = engine(&rt, "13k", 0);
    let requests = authz_requests(&w, REQUESTS);
    let mut group = c.benchmark_group("decide");
    group.measurement_time(Duration::from_secs(5));

    // Warm the parsed-entity cache once.
    rt.block_on(async {
        for r in &requests {
            engine.decide(r, "").await;
        }
    });
    let mut i = 0;
    group.bench_function("cache_off_warm_entities", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % requests.len();
            let r = &requests[i];
            let engine = &engine;
            async move { engine.decide(r, "").await }
        })
    });
    group.bench_function("cache_off_cold_entities", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % requests.len();
            engine.store().clear_cache();
            let r = &requests[i];
            let engine = &engine;
            async move { engine.decide(r, "").await }
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("batch_100_warm_entities", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 100) % (requests.len() - 100);
            let batch = &requests[i..i + 100];
            let engine = &engine;
            async move { engine.decide_batch(batch, "").await }
        })
    });
    group.finish();

    let (cached, _) = engine_with_cache(&rt);
    let mut group = c.benchmark_group("decide");
    group.bench_function("decision_cache_hit", |b| {
        let r = &requests[0];
        b.to_async(&rt).iter(|| {
            let cached = &cached;
            async move { cached.decide(r, "").await }
        })
    });
    group.finish();
}

fn search(c: &mut Criterion) {
    use cedargate::engine::{Search, Searched, Shape};
    let rt = Runtime::new().unwrap();
    let (engine, w) = engine(&rt, "13k", 0);
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(w.dir.join("entities.json")).unwrap())
            .unwrap();
    let accounts: Vec<String> = all
        .iter()
        .filter(|e| e["uid"]["type"] == "Account")
        .map(|e| e["uid"]["id"].as_str().unwrap().to_owned())
        .collect();
    // The user of the workload's first account view.
    let user = authz_requests(&w, REQUESTS)
        .into_iter()
        .find(|r| r.action == UidRef::parts("Action", "viewAccount"))
        .map(|r| r.principal)
        .unwrap();
    let request = |resource: serde_json::Value| AuthzRequest {
        principal: user.clone(),
        action: UidRef::parts("Action", "viewAccount"),
        resource: resource.into(),
        context: serde_json::json!({}),
        entities: Vec::new(),
        described_by: cedargate::engine::Describer::Caller,
        shape: Shape::Cedar,
    };
    let query = Search {
        request: request(serde_json::Value::Null),
        searched: Searched::Resource,
        kind: "Account".to_owned(),
        after: String::new(),
        limit: 10_000,
    };
    let batch: Vec<AuthzRequest> = accounts
        .iter()
        .map(|id| request(serde_json::json!({"type": "Account", "id": id})))
        .collect();
    // The same answer three ways, before anything is timed.
    let (found, decided, planned) = rt.block_on(async {
        let found = engine.search(&query).await.unwrap();
        let decided = engine.decide_batch(&batch, "").await;
        let planned = engine.plan(&query.request, "Account").await.unwrap();
        (found, decided, planned)
    });
    let mut allowed: Vec<String> = accounts
        .iter()
        .zip(&decided)
        .filter(|(_, d)| d.decision.allow)
        .map(|(id, _)| id.clone())
        .collect();
    allowed.sort();
    assert_eq!(found.ids, allowed, "search and batch decisions disagree");
    eprintln!(
        "search: {} of {} accounts allowed; plan: {}",
        allowed.len(),
        accounts.len(),
        serde_json::to_string(&planned.plan)
            .unwrap()
            .chars()
            .take(120)
            .collect::<String>()
    );

    let mut group = c.benchmark_group("search");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("resource_search_10k_accounts", |b| {
        b.to_async(&rt).iter(|| {
            let (engine, query) = (&engine, &query);
            async move { engine.search(query).await.unwrap() }
        })
    });
    group.bench_function("plan_accounts", |b| {
        b.to_async(&rt).iter(|| {
            let (engine, query) = (&engine, &query);
            async move { engine.plan(&query.request, "Account").await.unwrap() }
        })
    });
    group.bench_function("batch_decisions_10k_accounts", |b| {
        b.to_async(&rt).iter(|| {
            let (engine, batch) = (&engine, &batch);
            async move { engine.decide_batch(batch, "").await }
        })
    });
    group.finish();
}

fn engine_with_cache(rt: &Runtime) -> (Arc<Engine>, workload::Workload) {
    engine(rt, "13k", 100_000)
}

fn baseline(c: &mut Criterion) {
    let w = workload::generate("13k");
    let args = policy_args(&w);
    let snapshot = cedargate::policy::load(&args.policies, &args.schema).unwrap();
    let schema = snapshot.schema();
    let entities = Entities::from_json_str(
        &std::fs::read_to_string(w.dir.join("entities.json")).unwrap(),
        Some(schema),
    )
    .unwrap();
    let policies: PolicySet = std::fs::read_to_string(&args.policies)
        .unwrap()
        .parse()
        .unwrap();
    let requests: Vec<Request> = w
        .requests(REQUESTS)
        .into_iter()
        .map(|r| {
            let uid = |k: &str| EntityUid::from_json(r[k].clone()).unwrap();
            snapshot
                .request(
                    uid("principal"),
                    uid("action"),
                    uid("resource"),
                    &r["context"],
                )
                .unwrap()
        })
        .collect();
    let authorizer = Authorizer::new();
    let mut group = c.benchmark_group("baseline");
    group.measurement_time(Duration::from_secs(5));
    let mut i = 0;
    group.bench_function("cedar_whole_store_whole_policy_set", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            authorizer.is_authorized(&requests[i], &policies, &entities)
        })
    });
    group.bench_function("cedar_whole_store_narrowed_policy_set", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            snapshot.decide(&requests[i], &entities)
        })
    });
    group.finish();
}

/// Writes `n` policies (the workload's, repeated with fresh ids) into `dir`.
fn write_policies(source: &Path, dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(source.join("policies.cedar")).unwrap();
    let per_copy = text.matches("\n@id(\"").count();
    let mut out = String::new();
    let mut written = 0;
    let mut copy = 0;
    while written < n {
        // Policies start with `@id("…")` at the start of a line; the header
        // comment mentions the annotation too, mid-line.
        for chunk in text.split("\n@id(\"").skip(1) {
            if written == n {
                break;
            }
            out.push_str(&format!("\n@id(\"c{copy}-"));
            out.push_str(chunk);
            written += 1;
        }
        copy += 1;
    }
    assert!(per_copy > 0);
    let path = dir.join("policies.cedar");
    std::fs::write(&path, out).unwrap();
    path
}

fn policy_load(c: &mut Criterion) {
    let w = workload::generate("13k");
    let mut group = c.benchmark_group("policy_load");
    group.sample_size(10);
    for n in [30, 1_000, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let file = write_policies(&w.source, dir.path(), n);
        let schema = w.source.join("schema.cedarschema.json");
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| cedargate::policy::load(&file, &schema).unwrap())
        });
    }
    group.finish();
}

fn store_size(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let sizes =
        std::env::var("CEDARGATE_BENCH_SIZES").unwrap_or_else(|_| "1k,13k,130k,1m".to_owned());
    let mut group = c.benchmark_group("store_size");
    group.measurement_time(Duration::from_secs(5));
    for size in sizes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (engine, w) = engine(&rt, size, 0);
        let requests = authz_requests(&w, REQUESTS);
        let mut i = 0;
        group.bench_function(BenchmarkId::new("cold_slice_decision", size), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % requests.len();
                engine.store().clear_cache();
                let r = &requests[i];
                let engine = &engine;
                async move { engine.decide(r, "").await }
            })
        });
        rt.block_on(async {
            for r in &requests {
                engine.decide(r, "").await;
            }
        });
        group.bench_function(BenchmarkId::new("warm_slice_decision", size), |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % requests.len();
                let r = &requests[i];
                let engine = &engine;
                async move { engine.decide(r, "").await }
            })
        });
    }
    group.finish();
}

/// The plain driver: `CEDARGATE_COLD_DRIVE=N` cold decisions of the 13k
/// workload's requests, each after `clear_cache()`, on the SQLite store of
/// the other benches or on `CEDARGATE_COLD_DATABASE_URL` (an empty
/// database, filled first). Prints the latency distribution, how many
/// decisions allowed and a digest of every answer (two builds must agree),
/// and the statements slices
/// ran ([`EntityStore::slice_reads`]). Under callgrind, the
/// difference between two values of N gives instructions per decision.
fn cold_drive(n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let postgres = std::env::var("CEDARGATE_COLD_DATABASE_URL").ok();
    // Fills the SQLite store once.
    let (_, w) = engine(&rt, "13k", 0);
    let url = (postgres.clone())
        .unwrap_or_else(|| format!("sqlite://{}", w.dir.join("store.db").display()));
    let args = policy_args(&w);
    let snapshot = cedargate::policy::load(&args.policies, &args.schema).unwrap();
    let engine = rt.block_on(async {
        let pool = cedargate::db::connect(&url.parse().unwrap()).await.unwrap();
        // Under valgrind a round trip to SQLite's worker thread takes
        // milliseconds: the default 250 ms would deny on time.
        let store = EntityStore::new(
            pool,
            2_000_000,
            cedargate::entities::DEFAULT_CHANGE_LOG_KEEP,
        )
        .with_read_timeout(Duration::from_secs(600));
        if postgres.is_some() {
            fill(&store, snapshot.schema(), &w.dir.join("entities.json")).await;
        }
        Engine::new(
            args,
            snapshot,
            Arc::new(store),
            0,
            Duration::from_secs(600),
            Arc::new(Metrics::default()),
            DecisionLog::off(),
        )
        .unwrap()
    });
    let requests = authz_requests(&w, n.max(1));
    let (mut times, allowed, reads, answers) = rt.block_on(async {
        // One decision first: the store catches up with the fill, and
        // lazily built state is not what is measured.
        engine.decide(&requests[0], "").await;
        let reads = engine.store().slice_reads();
        let mut times = Vec::with_capacity(n);
        let mut allowed = 0;
        let mut answers = sha2::Sha256::default();
        for r in requests.iter().cycle().take(n) {
            engine.store().clear_cache();
            let start = std::time::Instant::now();
            let d = engine.decide(r, "").await;
            times.push(start.elapsed());
            allowed += usize::from(d.decision.allow);
            let line = serde_json::json!([d.decision.allow, d.decision.reasons, d.decision.errors]);
            sha2::Digest::update(&mut answers, format!("{line}\n"));
        }
        (
            times,
            allowed,
            engine.store().slice_reads() - reads,
            answers,
        )
    });
    let mean = times.iter().sum::<Duration>().as_secs_f64() * 1e6 / n.max(1) as f64;
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |t| t.as_secs_f64() * 1e6)
    };
    println!(
        "cold decisions: {n}, allowed: {allowed}, answers sha256 {:.12}, slice statements: {reads}, µs: p10 {:.1} median {:.1} p90 {:.1} p99 {:.1} mean {mean:.1}",
        format!("{:x}", sha2::Digest::finalize(answers)),
        at(0.1),
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

criterion_group!(benches, decide, baseline, policy_load, store_size, search);

fn main() {
    if let Some(n) = std::env::var("CEDARGATE_COLD_DRIVE")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        cold_drive(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
