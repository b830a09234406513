//! A sequential test on request and error counts whose false-alarm rate stays below α although
//! it is looked at every interval.
//!
//! Given the errors of one interval, under "the canary's error rate is at most `bound` times the
//! primary's" the canary's share of them is binomial with success probability
//! π0 = n_c·bound / (n_c·bound + n_p). Against alternatives that multiply the odds of an error
//! landing on the canary by r, the product of per-interval likelihood ratios is a nonnegative
//! supermartingale under that hypothesis; so is their average over a fixed set of r. Ville's
//! inequality then bounds the chance that it ever reaches 1/α by α, however often it is checked.

use serde::{Deserialize, Serialize};

/// Odds multipliers mixed over: from a modest to a drastic regression.
const ALTERNATIVES: [f64; 4] = [1.5, 2.0, 3.0, 5.0];

/// The test's memory between intervals: the log likelihood ratio of each alternative.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequentialState {
    pub log_ratios: Vec<f64>,
    /// Requests and errors seen so far, canary then primary.
    pub canary_requests: f64,
    pub canary_errors: f64,
    pub primary_requests: f64,
    pub primary_errors: f64,
    /// The end of the last counts added (Unix milliseconds): the next look counts from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_until: Option<i64>,
}

/// The counts of one interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counts {
    pub requests: f64,
    pub errors: f64,
}

impl SequentialState {
    /// Adds one interval's counts. `bound` is the allowed ratio of error rates (1.2 allows +20 %).
    pub fn update(&mut self, canary: Counts, primary: Counts, bound: f64) {
        if self.log_ratios.len() != ALTERNATIVES.len() {
            self.log_ratios = vec![0.0; ALTERNATIVES.len()];
        }
        self.canary_requests += canary.requests;
        self.canary_errors += canary.errors;
        self.primary_requests += primary.requests;
        self.primary_errors += primary.errors;
        if canary.requests <= 0.0 || primary.requests <= 0.0 {
            return;
        }
        let weighted = canary.requests * bound;
        let null = weighted / (weighted + primary.requests);
        for (log_ratio, odds) in self.log_ratios.iter_mut().zip(ALTERNATIVES) {
            let alternative = odds * null / (1.0 - null + odds * null);
            *log_ratio += canary.errors * (alternative / null).ln()
                + primary.errors * ((1.0 - alternative) / (1.0 - null)).ln();
        }
    }

    /// The mixture likelihood ratio: evidence that the canary's error rate exceeds the bound.
    pub fn evidence(&self) -> f64 {
        if self.log_ratios.is_empty() {
            return 1.0;
        }
        self.log_ratios.iter().map(|l| l.exp()).sum::<f64>() / self.log_ratios.len() as f64
    }

    /// Whether the evidence crossed 1/α.
    pub fn rejects(&self, alpha: f64) -> bool {
        self.evidence() >= 1.0 / alpha
    }

    /// Observed ratio of error rates, canary over primary (None until both saw requests).
    pub fn observed_ratio(&self) -> Option<f64> {
        if self.canary_requests <= 0.0 || self.primary_requests <= 0.0 {
            return None;
        }
        let canary = self.canary_errors / self.canary_requests;
        let primary = (self.primary_errors + 0.5) / (self.primary_requests + 1.0);
        Some(canary / primary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fivefold_error_rate_is_caught_and_equal_rates_are_not() {
        let mut worse = SequentialState::default();
        let mut same = SequentialState::default();
        for _ in 0..3 {
            worse.update(
                Counts {
                    requests: 1000.0,
                    errors: 50.0,
                },
                Counts {
                    requests: 1000.0,
                    errors: 10.0,
                },
                1.2,
            );
            same.update(
                Counts {
                    requests: 1000.0,
                    errors: 10.0,
                },
                Counts {
                    requests: 1000.0,
                    errors: 10.0,
                },
                1.2,
            );
        }
        assert!(worse.rejects(0.01), "{}", worse.evidence());
        assert!(!same.rejects(0.01), "{}", same.evidence());
        assert!(same.evidence() < 1.0);
    }
}
