//! The comparative judge (`compare: primary`): the same metric measured for the primary and the
//! canary over the same window, and a verdict — Pass, Fail or Inconclusive — from both, with the
//! numbers that support it.
//!
//! Two tests, each suited to its data:
//! - error counts go through a sequential test whose false-alarm rate stays below 1 − confidence
//!   however many intervals look at it ([`sequential`]);
//! - any other metric is sampled over sub-intervals that tile the analysis ([`sampling`]), and
//!   the pairs of every look are pooled in a second sequential test, the allowed change built
//!   into its hypothesis, equally valid however often it looks ([`paired`]).

pub mod betting;
pub mod histogram;
pub mod paired;
pub mod sampling;
pub mod sequential;
pub mod stats;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use paired::{Pair, PairedState};
pub use sequential::{Counts, SequentialState};

/// Which change of the metric is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher is worse (latency, error counts).
    Increase,
    /// Lower is worse (success rate, throughput).
    Decrease,
    /// Any change beyond the allowance is a regression.
    Either,
}

/// The sequential tests of one analysis, per metric: what the status keeps between intervals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tests {
    pub counts: BTreeMap<String, SequentialState>,
    pub samples: BTreeMap<String, PairedState>,
}

/// How strict the judge is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Probability of not failing a healthy canary over the whole analysis (0.99).
    pub confidence: f64,
    /// Allowed relative increase (0.2 = +20 %) before a change counts.
    pub allowed_increase: f64,
    pub allowed_decrease: f64,
    pub direction: Direction,
}

impl Settings {
    fn alpha(&self) -> f64 {
        (1.0 - self.confidence).clamp(1e-9, 0.5)
    }
}

/// What the judge decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// A verdict and its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Canary over primary: the ratio of error rates, or the geometric mean ratio of the pairs.
    pub effect: Option<f64>,
    /// The sample test's anytime-valid p-value (1 / evidence), or None for counts.
    pub p_value: Option<f64>,
    /// The sequential test's evidence (a likelihood ratio or mixture) and the bound it is
    /// compared to.
    pub evidence: Option<(f64, f64)>,
    pub detail: String,
}

/// Fewer requests on either side than this and the count test is inconclusive.
const MIN_REQUESTS: f64 = 20.0;
/// Fewer pairs than this and the sample test is inconclusive (it cannot fail on fewer either:
/// its evidence needs about a dozen consistent pairs to reach 1/α at α = 0.01).
const MIN_PAIRS: u32 = 3;

/// Judges the error counts since the last look, up to `through` (Unix ms), carrying the
/// sequential test in `state`. Counts that end at or before what was counted already are
/// not added again.
pub fn judge_counts(
    settings: &Settings,
    (canary, primary): (Counts, Counts),
    through: i64,
    state: &mut SequentialState,
) -> Judgement {
    let bound = 1.0 + settings.allowed_increase;
    if state.counted_until.is_none_or(|until| through > until) {
        state.update(canary, primary, bound);
        state.counted_until = Some(through);
    }
    let alpha = settings.alpha();
    let evidence = state.evidence();
    let effect = state.observed_ratio();
    let ratio = effect.map_or("n/a".to_string(), |r| format!("{r:.2}"));
    let (verdict, detail) = if state.rejects(alpha) {
        (
            Verdict::Fail,
            format!(
                "canary/primary error-rate ratio {ratio}: evidence {evidence:.3e} ≥ {:.0} that it exceeds {bound:.2}",
                1.0 / alpha
            ),
        )
    } else if state.canary_requests < MIN_REQUESTS || state.primary_requests < MIN_REQUESTS {
        (
            Verdict::Inconclusive,
            format!(
                "too few requests to compare ({:.0} canary, {:.0} primary)",
                state.canary_requests, state.primary_requests
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "canary/primary error-rate ratio {ratio}: evidence {evidence:.3} < {:.0}",
                1.0 / alpha
            ),
        )
    };
    Judgement {
        verdict,
        effect,
        p_value: None,
        evidence: Some((evidence, 1.0 / alpha)),
        detail,
    }
}

/// The bounds of the allowance: canary over primary above `up` or below `down` is a change.
fn bounds(settings: &Settings) -> (f64, f64) {
    (
        1.0 + settings.allowed_increase,
        (1.0 - settings.allowed_decrease).max(0.0),
    )
}

/// The median test's weight in the pooled evidence, against 1 for each P99 test. Fixed in
/// advance, so the weighted mean is an e-process like each test.
const MEDIAN_WEIGHT: f64 = 2.0;

/// One look's sub-interval pairs.
#[derive(Debug, Clone, Copy)]
pub struct Sampled<'a> {
    pub pairs: &'a [Pair],
    /// The last sub-interval end the look covered (Unix ms).
    pub through: Option<i64>,
    /// Whether the pairs are histograms' P99s that carry medians.
    pub medians: bool,
}

/// Judges one look of sub-interval pairs, pooled with every earlier one in `state`.
///
/// Up to three tests may fail the canary: a rise and a fall where the direction is either,
/// and for histograms the rise of the median beside that of the P99. Their evidence is
/// averaged with fixed weights: each is a nonnegative supermartingale under its hypothesis,
/// so their weighted mean is one too, and Ville's inequality bounds the chance that it ever
/// reaches 1/α by α. The mean rejects whenever splitting α among them in the same shares
/// would, and also where two tests each hold part of the evidence.
pub fn judge_pairs(
    settings: &Settings,
    sampled: Sampled<'_>,
    state: &mut PairedState,
) -> Judgement {
    let (up, down) = bounds(settings);
    let added = state.add(sampled.pairs, sampled.through, (up, down));
    let rises = matches!(settings.direction, Direction::Increase | Direction::Either);
    let falls = matches!(settings.direction, Direction::Decrease | Direction::Either) && down > 0.0;
    // Fixed by the metric, not by whether medians have come yet: the mean of a set of tests
    // chosen from the data would not keep the error at α.
    let medians = rises && sampled.medians;
    // (tested, weight, evidence): the median's test weighs twice the P99's, being the more
    // powerful where the whole distribution moves (the usual regression).
    let tested = [
        (rises, 1.0, state.above.evidence()),
        (medians, MEDIAN_WEIGHT, state.median_above.evidence()),
        (falls, 1.0, state.below.evidence()),
    ];
    let total: f64 = tested.iter().filter(|t| t.0).map(|t| t.1).sum();
    let share = |(on, weight, evidence): (bool, f64, f64)| {
        if on {
            evidence * weight / total.max(1.0)
        } else {
            0.0
        }
    };
    let [above, median, below] = tested.map(share);
    let pooled = above + median + below;
    let bound = 1.0 / settings.alpha();
    let effect = state.ratio_estimate();
    let ratio = effect.map_or("n/a".to_string(), |r| format!("{r:.2}"));
    let pairs_seen = state.above.pairs;
    let over = format!("canary/primary ratio {ratio} over {pairs_seen} sub-intervals");
    let (verdict, detail) = if pooled >= bound {
        let what = if below > above.max(median) {
            format!("it is below ×{down:.2}")
        } else if median > above {
            format!("the canary's median exceeds ×{up:.2} the primary's")
        } else {
            format!("it exceeds ×{up:.2}")
        };
        let detail = format!("{over}: evidence {pooled:.3e} ≥ {bound:.0} that {what}");
        (Verdict::Fail, detail)
    } else if pairs_seen < MIN_PAIRS || added.counted == 0 {
        // No pass on old evidence alone: a canary that stopped getting traffic is not judged.
        let detail =
            format!("too few sub-intervals with both sides measured to compare ({pairs_seen})");
        (Verdict::Inconclusive, detail)
    } else {
        let detail = format!("{over}: within the allowance (evidence {pooled:.2} < {bound:.0})");
        (Verdict::Pass, detail)
    };
    let shown = pooled;
    Judgement {
        verdict,
        effect,
        p_value: Some((1.0 / shown.max(1e-300)).min(1.0)),
        evidence: Some((shown, bound)),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::stats::gaussian;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A side's value with log-normal noise σ 0.3.
    fn noisy(rng: &mut StdRng, centre: f64) -> f64 {
        centre * (0.3 * gaussian(rng)).exp()
    }

    /// The share of analyses the pooled judge ever fails, with `looks` looks of four pairs
    /// (each with two medians), the canary `factor` times the primary on P99 and median.
    fn failures(settings: &Settings, looks: u32, factor: f64, seed: u64) -> f64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let runs = 1000;
        let failed = (0..runs)
            .filter(|_| {
                let mut state = PairedState::default();
                let mut end = 0;
                (0..looks).any(|_| {
                    let pairs: Vec<Pair> = (0..4)
                        .map(|_| {
                            end += 1000;
                            let medians = (0..2)
                                .map(|_| (noisy(&mut rng, factor * 100.0), noisy(&mut rng, 100.0)))
                                .collect();
                            Pair {
                                end,
                                canary: noisy(&mut rng, factor * 300.0),
                                primary: noisy(&mut rng, 300.0),
                                medians,
                            }
                        })
                        .collect();
                    let sampled = Sampled {
                        pairs: &pairs,
                        through: Some(end),
                        medians: true,
                    };
                    let judgement = judge_pairs(settings, sampled, &mut state);
                    judgement.verdict == Verdict::Fail
                })
            })
            .count();
        failed as f64 / f64::from(runs)
    }

    #[test]
    fn the_pooled_sample_judge_fails_a_canary_at_the_boundary_at_most_alpha_of_the_time() {
        let settings = Settings {
            confidence: 0.99,
            allowed_increase: 0.2,
            allowed_decrease: 0.2,
            direction: Direction::Either,
        };
        for (looks, seed) in [(10, 11), (30, 12), (100, 13)] {
            // Exactly at the upper bound of the allowance, then at the lower one.
            let above = failures(&settings, looks, 1.2, seed);
            assert!(above <= 0.01, "{looks} looks at ×1.2: {above}");
            let below = failures(&settings, looks, 0.8, seed);
            assert!(below <= 0.01, "{looks} looks at ×0.8: {below}");
        }
        let increase = Settings {
            direction: Direction::Increase,
            ..settings
        };
        assert!(failures(&increase, 10, 1.6, 14) >= 0.9);
    }
}
