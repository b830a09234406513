//! How long a canary whose reconcile failed waits before the next try: doubling with each
//! failure in a row, capped, and jittered so canaries that failed together (an API server
//! restart) do not all come back at the same instant.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;

/// The first retry comes after about this long.
const FIRST: Duration = Duration::from_secs(1);
/// No retry waits longer than this.
const LONGEST: Duration = Duration::from_secs(120);

/// Failures in a row, by `namespace/name`.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    /// Counts one more failure of `key` and returns the wait before its next try: between half
    /// and all of `FIRST · 2^(n−1)`, at most [`LONGEST`].
    pub fn failed(&self, key: &str) -> Duration {
        let count = {
            let mut failures = self.0.lock();
            let count = failures.entry(key.to_string()).or_default();
            *count = count.saturating_add(1);
            *count
        };
        let full = FIRST.saturating_mul(1 << (count - 1).min(16)).min(LONGEST);
        full.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// A reconcile of `key` succeeded: its next failure starts from the first wait again.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.0.lock();
        if failures.contains_key(key) {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_a_cap_and_reset_on_success() {
        let failures = Failures::default();
        let waits: Vec<Duration> = (0..12).map(|_| failures.failed("ns/a")).collect();
        assert!((FIRST / 2..=FIRST).contains(&waits[0]), "{waits:?}");
        assert!((FIRST * 8..=FIRST * 16).contains(&waits[4]), "{waits:?}");
        assert!(waits.iter().all(|wait| *wait <= LONGEST), "{waits:?}");
        assert!(waits[11] >= LONGEST / 2, "{waits:?}");
        assert!(
            failures.failed("ns/b") <= FIRST,
            "one canary's failures are its own"
        );
        failures.succeeded("ns/a");
        assert!(failures.failed("ns/a") <= FIRST);
    }
}
