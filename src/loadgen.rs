//! A bounded, open-loop HTTP load generator: a fixed rate for a fixed time. Requests are sent
//! on schedule whether or not earlier ones have answered (so a slow target shows up as latency,
//! not as a lower rate), up to a cap on requests in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

/// Requests allowed in flight by default before new ones are counted as dropped.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 512;
/// A request without an answer by then counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Latencies kept for the quantiles; beyond this a uniform sample of them is kept, so a long
/// run's memory stays bounded.
const MAX_LATENCY_SAMPLES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// An `http://` URI.
    pub uri: hyper::Uri,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub rps: u32,
    /// `None`: until stopped.
    pub duration: Option<Duration>,
    /// Requests in flight at most; beyond it, a scheduled request is dropped and counted.
    pub max_in_flight: u64,
}

impl LoadPlan {
    /// GETs of `path` on `target` at `rps`.
    pub fn get(target: SocketAddr, path: &str, rps: u32, duration: Option<Duration>) -> Self {
        LoadPlan {
            uri: format!("http://{target}{path}")
                .parse()
                .expect("a socket address and a path form a URI"),
            method: Method::GET,
            headers: Vec::new(),
            body: Bytes::new(),
            rps,
            duration,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub dropped: u64,
    pub elapsed: Duration,
    /// Latency of answered requests (all, or a uniform sample of long runs), in microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    /// The `q` quantile of latency in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize)
            .clamp(1, self.latencies_us.len());
        self.latencies_us[rank - 1] as f64 / 1000.0
    }

    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds == 0.0 {
            0.0
        } else {
            (self.ok + self.failed) as f64 / seconds
        }
    }
}

/// What the request tasks of one run share.
#[derive(Default)]
struct Tally {
    in_flight: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    answered: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

impl LoadReport {
    /// Fills in the elapsed time, the answers and the sorted latencies.
    fn finish(mut self, started: Instant, tally: &Tally) -> LoadReport {
        self.elapsed = started.elapsed();
        self.ok = tally.ok.load(Ordering::Relaxed);
        self.failed = tally.failed.load(Ordering::Relaxed);
        let mut latencies = std::mem::take(&mut *tally.latencies.lock());
        latencies.sort_unstable();
        self.latencies_us = latencies;
        self
    }
}

impl Tally {
    /// Keeps a uniform sample of latencies (reservoir sampling: every answer has the same
    /// chance to be kept).
    fn record(&self, micros: u64, success: bool) {
        let seen = self.answered.fetch_add(1, Ordering::Relaxed) as usize;
        let mut kept = self.latencies.lock();
        if kept.len() < MAX_LATENCY_SAMPLES {
            kept.push(micros);
        } else {
            let slot = rand::random_range(0..=seen);
            if slot < MAX_LATENCY_SAMPLES {
                kept[slot] = micros;
            }
        }
        drop(kept);
        if success { &self.ok } else { &self.failed }.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

type LoadClient = Client<HttpConnector, Full<Bytes>>;

/// One request of the plan; `true` when it was answered with a success status.
async fn send_one(client: &LoadClient, plan: &LoadPlan) -> bool {
    let mut request = hyper::Request::builder()
        .method(plan.method.clone())
        .uri(plan.uri.clone());
    for (name, value) in &plan.headers {
        request = request.header(name, value);
    }
    let Ok(request) = request.body(Full::new(plan.body.clone())) else {
        return false;
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status();
            let _ = response.into_body().collect().await;
            status.is_success()
        }
        _ => false,
    }
}

/// Closed loop, for a target's capacity: `connections` clients, each sending its next
/// request as soon as the last is answered, for `duration` (`plan.rps` is not used).
pub async fn saturate(plan: LoadPlan, connections: usize, duration: Duration) -> LoadReport {
    let plan = Arc::new(plan);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (plan, tally) = (plan.clone(), tally.clone());
        tasks.spawn(async move {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client: LoadClient = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build(connector);
            let mut sent = 0;
            while started.elapsed() < duration {
                let sent_at = Instant::now();
                let success = send_one(&client, &plan).await;
                tally.record(sent_at.elapsed().as_micros() as u64, success);
                sent += 1;
            }
            sent
        });
    }
    let mut report = LoadReport::default();
    while let Some(sent) = tasks.join_next().await {
        report.sent += sent.unwrap_or(0);
    }
    report.finish(started, &tally)
}

/// Sends `plan.rps` requests a second until the duration ends or `stop` turns true.
pub async fn run(plan: LoadPlan, mut stop: watch::Receiver<bool>) -> LoadReport {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: LoadClient = Client::builder(TokioExecutor::new()).build(connector);
    let plan = Arc::new(plan);
    let period = Duration::from_secs_f64(1.0 / f64::from(plan.rps.max(1)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let tally = Arc::new(Tally::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut report = LoadReport::default();
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let over = plan
            .duration
            .is_some_and(|limit| started.elapsed() >= limit);
        if over || *stop.borrow() {
            break;
        }
        if tally.in_flight.load(Ordering::Relaxed) >= plan.max_in_flight.max(1) {
            report.dropped += 1;
            continue;
        }
        report.sent += 1;
        tally.in_flight.fetch_add(1, Ordering::Relaxed);
        let (client, plan, tally) = (client.clone(), plan.clone(), tally.clone());
        tasks.spawn(async move {
            let sent_at = Instant::now();
            let success = send_one(&client, &plan).await;
            tally.record(sent_at.elapsed().as_micros() as u64, success);
        });
        // Reap finished tasks so the set stays small on long runs.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    report.finish(started, &tally)
}
