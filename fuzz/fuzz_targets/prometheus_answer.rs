//! Prometheus answers: one number, no data, or an error that says why, never a panic; a number
//! read is never NaN, range points are finite, and a histogram's buckets are ascending with
//! `+Inf` last and read without a panic.
#![no_main]

use aviary::metrics::prometheus::{instant_number, range_histogram, range_values};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(Some(number)) = instant_number(body, "q") {
        assert!(!number.is_nan());
    }
    if let Ok(points) = range_values(body, "q") {
        assert!(points.iter().all(|(_, value)| value.is_finite()));
    }
    if let Ok(steps) = range_histogram(body, "q") {
        for buckets in steps.values() {
            assert!(buckets.last().is_some_and(|(bound, _)| bound.is_infinite()));
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
            assert!(buckets.iter().all(|(_, value)| value.is_finite()));
            let _ = aviary::judge::histogram::tail_quantile(0.99, buckets);
        }
    }
});
