//! Proxy telemetry in the exact shapes Istio's sidecars and Linkerd's proxies export, for
//! workloads whose health a test sets: served on a local /metrics for a real Prometheus to
//! scrape. Every workload appears in both shapes, so one exporter serves tests of either mesh.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 8] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// How a workload currently answers.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    pub requests_per_second: f64,
    pub error_ratio: f64,
    /// Every request's time when `latency_sigma` is 0; else the median of log-normal times.
    pub latency_ms: f64,
    pub latency_sigma: f64,
}

impl Health {
    pub const GOOD: Health = Health {
        requests_per_second: 20.0,
        error_ratio: 0.0,
        latency_ms: 8.0,
        latency_sigma: 0.0,
    };
    pub const FAILING: Health = Health {
        requests_per_second: 20.0,
        error_ratio: 0.5,
        latency_ms: 8.0,
        latency_sigma: 0.0,
    };

    /// The share of requests at most `bound` milliseconds.
    fn share_within(&self, bound: f64) -> f64 {
        if self.latency_sigma <= 0.0 {
            return if self.latency_ms <= bound { 1.0 } else { 0.0 };
        }
        aviary::judge::stats::normal_cdf((bound / self.latency_ms).ln() / self.latency_sigma)
    }
}

#[derive(Default)]
struct Counters {
    ok: f64,
    errors: f64,
    buckets: [f64; BUCKETS.len()],
    count: f64,
    sum: f64,
}

#[derive(Default)]
struct State {
    health: BTreeMap<(String, String), Health>,
    counters: BTreeMap<(String, String), Counters>,
}

#[derive(Clone, Default)]
pub struct ProxyTelemetry {
    state: Arc<Mutex<State>>,
}

impl ProxyTelemetry {
    /// One exporter and one Prometheus scraping it, shared by every test of the binary. They run
    /// on a thread of their own because each test has its own runtime.
    pub fn shared() -> &'static (ProxyTelemetry, String) {
        static SHARED: std::sync::OnceLock<(ProxyTelemetry, String)> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            let telemetry = ProxyTelemetry::default();
            let served = telemetry.clone();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let served = served.clone();
                    async move { served.render() }
                }),
            );
            let address = super::serve_on_own_thread(app);
            let ticking = telemetry.clone();
            // A plain thread of its own ticks the counters: no runtime thread to block.
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || {
                let period = Duration::from_millis(100);
                loop {
                    std::thread::sleep(period);
                    ticking.tick(period.as_secs_f64());
                }
            });
            let prometheus = super::prometheus(&[address]);
            wait_until_scraped(&prometheus);
            (telemetry, prometheus)
        })
    }

    pub fn set(&self, namespace: &str, workload: &str, health: Health) {
        let mut state = self.state.lock();
        state
            .health
            .insert((namespace.into(), workload.into()), health);
    }

    fn tick(&self, seconds: f64) {
        let mut state = self.state.lock();
        let health = state.health.clone();
        for (key, health) in health {
            let counters = state.counters.entry(key).or_default();
            let requests = health.requests_per_second * seconds;
            counters.errors += requests * health.error_ratio;
            counters.ok += requests * (1.0 - health.error_ratio);
            counters.count += requests;
            counters.sum += requests * health.latency_ms;
            for (bound, bucket) in BUCKETS.iter().zip(counters.buckets.iter_mut()) {
                *bucket += requests * health.share_within(*bound);
            }
        }
    }

    fn render(&self) -> String {
        let state = self.state.lock();
        let mut out = String::from("# TYPE istio_requests_total counter\n");
        for ((namespace, workload), c) in &state.counters {
            let labels = format!("reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_workload=\"{workload}\",destination_service=\"{workload}.{namespace}.svc.cluster.local\"");
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
        for ((namespace, workload), c) in &state.counters {
            let labels = format!("reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_workload=\"{workload}\"");
            for (bound, count) in BUCKETS.iter().zip(c.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "istio_request_duration_milliseconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    count.floor()
                );
            }
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_bucket{{{labels},le=\"+Inf\"}} {}",
                c.count.floor()
            );
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_sum{{{labels}}} {}",
                c.sum
            );
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_count{{{labels}}} {}",
                c.count.floor()
            );
        }
        self.render_linkerd(&state, &mut out);
        self.render_application(&state, &mut out);
        self.render_kuma(&state, &mut out);
        self.render_knative(&state, &mut out);
        out
    }

    /// Knative's queue-proxy histogram of request durations in seconds, by Revision and HTTP
    /// status, with its OpenTelemetry attributes as Prometheus labels: the workload is a
    /// Revision's name.
    fn render_knative(&self, state: &State, out: &mut String) {
        let metric = "kn_serving_invocation_duration_seconds";
        let _ = writeln!(out, "# TYPE {metric} histogram");
        for ((namespace, revision), c) in &state.counters {
            let total = c.count.max(1.0);
            for (status, share) in [("200", c.ok / total), ("503", c.errors / total)] {
                let labels = format!("k8s_namespace_name=\"{namespace}\",kn_revision_name=\"{revision}\",http_response_status_code=\"{status}\"");
                for (bound, count) in BUCKETS.iter().zip(c.buckets.iter()) {
                    let seconds = *bound / 1000.0;
                    let value = (count * share).floor();
                    let _ = writeln!(out, "{metric}_bucket{{{labels},le=\"{seconds}\"}} {value}");
                }
                let count = (c.count * share).floor();
                let _ = writeln!(out, "{metric}_bucket{{{labels},le=\"+Inf\"}} {count}");
                let _ = writeln!(out, "{metric}_sum{{{labels}}} {}", c.sum * share / 1000.0);
                let _ = writeln!(out, "{metric}_count{{{labels}}} {count}");
            }
        }
    }

    /// Kuma's callers' Envoy statistics: per outbound cluster, which Kuma names after the
    /// destination's Kuma service. Workload `w` is served behind `w-canary` (the canary) or,
    /// when it is `w-primary`, behind itself; port 9898.
    fn render_kuma(&self, state: &State, out: &mut String) {
        out.push_str("# TYPE envoy_cluster_upstream_rq counter\n");
        let cluster = |namespace: &str, workload: &str| {
            let service = if workload.ends_with("-primary") {
                workload.to_string()
            } else {
                format!("{workload}-canary")
            };
            format!("envoy_cluster_name=\"{service}_{namespace}_svc_9898\"")
        };
        for ((namespace, workload), c) in &state.counters {
            let labels = cluster(namespace, workload);
            for (code, value) in [("200", c.ok), ("503", c.errors)] {
                let _ = writeln!(
                    out,
                    "envoy_cluster_upstream_rq{{{labels},envoy_response_code=\"{code}\"}} {}",
                    value.floor()
                );
            }
        }
        out.push_str("# TYPE envoy_cluster_upstream_rq_time histogram\n");
        for ((namespace, workload), c) in &state.counters {
            let labels = cluster(namespace, workload);
            for (bound, count) in BUCKETS.iter().zip(c.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "envoy_cluster_upstream_rq_time_bucket{{{labels},le=\"{bound}\"}} {}",
                    count.floor()
                );
            }
            let count = c.count.floor();
            let _ = writeln!(
                out,
                "envoy_cluster_upstream_rq_time_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "envoy_cluster_upstream_rq_time_sum{{{labels}}} {}",
                c.sum
            );
            let _ = writeln!(
                out,
                "envoy_cluster_upstream_rq_time_count{{{labels}}} {count}"
            );
        }
    }

    /// An application's own Prometheus client histogram (`http_request_duration_seconds`, by
    /// HTTP status), as Prometheus's pod discovery labels it: what the `kubernetes` provider reads.
    fn render_application(&self, state: &State, out: &mut String) {
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for ((namespace, workload), c) in &state.counters {
            let pod = format!("kubernetes_namespace=\"{namespace}\",kubernetes_pod_name=\"{workload}-7d4b9c-x2x9q\"");
            let total = c.count.max(1.0);
            for (status, share) in [("200", c.ok / total), ("503", c.errors / total)] {
                let labels = format!("{pod},status=\"{status}\"");
                for (bound, count) in BUCKETS.iter().zip(c.buckets.iter()) {
                    let seconds = *bound / 1000.0;
                    let value = (count * share).floor();
                    let _ = writeln!(
                        out,
                        "http_request_duration_seconds_bucket{{{labels},le=\"{seconds}\"}} {value}"
                    );
                }
                let count = (c.count * share).floor();
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_sum{{{labels}}} {}",
                    c.sum * share / 1000.0
                );
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_count{{{labels}}} {count}"
                );
            }
        }
    }

    /// Linkerd's inbound proxy metrics: `response_total` classified success or failure, and
    /// `response_latency_ms` buckets, labelled with the pod's namespace and Deployment.
    fn render_linkerd(&self, state: &State, out: &mut String) {
        out.push_str("# TYPE response_total counter\n");
        for ((namespace, workload), c) in &state.counters {
            let labels = format!("direction=\"inbound\",namespace=\"{namespace}\",deployment=\"{workload}\",pod=\"{workload}-7d4b9c-x2x9q\",tls=\"true\"");
            let _ = writeln!(
                out,
                "response_total{{{labels},classification=\"success\",status_code=\"200\"}} {}",
                c.ok.floor()
            );
            let _ = writeln!(
                out,
                "response_total{{{labels},classification=\"failure\",status_code=\"503\"}} {}",
                c.errors.floor()
            );
        }
        out.push_str("# TYPE response_latency_ms histogram\n");
        for ((namespace, workload), c) in &state.counters {
            let labels = format!("direction=\"inbound\",namespace=\"{namespace}\",deployment=\"{workload}\",pod=\"{workload}-7d4b9c-x2x9q\"");
            for (bound, count) in BUCKETS.iter().zip(c.buckets.iter()) {
                let _ = writeln!(
                    out,
                    "response_latency_ms_bucket{{{labels},le=\"{bound}\"}} {}",
                    count.floor()
                );
            }
            let _ = writeln!(
                out,
                "response_latency_ms_bucket{{{labels},le=\"+Inf\"}} {}",
                c.count.floor()
            );
            let _ = writeln!(out, "response_latency_ms_sum{{{labels}}} {}", c.sum);
            let _ = writeln!(
                out,
                "response_latency_ms_count{{{labels}}} {}",
                c.count.floor()
            );
        }
    }
}

/// Prometheus applies new targets only every few seconds; checks before the first scrape would
/// see no data, so wait until the exporter is up in Prometheus's own eyes.
fn wait_until_scraped(prometheus: &str) {
    let url = prometheus.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client =
                aviary::metrics::prometheus::PrometheusClient::new(&url, Duration::from_secs(2));
            for _ in 0..300 {
                if client.query_number("sum(up)", "exporter", 1).await == Ok(1.0) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("Prometheus at {url} never scraped the telemetry exporter");
        })
    })
    .join()
    .expect("Prometheus scrapes the exporter");
}
