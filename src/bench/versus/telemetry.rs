//! Known Istio proxy telemetry for the benchmark's workloads, and a real Prometheus scraping
//! it, so both controllers' built-in checks read the same numbers through the same queries.
//!
//! Counters grow from each workload's set rates as time passes; a change of health takes
//! effect from that moment, so `rate()` over the checks' window moves as it would on a mesh.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::bench::{start_error, BenchError};

/// Istio's default latency buckets up to 1 s; the healthy latency sits inside the third.
const BUCKETS: [f64; 6] = [10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];
const REQUESTS_PER_SECOND: f64 = 10.0;
const LATENCY_MS: f64 = 40.0;

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    ok: f64,
    errors: f64,
}

#[derive(Debug, Clone, Copy)]
struct Workload {
    /// Counts up to `since`, and the error share after it.
    counted: Counters,
    since: Instant,
    error_share: f64,
}

impl Workload {
    fn now(&self, at: Instant) -> Counters {
        let requests = REQUESTS_PER_SECOND * at.duration_since(self.since).as_secs_f64();
        Counters {
            ok: self.counted.ok + requests * (1.0 - self.error_share),
            errors: self.counted.errors + requests * self.error_share,
        }
    }
}

/// The exporter's state: (namespace, workload) → counters.
#[derive(Clone, Default)]
pub struct Telemetry {
    workloads: Arc<Mutex<BTreeMap<(String, String), Workload>>>,
}

impl Telemetry {
    /// From now on, `workload` in `namespace` answers with this share of 5xx.
    pub fn set(&self, namespace: &str, workload: &str, error_share: f64) {
        let at = Instant::now();
        let mut workloads = self.workloads.lock();
        let key = (namespace.to_string(), workload.to_string());
        let counted = workloads.get(&key).map(|w| w.now(at)).unwrap_or_default();
        workloads.insert(
            key,
            Workload {
                counted,
                since: at,
                error_share,
            },
        );
    }

    fn render(&self) -> String {
        let at = Instant::now();
        let workloads = self.workloads.lock();
        let mut out = String::from("# TYPE istio_requests_total counter\n");
        for ((namespace, name), workload) in workloads.iter() {
            let c = workload.now(at);
            let labels = labels(namespace, name);
            let _ = writeln!(
                out,
                "istio_requests_total{{{labels},response_code=\"200\"}} {}",
                c.ok.floor()
            );
            let _ = writeln!(
                out,
                "istio_requests_total{{{labels},response_code=\"503\"}} {}",
                c.errors.floor()
            );
        }
        out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
        for ((namespace, name), workload) in workloads.iter() {
            let c = workload.now(at);
            let total = (c.ok + c.errors).floor();
            let labels = labels(namespace, name);
            for bound in BUCKETS {
                let within = if bound >= LATENCY_MS { total } else { 0.0 };
                let _ = writeln!(out, "istio_request_duration_milliseconds_bucket{{{labels},le=\"{bound}\"}} {within}");
            }
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_bucket{{{labels},le=\"+Inf\"}} {total}"
            );
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_sum{{{labels}}} {}",
                total * LATENCY_MS
            );
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_count{{{labels}}} {total}"
            );
        }
        out
    }

    /// Serves the exposition on a loopback port.
    pub async fn serve(&self) -> Result<SocketAddr, BenchError> {
        let served = self.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let served = served.clone();
                async move { served.render() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(start_error("the telemetry exporter"))?;
        let address = listener
            .local_addr()
            .map_err(start_error("the telemetry exporter"))?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(address)
    }
}

/// Labels Istio's sidecar puts on the server side of a request.
fn labels(namespace: &str, workload: &str) -> String {
    format!(
        "reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_workload=\"{workload}\",destination_service=\"{workload}.{namespace}.svc.cluster.local\""
    )
}

/// A Prometheus process scraping `target` every `scrape`; killed when dropped.
pub struct Prometheus {
    _child: tokio::process::Child,
    pub url: String,
    _dir: TempDir,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Prometheus {
    /// Starts Debian's Prometheus (or `AVIARY_PROMETHEUS_BIN`) and waits until it has scraped.
    pub async fn start(target: SocketAddr, scrape: Duration) -> Result<Prometheus, BenchError> {
        let dir =
            std::env::temp_dir().join(format!("aviary-bench-prometheus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(start_error("Prometheus"))?;
        let dir = TempDir(dir);
        let config = format!(
            "global: {{ scrape_interval: {}s, evaluation_interval: {}s }}\nscrape_configs:\n  - job_name: mesh\n    static_configs: [ {{ targets: ['{target}'] }} ]\n",
            scrape.as_secs().max(1),
            scrape.as_secs().max(1)
        );
        let config_path = dir.0.join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(start_error("Prometheus"))?;
        let port = crate::bench::free_loopback_port("Prometheus")?;
        let binary = std::env::var("AVIARY_PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
        let child = tokio::process::Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Start {
                what: "Prometheus",
                reason: format!(
                    "{binary}: {e} (set AVIARY_PROMETHEUS_BIN, or run under tests/env/testenv)"
                ),
            })?;
        let prometheus = Prometheus {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        prometheus.wait_scraped().await?;
        Ok(prometheus)
    }

    /// Until Prometheus has scraped the exporter (which has no workload yet).
    async fn wait_scraped(&self) -> Result<(), BenchError> {
        let http = reqwest::Client::new();
        let query = format!(
            "{}/api/v1/query?query=up%7Bjob%3D%22mesh%22%7D%3D%3D1",
            self.url
        );
        super::super::controller::wait_for(
            "Prometheus scraping the telemetry",
            Duration::from_secs(60),
            async || {
                let Ok(response) = http.get(&query).send().await else {
                    return Ok(false);
                };
                let body = response.text().await.unwrap_or_default();
                Ok(body.contains("\"result\":[{"))
            },
        )
        .await
    }
}
