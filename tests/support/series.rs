//! Series with exactly known rates, for tests that assert the value a query computes. Each
//! counter is `rate × seconds since start`, computed when Prometheus scrapes, so `rate()` of
//! any counter is its rate and ratios of rates are exact: a success rate or a histogram
//! quantile has one right answer.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

/// One counter: its full name with labels (`name{a="b"}`) and its increase per second.
#[derive(Debug, Clone)]
pub struct Counter {
    pub series: String,
    pub per_second: f64,
}

#[derive(Clone)]
pub struct KnownSeries {
    counters: Arc<Mutex<Vec<Counter>>>,
    started: Instant,
}

impl KnownSeries {
    /// Serves `/metrics` on loopback from a thread of its own; returns the exporter and its
    /// `host:port`.
    pub fn serve(counters: Vec<Counter>) -> (KnownSeries, String) {
        let series = KnownSeries {
            counters: Arc::new(Mutex::new(counters)),
            started: Instant::now(),
        };
        let serving = series.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let serving = serving.clone();
                async move { serving.render() }
            }),
        );
        let address = super::serve_on_own_thread(app);
        (series, address)
    }

    /// Adds counters (a new workload) while serving.
    pub fn add(&self, more: Vec<Counter>) {
        self.counters.lock().extend(more);
    }

    fn render(&self) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        self.counters
            .lock()
            .iter()
            .map(|c| format!("{} {}\n", c.series, c.per_second * seconds))
            .collect()
    }
}

/// Histogram buckets (cumulative) with every request between `low` and `high` ms: the quantile
/// q of such a histogram is `low + (high - low) × q` by Prometheus's linear interpolation.
pub fn histogram(name: &str, labels: &str, per_second: f64, low: f64, high: f64) -> Vec<Counter> {
    let mut out = Vec::new();
    for bound in [low, high] {
        let value = if bound == low { 0.0 } else { per_second };
        out.push(Counter {
            series: format!("{name}_bucket{{{labels},le=\"{bound}\"}}"),
            per_second: value,
        });
    }
    out.push(Counter {
        series: format!("{name}_bucket{{{labels},le=\"+Inf\"}}"),
        per_second,
    });
    out.push(Counter {
        series: format!("{name}_count{{{labels}}}"),
        per_second,
    });
    out
}

/// Requests of one workload in each data plane's exact shape: `ok` and `errors` per second,
/// latency uniformly between 50 and 100 ms (P99 99.5, P95 97.5).
pub fn workload(plane: &str, namespace: &str, name: &str, ok: f64, errors: f64) -> Vec<Counter> {
    let total = ok + errors;
    let counter = |series: String, per_second: f64| Counter { series, per_second };
    match plane {
        "istio" => {
            let labels = format!("reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_workload=\"{name}\",destination_service=\"{name}.{namespace}.svc.cluster.local\",source_workload=\"frontend\"");
            let mut out = vec![
                counter(
                    format!("istio_requests_total{{{labels},response_code=\"200\"}}"),
                    ok,
                ),
                counter(
                    format!("istio_requests_total{{{labels},response_code=\"503\"}}"),
                    errors,
                ),
            ];
            out.extend(histogram(
                "istio_request_duration_milliseconds",
                &labels,
                total,
                50.0,
                100.0,
            ));
            out
        }
        "linkerd" => {
            let labels = format!("direction=\"inbound\",namespace=\"{namespace}\",deployment=\"{name}\",pod=\"{name}-5f7c9-abcde\",tls=\"true\"");
            let mut out = vec![
                counter(
                    format!(
                        "response_total{{{labels},classification=\"success\",status_code=\"200\"}}"
                    ),
                    ok,
                ),
                counter(
                    format!(
                        "response_total{{{labels},classification=\"failure\",status_code=\"503\"}}"
                    ),
                    errors,
                ),
            ];
            out.extend(histogram(
                "response_latency_ms",
                &labels,
                total,
                50.0,
                100.0,
            ));
            out
        }
        "envoy" => {
            let labels = format!("envoy_cluster_name=\"{name}\"");
            let mut out = vec![
                counter(
                    format!(
                        "envoy_cluster_upstream_rq_xx{{{labels},envoy_response_code_class=\"2\"}}"
                    ),
                    ok,
                ),
                counter(
                    format!(
                        "envoy_cluster_upstream_rq_xx{{{labels},envoy_response_code_class=\"5\"}}"
                    ),
                    errors,
                ),
            ];
            out.extend(histogram(
                "envoy_cluster_upstream_rq_time",
                &labels,
                total,
                50.0,
                100.0,
            ));
            out
        }
        "gateway" => {
            let labels = format!("upstream=\"{name}\"");
            let mut out = vec![
                counter(
                    format!("aviary_gateway_requests_total{{{labels},code_class=\"2xx\"}}"),
                    ok,
                ),
                counter(
                    format!("aviary_gateway_requests_total{{{labels},code_class=\"5xx\"}}"),
                    errors,
                ),
            ];
            out.extend(histogram(
                "aviary_gateway_request_duration_ms",
                &labels,
                total,
                50.0,
                100.0,
            ));
            out
        }
        other => panic!("no such data plane {other}"),
    }
}
