//! Prometheus answers: one number, no data, or an error that says why, never a panic; a number
//! read is never NaN, and range points are finite.
#![no_main]

use aviary::metrics::prometheus::{instant_number, range_values};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(Some(number)) = instant_number(body, "q") {
        assert!(!number.is_nan());
    }
    if let Ok(points) = range_values(body, "q") {
        assert!(points.iter().all(|(_, value)| value.is_finite()));
    }
});
