//! Load requests carried in a `rollout` webhook's metadata, and the runs they start.
//!
//! Metadata keys: `type: load` (default when `url` is set), `url` (http only), `rps` (default
//! 10), `duration` (default 1m), `concurrency` (requests in flight at most, default 64),
//! `method` (GET), `headers` (one `Name: value` per line), `body`, and `blocking: "true"` to
//! answer only when the run ends.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};

use crate::loadgen::{LoadPlan, LoadReport};

pub const MAX_RPS: u32 = 10_000;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
pub const MAX_CONCURRENCY: u64 = 2_000;
/// Finished runs kept for `/runs`.
const HISTORY: usize = 50;
/// Runs at once; more are refused, so no caller can pile up loads without bound.
pub const MAX_RUNNING: usize = 32;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    #[error("metadata.type {0:?}: the loadtester runs no commands; use type: load with url, rps and duration")]
    UnsupportedType(String),
    #[error("metadata.url is required for a load")]
    MissingUrl,
    #[error("metadata.{field} {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A load request read from webhook metadata.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub plan: LoadPlan,
    pub blocking: bool,
}

/// A whole number in `range`, or `default` when the key is absent.
fn bounded<N>(
    metadata: &BTreeMap<String, String>,
    key: &'static str,
    default: N,
    range: std::ops::RangeInclusive<N>,
) -> Result<N, LoadError>
where
    N: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let Some(text) = metadata.get(key) else {
        return Ok(default);
    };
    text.parse::<N>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                text,
                format!("must be {} to {}", range.start(), range.end()),
            )
        })
}

/// `headers`: one `Name: value` per line.
fn headers(
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, LoadError> {
    let Some(text) = metadata.get("headers") else {
        return Ok(Vec::new());
    };
    let mut headers = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("headers", line, "each line must be Name: value"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| invalid("headers", line, "bad header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| invalid("headers", line, "bad header value"))?;
        headers.push((name, value));
    }
    Ok(headers)
}

impl LoadRequest {
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Result<LoadRequest, LoadError> {
        match metadata.get("type").map(String::as_str) {
            None | Some("load") => {}
            Some(other) => return Err(LoadError::UnsupportedType(other.to_string())),
        }
        let url = metadata.get("url").ok_or(LoadError::MissingUrl)?;
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid("url", url, e.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(invalid("url", url, "must be an http:// URL with a host"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            // It would show on /runs; a credential belongs in `headers`, which never does.
            return Err(invalid(
                "url",
                "(hidden)",
                "must not carry credentials; use headers",
            ));
        }
        let rps = bounded(metadata, "rps", 10, 1..=MAX_RPS)?;
        let concurrency = bounded(metadata, "concurrency", 64, 1..=MAX_CONCURRENCY)?;
        let duration = match metadata.get("duration") {
            None => Duration::from_secs(60),
            Some(text) => crate::api::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero() && *d <= MAX_DURATION)
                .ok_or_else(|| {
                    invalid(
                        "duration",
                        text,
                        "must be a duration up to 1h, like 30s or 5m",
                    )
                })?,
        };
        let method = match metadata.get("method") {
            None => Method::GET,
            Some(text) => Method::from_bytes(text.to_ascii_uppercase().as_bytes())
                .map_err(|_| invalid("method", text, "is not an HTTP method"))?,
        };
        let body = metadata
            .get("body")
            .map(|b| Bytes::from(b.clone()))
            .unwrap_or_default();
        Ok(LoadRequest {
            plan: LoadPlan {
                uri,
                method,
                headers: headers(metadata)?,
                body,
                rps,
                duration: Some(duration),
                max_in_flight: concurrency,
            },
            blocking: metadata.get("blocking").is_some_and(|b| b == "true"),
        })
    }

    /// Two requests for the same canary with the same plan are one load. Header values and
    /// the body enter only as a digest: the key is shown on `/runs`, and a header may carry a
    /// token.
    pub fn key(&self, canary: &str) -> String {
        use sha2::Digest;
        let plan = &self.plan;
        let mut digest = sha2::Sha256::new();
        for (name, value) in &plan.headers {
            digest.update(name.as_str().as_bytes());
            digest.update(b"\0");
            digest.update(value.as_bytes());
            digest.update(b"\0");
        }
        digest.update(&plan.body);
        let hex: String = digest.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "{canary} {} {} rps={} for={:?} c={} content={hex}",
            plan.method, plan.uri, plan.rps, plan.duration, plan.max_in_flight,
        )
    }
}

/// One run, running or finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub key: String,
    pub canary: String,
    pub url: String,
    pub rps: u32,
    pub duration_seconds: f64,
    pub running: bool,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub dropped: u64,
    pub elapsed_seconds: f64,
    pub achieved_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl RunRecord {
    pub fn started(key: String, canary: &str, plan: &LoadPlan) -> RunRecord {
        RunRecord {
            key,
            canary: canary.to_string(),
            url: plan.uri.to_string(),
            rps: plan.rps,
            duration_seconds: plan.duration.unwrap_or_default().as_secs_f64(),
            running: true,
            sent: 0,
            ok: 0,
            failed: 0,
            dropped: 0,
            elapsed_seconds: 0.0,
            achieved_rps: 0.0,
            p50_ms: 0.0,
            p99_ms: 0.0,
        }
    }

    pub fn finish(&mut self, report: &LoadReport) {
        self.running = false;
        self.sent = report.sent;
        self.ok = report.ok;
        self.failed = report.failed;
        self.dropped = report.dropped;
        self.elapsed_seconds = report.elapsed.as_secs_f64();
        self.achieved_rps = report.throughput();
        self.p50_ms = report.latency_ms(0.5);
        self.p99_ms = report.latency_ms(0.99);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Started,
    Deduplicated,
    Full,
}

/// Runs by key: at most one per key at a time.
#[derive(Default)]
pub struct Runs {
    inner: Mutex<RunsInner>,
}

#[derive(Default)]
struct RunsInner {
    running: HashMap<String, RunRecord>,
    finished: VecDeque<RunRecord>,
}

impl Runs {
    /// Registers a run unless one with the same key is running (deduplicated) or too many
    /// are (full).
    pub fn start(&self, record: RunRecord) -> Start {
        let mut inner = self.inner.lock();
        if inner.running.contains_key(&record.key) {
            return Start::Deduplicated;
        }
        if inner.running.len() >= MAX_RUNNING {
            return Start::Full;
        }
        inner.running.insert(record.key.clone(), record);
        Start::Started
    }

    pub fn finish(&self, key: &str, report: &LoadReport) -> Option<RunRecord> {
        let mut inner = self.inner.lock();
        let mut record = inner.running.remove(key)?;
        record.finish(report);
        inner.finished.push_back(record.clone());
        while inner.finished.len() > HISTORY {
            inner.finished.pop_front();
        }
        Some(record)
    }

    pub fn running(&self) -> usize {
        self.inner.lock().running.len()
    }

    /// Running runs first, then finished ones, newest last.
    pub fn all(&self) -> Vec<RunRecord> {
        let inner = self.inner.lock();
        inner
            .running
            .values()
            .cloned()
            .chain(inner.finished.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_load_request_reads_every_knob() {
        let request = LoadRequest::from_metadata(&meta(&[
            ("url", "http://podinfo-canary.test:9898/api"),
            ("rps", "500"),
            ("duration", "30s"),
            ("concurrency", "32"),
            ("method", "post"),
            ("headers", "X-Test: 1\nContent-Type: application/json"),
            ("body", "{}"),
        ]))
        .unwrap();
        assert_eq!(request.plan.rps, 500);
        assert_eq!(request.plan.duration, Some(Duration::from_secs(30)));
        assert_eq!(request.plan.max_in_flight, 32);
        assert_eq!(request.plan.method, Method::POST);
        assert_eq!(request.plan.headers.len(), 2);
        assert!(!request.blocking);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let error = |pairs: &[(&str, &str)]| {
            LoadRequest::from_metadata(&meta(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(error(&[("type", "cmd"), ("cmd", "hey")]).contains("runs no commands"));
        assert!(error(&[("rps", "5")]).contains("metadata.url"));
        assert!(error(&[("url", "http://x/"), ("rps", "0")]).contains("metadata.rps"));
        assert!(error(&[("url", "http://x/"), ("duration", "2h")]).contains("metadata.duration"));
        assert!(error(&[("url", "https://x/")]).contains("metadata.url"));
    }

    #[test]
    fn a_running_load_is_not_started_twice() {
        let runs = Runs::default();
        let request = LoadRequest::from_metadata(&meta(&[("url", "http://127.0.0.1:1/")])).unwrap();
        let key = request.key("a.test");
        let start =
            |key: &str| runs.start(RunRecord::started(key.to_string(), "a.test", &request.plan));
        assert_eq!(start(&key), Start::Started);
        assert_eq!(start(&key), Start::Deduplicated);
        runs.finish(&key, &LoadReport::default());
        assert_eq!(start(&key), Start::Started);
        for other in 1..MAX_RUNNING {
            assert_eq!(start(&format!("{key}-{other}")), Start::Started);
        }
        assert_eq!(start("one too many"), Start::Full);
    }
}
