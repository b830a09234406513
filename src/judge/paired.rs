//! A sequential test on sub-interval samples, canary against primary, that pools every sample
//! of the analysis and whose false-alarm rate stays below α however often it is looked at.
//!
//! **Pairs.** Both sides are sampled over the same sub-intervals (see [`super::sampling`]), so
//! each sub-interval gives a pair. The test works on the log ratio of each pair against the
//! allowance, `x = ln(canary) − ln(primary) − ln(1 + allowed)`, clamped to ±[`CLAMP`]. Pairing
//! cancels whatever hits both sides in the same sub-interval (a slow database, a noisy node),
//! so a shared incident never looks like a regression, and the clamp bounds what one wild
//! sub-interval can contribute.
//!
//! **Hypothesis.** "The canary is within the allowance" means that, given the past, each `x`
//! is symmetric about a centre at or below zero. At the boundary (canary exactly
//! `1 + allowed` times the primary, each side's noise alike) `x` is symmetric about zero; the
//! clamp, an odd function, keeps it so.
//!
//! **Evidence.** With `S` the sum of the `x` and `Q` the sum of their squares, for every λ
//! `exp(λS − λ²Q/2)` is a nonnegative supermartingale under a symmetric `x`, because
//! `E[exp(λx − λ²x²/2)] = E[cosh(λx)·exp(−λ²x²/2)] ≤ 1` (de la Peña's self-normalised bound);
//! a centre below zero only lowers it for λ > 0. Its mixture over a half-normal prior on
//! λ > 0 with precision ρ is a supermartingale too, in closed form:
//!
//! `E = 2·√(ρ/(ρ+Q))·exp(S²/(2(ρ+Q)))·Φ(S/√(ρ+Q))`.
//!
//! Ville's inequality bounds the chance that `E` ever reaches 1/α by α, at any number of
//! looks and any number of samples a look. `Q` scales the evidence by the noise actually seen,
//! so no variance has to be known or estimated. `1/E` is an anytime-valid p-value.
//!
//! **State.** `S`, `Q` and the count for each direction tested, and the end of the last
//! sub-interval counted, kept in the status between intervals: a sample is never counted
//! twice, and a restarted controller continues the same test.

use serde::{Deserialize, Serialize};

use super::betting::Wager;
use super::stats::normal_cdf;

/// Largest |log ratio| one pair contributes: a sub-interval four times slower (or faster)
/// than the allowance counts no more than that.
pub const CLAMP: f64 = 1.386_294_361_119_890_6; // ln 4
/// Precision of the mixture over λ, chosen on `aviary bench judge` among 0.05–2 (per-pair
/// noise of about 0.2 in log units, a few dozen pairs an analysis). Any value keeps the
/// guarantee; it only moves where the test is most sensitive.
const PRIOR_PRECISION: f64 = 0.2;

/// One direction's running sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub pairs: u32,
    pub sum: f64,
    pub sum_of_squares: f64,
}

impl Tally {
    fn add(&mut self, x: f64) {
        let x = x.clamp(-CLAMP, CLAMP);
        self.pairs = self.pairs.saturating_add(1);
        self.sum += x;
        self.sum_of_squares += x * x;
    }

    /// The mixture evidence `E` that the centre of `x` is above zero.
    pub fn evidence(&self) -> f64 {
        let v = PRIOR_PRECISION + self.sum_of_squares;
        let z = self.sum / v.sqrt();
        let log = std::f64::consts::LN_2
            + 0.5 * (PRIOR_PRECISION / v).ln()
            + self.sum * self.sum / (2.0 * v)
            + ln_normal_cdf(z);
        log.min(700.0).exp()
    }
}

/// `ln Φ(z)`, also far in the lower tail where Φ itself underflows (Mills' ratio there), so
/// `S²/2v` never outgrows it and a steadily better canary never reads as evidence.
fn ln_normal_cdf(z: f64) -> f64 {
    if z > -8.0 {
        return normal_cdf(z).max(f64::MIN_POSITIVE).ln();
    }
    let z2 = z * z;
    let mills = (1.0 - 1.0 / z2 + 3.0 / (z2 * z2)).ln();
    -z2 / 2.0 - (-z * (2.0 * std::f64::consts::PI).sqrt()).ln() + mills
}

impl Tally {
    /// Whether stored sums can be a tally at all (anyone who may edit the Canary's status can
    /// write them): finite, Q ≥ 0 and S² ≤ n·Q.
    fn is_sound(&self) -> bool {
        let (s, q) = (self.sum, self.sum_of_squares);
        let n = f64::from(self.pairs);
        let bound = n * q * (1.0 + 1e-9) + 1e-12;
        // Each pair is clamped, so neither sum can exceed what n clamped pairs give.
        let within_clamp =
            s.abs() <= n * CLAMP * (1.0 + 1e-9) && q <= n * CLAMP * CLAMP * (1.0 + 1e-9);
        s.is_finite() && q.is_finite() && q >= 0.0 && s * s <= bound && within_clamp
    }
}

/// The test's memory between intervals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairedState {
    /// End of the last sub-interval counted (Unix milliseconds).
    pub sampled_until: Option<i64>,
    /// Canary above the primary × (1 + allowed increase).
    pub above: Tally,
    /// Canary below the primary × (1 − allowed decrease).
    pub below: Tally,
    /// Sum of the unclamped log ratios canary/primary, for the effect's estimate.
    pub log_ratio_sum: f64,
    /// The canary's median above the primary's × (1 + allowed increase), for histograms.
    #[serde(default)]
    pub median_above: Wager,
}

/// One sub-interval's values, canary and primary.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// End of the sub-interval (Unix milliseconds).
    pub end: i64,
    pub canary: f64,
    pub primary: f64,
    /// The sides' medians, where the values are a histogram's P99s: tested on their own, so
    /// a shift of the whole distribution is seen through the median's smaller noise. A median
    /// needs fewer requests than a P99, so there may be one for each of the pair's
    /// sub-intervals (each is a pair of its own for the median's test).
    pub medians: Vec<(f64, f64)>,
}

/// What adding a look's pairs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    pub counted: u32,
    /// Pairs at or before `sampled_until`: already counted, skipped.
    pub repeated: u32,
    /// Pairs that are no ratio (a negative value, or zero on both sides).
    pub unusable: u32,
}

impl PairedState {
    /// Adds the pairs of one look, bounds `up` = 1 + allowed increase, `down` = 1 − allowed
    /// decrease. `through` is the last sub-interval end the look covered (pairs may be
    /// missing where a side had no value); nothing at or before it is counted again.
    pub fn add(&mut self, pairs: &[Pair], through: Option<i64>, bounds: (f64, f64)) -> Added {
        let (up, down) = bounds;
        let tallies = [self.above, self.below];
        let sound = tallies.iter().all(Tally::is_sound) && self.median_above.is_sound();
        if !(sound && self.log_ratio_sum.is_finite()) {
            // Not a state this test wrote: start again rather than judge from it.
            *self = PairedState {
                sampled_until: self.sampled_until,
                ..PairedState::default()
            };
        }
        let mut added = Added::default();
        let mut newest = self.sampled_until.unwrap_or(i64::MIN);
        for pair in pairs {
            if pair.end <= newest {
                added.repeated += 1;
                continue;
            }
            newest = pair.end;
            let Some(ratio) = log_ratio(pair.canary, pair.primary) else {
                added.unusable += 1;
                continue;
            };
            added.counted += 1;
            self.above.add(ratio - up.ln());
            if down > 0.0 {
                self.below.add(down.ln() - ratio);
            }
            self.log_ratio_sum += ratio.clamp(-CLAMP, CLAMP);
            let medians = pair
                .medians
                .iter()
                .filter_map(|(canary, primary)| log_ratio(*canary, *primary));
            for median in medians {
                self.median_above
                    .add((median - up.ln()).clamp(-CLAMP, CLAMP));
            }
        }
        let newest = newest.max(through.unwrap_or(i64::MIN));
        if newest > i64::MIN {
            self.sampled_until = Some(newest);
        }
        added
    }

    /// The geometric mean of canary/primary over the pairs counted.
    pub fn ratio_estimate(&self) -> Option<f64> {
        (self.above.pairs > 0).then(|| (self.log_ratio_sum / f64::from(self.above.pairs)).exp())
    }
}

/// `ln(canary / primary)`, ±∞ when one side is zero; None when there is no ratio.
fn log_ratio(canary: f64, primary: f64) -> Option<f64> {
    if !(canary >= 0.0 && primary >= 0.0) || (canary == 0.0 && primary == 0.0) {
        return None;
    }
    Some(canary.ln() - primary.ln())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::stats::gaussian;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// The share of analyses that ever reach 1/α, looking after every `per_look` pairs.
    fn false_alarms(looks: u32, per_look: u32, boundary: f64, seed: u64) -> f64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let runs = 2000;
        let mut alarms = 0;
        for _ in 0..runs {
            let mut state = PairedState::default();
            let mut end = 0;
            for _ in 0..looks {
                let pairs: Vec<Pair> = (0..per_look)
                    .map(|_| {
                        end += 1000;
                        // Log-normal noise on each side; the canary exactly at the boundary.
                        let primary = 300.0 * (0.3 * gaussian(&mut rng)).exp();
                        let canary = boundary * 300.0 * (0.3 * gaussian(&mut rng)).exp();
                        Pair {
                            end,
                            canary,
                            primary,
                            medians: Vec::new(),
                        }
                    })
                    .collect();
                state.add(&pairs, Some(end), (1.2, 0.8));
                if state.above.evidence() >= 100.0 {
                    alarms += 1;
                    break;
                }
            }
        }
        f64::from(alarms) / f64::from(runs)
    }

    #[test]
    fn the_false_alarm_rate_stays_below_alpha_however_often_it_looks() {
        for (looks, seed) in [(10, 1), (30, 2), (100, 3)] {
            let at_boundary = false_alarms(looks, 4, 1.2, seed);
            assert!(
                at_boundary <= 0.01,
                "{looks} looks at the boundary: {at_boundary}"
            );
            let healthy = false_alarms(looks, 4, 1.0, seed);
            assert!(healthy <= at_boundary, "{looks} looks, healthy: {healthy}");
        }
    }

    #[test]
    fn a_regression_beyond_the_allowance_is_seen_and_repeats_are_not_counted() {
        let mut state = PairedState::default();
        let pairs: Vec<Pair> = (1..=20)
            .map(|k| Pair {
                end: k * 1000,
                canary: 150.0 + (k % 3) as f64,
                primary: 100.0 + (k % 5) as f64,
                medians: Vec::new(),
            })
            .collect();
        let added = state.add(&pairs, Some(20_000), (1.2, 0.8));
        assert_eq!(added.counted, 20);
        assert!(state.above.evidence() >= 100.0, "{state:?}");
        assert!(state.below.evidence() < 1.0);
        let before = state.clone();
        let again = state.add(&pairs, Some(20_000), (1.2, 0.8));
        assert_eq!((again.counted, again.repeated), (0, 20));
        assert_eq!(state, before);
        let ratio = state.ratio_estimate().unwrap();
        assert!((1.4..1.6).contains(&ratio), "{ratio}");
    }

    #[test]
    fn a_steadily_faster_canary_never_gathers_evidence_and_a_forged_state_is_dropped() {
        let mut state = PairedState::default();
        let pairs: Vec<Pair> = (1..=5000)
            .map(|k| Pair {
                end: k,
                canary: 0.0,
                primary: 1.0,
                medians: Vec::new(),
            })
            .collect();
        state.add(&pairs, Some(5000), (1.2, 0.8));
        assert!(state.above.evidence() < 1.0, "{:?}", state.above);
        state.above.sum_of_squares = -1.0;
        state.add(&[], None, (1.2, 0.8));
        assert_eq!((state.above.pairs, state.sampled_until), (0, Some(5000)));
    }

    #[test]
    fn zeros_and_negatives_are_no_ratio() {
        let mut state = PairedState::default();
        let pairs = [
            Pair {
                end: 1,
                canary: 0.0,
                primary: 0.0,
                medians: Vec::new(),
            },
            Pair {
                end: 2,
                canary: -1.0,
                primary: 3.0,
                medians: Vec::new(),
            },
            Pair {
                end: 3,
                canary: 2.0,
                primary: 0.0,
                medians: Vec::new(),
            },
        ];
        let added = state.add(&pairs, Some(3), (1.2, 0.8));
        assert_eq!((added.counted, added.unusable), (1, 2));
        assert_eq!(state.above.sum, CLAMP);
        assert_eq!(state.sampled_until, Some(3));
    }
}
