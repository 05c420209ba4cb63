//! The decision log: one JSON line per (sampled) decision, to stdout or a
//! file. It records who asked what and the answer, never tokens. Context
//! values stay out (the context may carry host data) unless the operator
//! asks for whole requests (`--decision-log-requests`, what `cedargate
//! replay` needs), and then without the keys named for redaction.

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
    /// Log each request's context and request-scoped entities.
    requests: bool,
    /// Context keys (at any depth) dropped from logged requests.
    redact: Vec<String>,
}

/// What replaces a redacted context value.
pub const REDACTED: &str = "<redacted>";

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
    /// The request's context, its redacted keys replaced by
    /// [`REDACTED`] (only with `--decision-log-requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// The request-scoped entities (only with `--decision-log-requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<&'a [serde_json::Value]>,
    /// The context keys that were redacted.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub redacted: &'a [String],
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
            requests: false,
            redact: Vec::new(),
        })
    }

    /// Also logs each request's context (without the `redact` keys, at any
    /// depth) and request-scoped entities, so that `cedargate replay` can
    /// decide them again.
    pub fn with_requests(mut self, redact: Vec<String>) -> Self {
        self.requests = true;
        self.redact = redact;
        self
    }

    /// Whether requests are logged whole.
    pub fn logs_requests(&self) -> bool {
        self.requests
    }

    /// `context` as logged: each redacted key's value replaced, and the
    /// keys that were.
    pub fn redacted_context(
        &self,
        context: &serde_json::Value,
    ) -> (serde_json::Value, Vec<String>) {
        let mut context = context.clone();
        let mut hit = Vec::new();
        redact(&mut context, &self.redact, &mut hit);
        hit.sort();
        hit.dedup();
        (context, hit)
    }

    /// A log that writes nothing.
    pub fn off() -> Self {
        Self {
            sink: Sink::Off,
            sample: 0.0,
            requests: false,
            redact: Vec::new(),
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

fn redact(value: &mut serde_json::Value, keys: &[String], hit: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if keys.iter().any(|k| k == key) {
                    *v = serde_json::Value::String(REDACTED.to_owned());
                    hit.push(key.clone());
                } else {
                    redact(v, keys, hit);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact(v, keys, hit)),
        _ => {}
    }
}

/// What replaces a context value inside a logged error.
const WITHHELD: &str = "<withheld>";

/// `errors` with every value of `context` cut out: Cedar's messages quote
/// the values they refused (`invalid context: … "mfa": "yes-please"`), and
/// the context may carry host data the log must not hold.
pub fn withhold_context(errors: &[String], context: &serde_json::Value) -> Vec<String> {
    let mut values = Vec::new();
    collect_values(context, &mut values);
    // Longest first, so that a value containing another is cut whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    errors
        .iter()
        .map(|error| {
            values
                .iter()
                .fold(error.clone(), |e, v| e.replace(v.as_str(), WITHHELD))
        })
        .collect()
}

/// Every leaf of a context, as it can appear in a message: strings bare and
/// quoted, numbers, and each whole object or array as JSON.
fn collect_values(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => {
            out.push(s.clone());
            out.push(value.to_string());
        }
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(items) => {
            out.push(value.to_string());
            items.iter().for_each(|v| collect_values(v, out));
        }
        serde_json::Value::Object(map) => {
            if !map.is_empty() {
                out.push(value.to_string());
            }
            map.values().for_each(|v| collect_values(v, out));
        }
        _ => {}
    }
}

/// Lets one error message through per window and counts the repeats it
/// held back, so that a store failing every decision writes a line every
/// few seconds, not one per request.
#[derive(Debug)]
pub struct Throttle {
    window: std::time::Duration,
    seen: Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

/// Distinct messages remembered at most; past that the memory starts over.
const THROTTLE_KEYS: usize = 1024;

impl Throttle {
    /// One line per message per `window`.
    pub fn new(window: std::time::Duration) -> Self {
        Self {
            window,
            seen: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// `Some(held back since the last line)` when `message` may be logged
    /// at `now`, `None` when it is a repeat within the window.
    pub fn admit(&self, message: &str, now: std::time::Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((last, held)) = seen.get_mut(message) {
            if now.duration_since(*last) < self.window {
                *held += 1;
                return None;
            }
            let repeats = *held;
            *last = now;
            *held = 0;
            return Some(repeats);
        }
        if seen.len() >= THROTTLE_KEYS {
            seen.clear();
        }
        seen.insert(message.to_owned(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn context_values_are_cut_out_of_logged_errors() {
        let errors = vec![
            r#"invalid context: type mismatch: value `"hunter2"` for `mfa` (expected bool) in {"mfa":"hunter2","n":4711}"#.to_owned(),
        ];
        let out = withhold_context(&errors, &json!({"mfa": "hunter2", "n": 4711}));
        assert!(!out[0].contains("hunter2"), "{out:?}");
        assert!(!out[0].contains("4711"), "{out:?}");
        assert!(out[0].contains("`mfa`"), "the key stays: {out:?}");
    }

    #[test]
    fn redacted_keys_are_replaced_at_any_depth_and_named() {
        let log = DecisionLog::off().with_requests(vec!["ssn".to_owned(), "token".to_owned()]);
        let (context, hit) = log.redacted_context(
            &json!({"mfa": true, "ssn": "123-45", "device": {"token": "abc", "os": "ios"}}),
        );
        assert_eq!(
            context,
            json!({"mfa": true, "ssn": REDACTED, "device": {"token": REDACTED, "os": "ios"}})
        );
        assert_eq!(hit, vec!["ssn".to_owned(), "token".to_owned()]);
    }

    #[test]
    fn a_repeated_error_is_let_through_once_per_window_with_its_count() {
        let throttle = Throttle::new(std::time::Duration::from_secs(10));
        let start = std::time::Instant::now();
        let at = |s| start + std::time::Duration::from_secs(s);

        assert_eq!(throttle.admit("store down", at(0)), Some(0));
        assert_eq!(throttle.admit("store down", at(1)), None);
        assert_eq!(throttle.admit("store down", at(2)), None);
        assert_eq!(throttle.admit("other", at(2)), Some(0));
        assert_eq!(throttle.admit("store down", at(11)), Some(2));
    }
}
