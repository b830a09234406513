//! Per-upstream request counters and latency histograms, rendered in the Prometheus text format.
//! Lock-free atomics: the proxy records on every request, scrapers read whenever they like.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Upstream;

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

/// The gateway's own telemetry.
#[derive(Debug, Default)]
pub struct Telemetry {
    primary: UpstreamStats,
    canary: UpstreamStats,
}

impl Telemetry {
    fn stats(&self, upstream: Upstream) -> &UpstreamStats {
        match upstream {
            Upstream::Primary => &self.primary,
            Upstream::Canary => &self.canary,
        }
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
        self.canary.mirrored.fetch_add(1, Ordering::Relaxed);
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
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP aviary_gateway_requests_total Requests answered, by upstream and status class.\n");
        out.push_str("# TYPE aviary_gateway_requests_total counter\n");
        for upstream in [Upstream::Primary, Upstream::Canary] {
            let stats = self.stats(upstream);
            for (class, counter) in CODE_CLASSES.iter().zip(&stats.by_class) {
                let _ = writeln!(
                    out,
                    "aviary_gateway_requests_total{{upstream=\"{}\",code_class=\"{class}\"}} {}",
                    upstream.as_str(),
                    counter.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str("# HELP aviary_gateway_upstream_connect_errors_total Requests that never reached the upstream.\n");
        out.push_str("# TYPE aviary_gateway_upstream_connect_errors_total counter\n");
        for upstream in [Upstream::Primary, Upstream::Canary] {
            let _ = writeln!(
                out,
                "aviary_gateway_upstream_connect_errors_total{{upstream=\"{}\"}} {}",
                upstream.as_str(),
                self.stats(upstream).connect_errors.load(Ordering::Relaxed)
            );
        }
        out.push_str(
            "# HELP aviary_gateway_mirrored_requests_total Requests copied to the canary.\n",
        );
        out.push_str("# TYPE aviary_gateway_mirrored_requests_total counter\n");
        let _ = writeln!(
            out,
            "aviary_gateway_mirrored_requests_total {}",
            self.canary.mirrored.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP aviary_gateway_request_duration_ms Upstream answer time in milliseconds.\n",
        );
        out.push_str("# TYPE aviary_gateway_request_duration_ms histogram\n");
        for upstream in [Upstream::Primary, Upstream::Canary] {
            let stats = self.stats(upstream);
            let name = upstream.as_str();
            let mut cumulative = 0;
            for (index, counter) in stats.buckets.iter().enumerate() {
                cumulative += counter.load(Ordering::Relaxed);
                let bound = LATENCY_BUCKETS_MS
                    .get(index)
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "+Inf".to_string());
                let _ = writeln!(
                    out,
                    "aviary_gateway_request_duration_ms_bucket{{upstream=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let sum_ms = stats.sum_micros.load(Ordering::Relaxed) as f64 / 1000.0;
            let _ = writeln!(
                out,
                "aviary_gateway_request_duration_ms_sum{{upstream=\"{name}\"}} {sum_ms}"
            );
            let _ = writeln!(
                out,
                "aviary_gateway_request_duration_ms_count{{upstream=\"{name}\"}} {cumulative}"
            );
        }
        out
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
