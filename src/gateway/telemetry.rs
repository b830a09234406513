//! Per-upstream request counters and latency histograms, exposed through the gateway's one
//! registry. Lock-free atomics: the proxy records on every request, scrapers read whenever they
//! like.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::DescriptorEncoder;

use super::Upstream;
use crate::exposition::{self, Collector, Histogram, Labels, Registry};

/// Histogram bucket bounds in milliseconds; dense around typical web latencies so P99 is precise.
pub const LATENCY_BUCKETS_MS: [f64; 22] = [
    1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 25.0, 35.0, 50.0, 75.0, 100.0, 150.0, 200.0, 300.0, 500.0,
    750.0, 1000.0, 1500.0, 2500.0, 5000.0, 10000.0,
];

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Debug, Default)]
struct UpstreamStats {
    by_class: [AtomicU64; 5],
    /// Requests that never reached the upstream (refused, reset, timed out); also counted as 5xx.
    connect_errors: AtomicU64,
    /// One more than the bounds: the last slot is +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
    mirrored: AtomicU64,
}

/// The counters of both upstreams.
#[derive(Debug, Default)]
struct Counters {
    primary: UpstreamStats,
    canary: UpstreamStats,
}

impl Counters {
    fn stats(&self, upstream: Upstream) -> &UpstreamStats {
        match upstream {
            Upstream::Primary => &self.primary,
            Upstream::Canary => &self.canary,
        }
    }
}

/// The gateway's own telemetry and the registry that exposes it.
#[derive(Debug)]
pub struct Telemetry {
    counters: Arc<Counters>,
    registry: Registry,
}

impl Default for Telemetry {
    fn default() -> Self {
        let counters = Arc::new(Counters::default());
        Telemetry {
            registry: exposition::registry_of(counters.clone()),
            counters,
        }
    }
}

impl Telemetry {
    fn stats(&self, upstream: Upstream) -> &UpstreamStats {
        self.counters.stats(upstream)
    }

    /// Records one answered request.
    pub fn record(&self, upstream: Upstream, status: u16, elapsed: Duration) {
        let stats = self.stats(upstream);
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        stats.by_class[class].fetch_add(1, Ordering::Relaxed);
        let millis = elapsed.as_secs_f64() * 1000.0;
        let slot = LATENCY_BUCKETS_MS
            .iter()
            .position(|bound| millis <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        stats.buckets[slot].fetch_add(1, Ordering::Relaxed);
        stats
            .sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records a request the upstream never answered; the client got a 502.
    pub fn record_connect_error(&self, upstream: Upstream, elapsed: Duration) {
        self.stats(upstream)
            .connect_errors
            .fetch_add(1, Ordering::Relaxed);
        self.record(upstream, 502, elapsed);
    }

    pub fn record_mirror(&self) {
        self.counters
            .canary
            .mirrored
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Total requests answered for `upstream`, of any class.
    pub fn total(&self, upstream: Upstream) -> u64 {
        self.stats(upstream)
            .by_class
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        exposition::render(&self.registry)
    }
}

const UPSTREAMS: [Upstream; 2] = [Upstream::Primary, Upstream::Canary];

fn upstream_label(upstream: Upstream) -> Labels {
    vec![("upstream", upstream.as_str().to_string())]
}

impl Collector for Counters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let requests = UPSTREAMS.iter().flat_map(|upstream| {
            let stats = self.stats(*upstream);
            CODE_CLASSES
                .iter()
                .zip(&stats.by_class)
                .map(move |(class, counter)| {
                    let mut labels = upstream_label(*upstream);
                    labels.push(("code_class", class.to_string()));
                    (labels, read(counter))
                })
        });
        exposition::counters(
            &mut encoder,
            (
                "aviary_gateway_requests_total",
                "Requests answered, by upstream and status class.",
            ),
            requests,
        )?;
        let errors = UPSTREAMS
            .iter()
            .map(|u| (upstream_label(*u), read(&self.stats(*u).connect_errors)));
        exposition::counters(
            &mut encoder,
            (
                "aviary_gateway_upstream_connect_errors_total",
                "Requests that never reached the upstream.",
            ),
            errors,
        )?;
        let mirrored = [(Labels::new(), read(&self.canary.mirrored))];
        exposition::counters(
            &mut encoder,
            (
                "aviary_gateway_mirrored_requests_total",
                "Requests copied to the canary.",
            ),
            mirrored,
        )?;
        let durations = UPSTREAMS.iter().map(|upstream| {
            let stats = self.stats(*upstream);
            let histogram = Histogram {
                bounds: &LATENCY_BUCKETS_MS,
                counts: stats.buckets.iter().map(read).collect(),
                sum: read(&stats.sum_micros) as f64 / 1000.0,
            };
            (upstream_label(*upstream), histogram)
        });
        exposition::histograms(
            &mut encoder,
            (
                "aviary_gateway_request_duration_ms",
                "Upstream answer time in milliseconds.",
            ),
            durations,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let telemetry = Telemetry::default();
        telemetry.record(Upstream::Canary, 200, Duration::from_millis(4));
        telemetry.record(Upstream::Canary, 503, Duration::from_millis(120));
        telemetry.record_connect_error(Upstream::Primary, Duration::from_millis(1));
        let text = telemetry.render();
        assert!(text
            .contains("aviary_gateway_requests_total{upstream=\"canary\",code_class=\"2xx\"} 1"));
        assert!(text
            .contains("aviary_gateway_requests_total{upstream=\"canary\",code_class=\"5xx\"} 1"));
        assert!(text
            .contains("aviary_gateway_requests_total{upstream=\"primary\",code_class=\"5xx\"} 1"));
        assert!(
            text.contains("aviary_gateway_upstream_connect_errors_total{upstream=\"primary\"} 1")
        );
        assert!(text
            .contains("aviary_gateway_request_duration_ms_bucket{upstream=\"canary\",le=\"5\"} 1"));
        assert!(text.contains(
            "aviary_gateway_request_duration_ms_bucket{upstream=\"canary\",le=\"150\"} 2"
        ));
        assert!(text.contains(
            "aviary_gateway_request_duration_ms_bucket{upstream=\"canary\",le=\"+Inf\"} 2"
        ));
        assert_eq!(telemetry.total(Upstream::Canary), 2);
    }
}
