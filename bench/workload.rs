//! The standard workload (`bench/workload/`) for the benches: generated
//! once per size into `target/bench-workload/<size>/` by its own generator.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One generated workload.
pub struct Workload {
    /// `entities.json`, `requests.jsonl`.
    pub dir: PathBuf,
    /// The workload directory (policies, schema, generator).
    pub source: PathBuf,
}

/// Generator parameters of a named size.
pub fn params(size: &str) -> &'static [&'static str] {
    match size {
        // ~1k entities
        "1k" => &[
            "--users",
            "100",
            "--orgs",
            "10",
            "--accounts",
            "800",
            "--generators",
            "50",
        ],
        // 13,038 entities: the default
        "13k" => &[],
        // 130,038 entities
        "130k" => &[
            "--users",
            "10000",
            "--orgs",
            "1000",
            "--accounts",
            "100000",
            "--generators",
            "5000",
        ],
        // 1,004,038 entities
        "1m" => &[
            "--users",
            "80000",
            "--orgs",
            "7700",
            "--accounts",
            "770000",
            "--generators",
            "38500",
        ],
        other => panic!("unknown workload size {other}"),
    }
}

/// Generates (or reuses) the workload of `size`.
pub fn generate(size: &str) -> Workload {
    let source = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/workload"));
    assert!(
        source.join("gen_workload.py").is_file(),
        "the standard workload is missing at {}",
        source.display()
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-workload")
        .join(size);
    if !dir.join("requests.jsonl").is_file() {
        let status = Command::new("python3")
            .arg(source.join("gen_workload.py"))
            .args(params(size))
            .arg("--out")
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("python3 runs gen_workload.py");
        assert!(status.success(), "gen_workload.py failed");
    }
    Workload { dir, source }
}

impl Workload {
    /// The workload's requests (canonical JSON lines).
    pub fn requests(&self, limit: usize) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("requests.jsonl"))
            .expect("requests.jsonl")
            .lines()
            .take(limit)
            .map(|l| serde_json::from_str(l).expect("a JSON request"))
            .collect()
    }
}
