//! The decision log: one JSON line per (sampled) decision, to stdout or a
//! file. It records who asked what and the answer, never tokens or context
//! values (the context may carry host data; only its keys are logged).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

/// Where decisions go.
#[derive(Debug)]
enum Sink {
    Off,
    Stdout,
    File(Mutex<BufWriter<File>>),
}

/// The decision log and its sampling rate.
#[derive(Debug)]
pub struct DecisionLog {
    sink: Sink,
    sample: f64,
}

/// One logged decision.
#[derive(Debug, Serialize)]
pub struct DecisionRecord<'a> {
    /// The request id (`X-Request-ID`).
    pub request_id: &'a str,
    /// Unix time in milliseconds.
    pub time_ms: u128,
    /// The principal, action and resource as Cedar uids.
    pub principal: &'a str,
    /// The action.
    pub action: &'a str,
    /// The resource.
    pub resource: &'a str,
    /// `allow` or `deny`.
    pub decision: &'a str,
    /// The determining policy ids.
    pub reasons: &'a [String],
    /// Errors that forced a Deny.
    pub errors: &'a [String],
    /// The policy revision that decided.
    pub policy_revision: u64,
    /// Time to decide, in microseconds.
    pub latency_us: u128,
    /// Served from the decision cache.
    pub cached: bool,
}

impl DecisionLog {
    /// `spec` is `off`, `stdout` or a file path; `sample` in `[0, 1]`.
    pub fn open(spec: &str, sample: f64) -> std::io::Result<Self> {
        let sink = match spec {
            "off" | "" => Sink::Off,
            "stdout" => Sink::Stdout,
            path => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(PathBuf::from(path))?;
                Sink::File(Mutex::new(BufWriter::new(file)))
            }
        };
        Ok(Self {
            sink,
            sample: sample.clamp(0.0, 1.0),
        })
    }

    /// A log that writes nothing.
    pub fn off() -> Self {
        Self {
            sink: Sink::Off,
            sample: 0.0,
        }
    }

    /// `true` when this decision should be written (sampling applied).
    pub fn wants(&self) -> bool {
        !matches!(self.sink, Sink::Off)
            && (self.sample >= 1.0 || rand::random::<f64>() < self.sample)
    }

    /// Writes one record (call only when [`DecisionLog::wants`] said so).
    pub fn write(&self, record: &DecisionRecord<'_>) {
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        let result = match &self.sink {
            Sink::Off => Ok(()),
            Sink::Stdout => std::io::stdout().lock().write_all(&line),
            Sink::File(file) => match file.lock() {
                // Flushed per line so that a crash loses at most one record.
                Ok(mut file) => file.write_all(&line).and_then(|_| file.flush()),
                Err(_) => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the decision log");
        }
    }
}
