//! How long outbound calls take, process-wide: webhook calls and metric queries. Cheap to
//! update from anywhere (atomics, no lock); the controller's `/metrics` renders them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: a query is milliseconds, a webhook up to its
/// timeout.
pub const BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One latency histogram.
pub struct Latency {
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

/// Webhook calls, each attempt counted.
pub static WEBHOOKS: Latency = Latency::new();
/// Metric queries to Prometheus and other providers.
pub static QUERIES: Latency = Latency::new();

impl Latency {
    const fn new() -> Latency {
        Latency {
            counts: [const { AtomicU64::new(0) }; BOUNDS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let slot = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The count of each bucket (not cumulative, `+Inf` last) and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (counts, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_the_sum() {
        let latency = Latency::new();
        latency.observe(Duration::from_millis(3));
        latency.observe(Duration::from_millis(700));
        latency.observe(Duration::from_secs(60));
        let (counts, sum) = latency.snapshot();
        assert_eq!((counts[0], counts[7], counts[BOUNDS.len()]), (1, 1, 1));
        assert!((sum - 60.703).abs() < 1e-6, "{sum}");
    }
}
