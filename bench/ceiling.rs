//! The HTTP ceiling: a minimal axum server that parses the same JSON bodies
//! as cedargate and answers a constant decision. Every HTTP figure of
//! cedargate is reported as a ratio of this server's on the same machine
//! in the same run. `cargo run --release --example ceiling -- 127.0.0.1:9000`

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};

/// CPU time to burn per request (`CEILING_WORK_US`, default 0): with work
/// comparable to a decision, the ceiling shows what HTTP costs per request
/// at a sidecar's lower rate, where the client is idle more often and each
/// response costs a wake-up.
static WORK: LazyLock<Duration> = LazyLock::new(|| {
    Duration::from_micros(
        std::env::var("CEILING_WORK_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
});

async fn decide(Json(body): Json<Value>) -> Json<Value> {
    let started = Instant::now();
    while started.elapsed() < *WORK {
        std::hint::spin_loop();
    }
    // Touch the body so parsing cannot be skipped.
    let allow = body.get("principal").is_some() || body.get("subject").is_some();
    Json(
        json!({"decision": allow, "reasons": [], "errors": [], "policy_revision": 1, "cached": false}),
    )
}

async fn decide_batch(Json(body): Json<Value>) -> Json<Value> {
    let n = body
        .get("evaluations")
        .or_else(|| body.get("requests"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let one = json!({"decision": true, "context": {}});
    Json(json!({"evaluations": vec![one; n]}))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".to_owned());
    let app = axum::Router::new()
        .route("/v1/is_authorized", post(decide))
        .route("/access/v1/evaluation", post(decide))
        .route("/access/v1/evaluations", post(decide_batch))
        .route("/v1/is_authorized/batch", post(decide_batch));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
