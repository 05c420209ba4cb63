//! The in-process baseline of the cache-off target: plain `cedar-policy`
//! `is_authorized` with the whole entity store prebuilt in memory and the
//! whole policy set, on the same requests the HTTP harness sends. Prints
//! one JSON line. `bench/load.py` runs it pinned to the server's CPU.
//!
//! `cargo run --release --example baseline -- <workload dir> <entities.json dir> <requests> <seconds>`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, Schema,
};
use serde_json::{Value, json};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut next = |what: &str| args.next().ok_or(format!("missing argument: {what}"));
    let workload = PathBuf::from(next("workload directory")?);
    let generated = PathBuf::from(next("generated directory")?);
    let limit: usize = next("request count")?.parse()?;
    let seconds: f64 = next("seconds")?.parse()?;

    let started = Instant::now();
    let schema = Schema::from_json_str(&std::fs::read_to_string(
        workload.join("schema.cedarschema.json"),
    )?)?;
    let policies: PolicySet = std::fs::read_to_string(workload.join("policies.cedar"))?.parse()?;
    let entities = Entities::from_json_str(
        &std::fs::read_to_string(generated.join("entities.json"))?,
        Some(&schema),
    )?;
    let requests = std::fs::read_to_string(generated.join("requests.jsonl"))?
        .lines()
        .take(limit)
        .map(|line| request(&schema, &serde_json::from_str(line)?))
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let load_s = started.elapsed().as_secs_f64();

    let authorizer = Authorizer::new();
    let budget = Duration::from_secs_f64(seconds);
    let (mut decisions, mut allowed) = (0u64, 0u64);
    let started = Instant::now();
    'run: loop {
        for r in &requests {
            let response = authorizer.is_authorized(r, &policies, &entities);
            allowed += u64::from(response.decision() == Decision::Allow);
            decisions += 1;
            // Checking the clock every request would add to what is measured.
            if decisions % 1024 == 0 && started.elapsed() >= budget {
                break 'run;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "decisions": decisions,
            "allowed": allowed,
            "seconds": elapsed,
            "rate": decisions as f64 / elapsed,
            "us_per_decision": elapsed * 1e6 / decisions as f64,
            "requests": requests.len(),
            "load_s": load_s,
        })
    );
    Ok(())
}

fn request(schema: &Schema, r: &Value) -> Result<Request, Box<dyn std::error::Error>> {
    let uid = |key: &str| EntityUid::from_json(r[key].clone()).map_err(Box::new);
    let action = uid("action")?;
    let context = Context::from_json_value(r["context"].clone(), Some((schema, &action)))?;
    Ok(Request::new(
        uid("principal")?,
        action,
        uid("resource")?,
        context,
        Some(schema),
    )?)
}
