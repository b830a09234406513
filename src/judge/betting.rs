//! A betting test on the medians' log ratios: more power than the self-normalised mixture
//! of [`super::paired`] where the effect is large against the noise, under the same
//! hypothesis.
//!
//! **Hypothesis.** As in [`super::paired`]: given the past, each `x` (the log ratio against
//! the allowance) is symmetric about a centre at or below zero.
//!
//! **Bet.** Before each pair the test fixes, from past pairs only, a scale `s` and a stake
//! `λ ∈ [0, MAX_STAKE]`, then multiplies its wealth by `1 + λ·y`, `y = clamp(x/s, −1, 1)`.
//! `y` is a nondecreasing odd function of `x`, so under the hypothesis `E[y | past] ≤ 0`,
//! and the wealth is a nonnegative supermartingale starting at 1. Ville's inequality bounds
//! the chance that it ever reaches 1/α by α, however often it is looked at. The clamp makes
//! a pair count like a sign when it is far from zero and like its size near zero, which is
//! where the sign test and the mean test each lose power.
//!
//! **Choices from the past.** `s` is the root mean square of the earlier `x` (a prior pair
//! of [`PRIOR_SCALE`] to start), and `λ` the growth-optimal stake to first order,
//! `Σy / Σy²`, over the earlier pairs with one pair of `y = 0, y² = 1` as a prior, so the
//! first bets are small. Both depend on the past only, which is all the guarantee needs.

use serde::{Deserialize, Serialize};

/// Largest stake: one pair can lose at most this share of the wealth.
const MAX_STAKE: f64 = 0.9;
/// The scale before any pair: about the per-pair noise of a median's log ratio.
const PRIOR_SCALE: f64 = 0.15;

/// The betting test's memory between intervals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wager {
    pub pairs: u32,
    /// Σx², for the scale.
    pub sum_of_squares: f64,
    /// Σy and Σy² of the bets made, for the stake.
    pub bet_sum: f64,
    pub bet_sum_of_squares: f64,
    /// ln of the wealth.
    pub log_wealth: f64,
}

impl Wager {
    pub fn add(&mut self, x: f64) {
        let pairs = f64::from(self.pairs);
        let scale = ((self.sum_of_squares + PRIOR_SCALE * PRIOR_SCALE) / (pairs + 1.0)).sqrt();
        let stake = (self.bet_sum / (self.bet_sum_of_squares + 1.0)).clamp(0.0, MAX_STAKE);
        let y = (x / scale).clamp(-1.0, 1.0);
        self.log_wealth += (stake * y).ln_1p();
        self.pairs = self.pairs.saturating_add(1);
        self.sum_of_squares += x * x;
        self.bet_sum += y;
        self.bet_sum_of_squares += y * y;
    }

    /// The wealth: evidence that the centre of `x` is above zero.
    pub fn evidence(&self) -> f64 {
        self.log_wealth.min(700.0).exp()
    }

    /// Whether stored numbers can be a wager at all: finite, sums within what `pairs` bets
    /// can make, and no more wealth than staking the most on every pair.
    pub fn is_sound(&self) -> bool {
        let pairs = f64::from(self.pairs);
        let finite = [
            self.sum_of_squares,
            self.bet_sum,
            self.bet_sum_of_squares,
            self.log_wealth,
        ]
        .iter()
        .all(|v| v.is_finite());
        finite
            && self.sum_of_squares >= 0.0
            && self.bet_sum.abs() <= pairs
            && (0.0..=pairs).contains(&self.bet_sum_of_squares)
            && self.log_wealth <= pairs * MAX_STAKE.ln_1p()
            // No bet loses more than MAX_STAKE of the wealth.
            && self.log_wealth >= pairs * (-MAX_STAKE).ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::stats::gaussian;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// The share of runs whose wealth ever reaches 100 over `pairs` pairs centred at `centre`.
    fn alarms(pairs: u32, centre: f64, seed: u64) -> f64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let runs = 2000;
        let hits = (0..runs)
            .filter(|_| {
                let mut wager = Wager::default();
                (0..pairs).any(|_| {
                    wager.add(centre + 0.15 * gaussian(&mut rng));
                    wager.evidence() >= 100.0
                })
            })
            .count();
        hits as f64 / f64::from(runs)
    }

    #[test]
    fn the_false_alarm_rate_stays_below_alpha_and_a_clear_shift_is_seen() {
        for (pairs, seed) in [(10, 1), (30, 2), (100, 3)] {
            let rate = alarms(pairs, 0.0, seed);
            assert!(rate <= 0.01, "{pairs} pairs at the boundary: {rate}");
        }
        assert!(alarms(30, 0.15, 4) >= 0.9);
        let mut forged = Wager {
            pairs: 2,
            log_wealth: 50.0,
            ..Wager::default()
        };
        assert!(!forged.is_sound());
        forged.log_wealth = 0.1;
        assert!(forged.is_sound());
    }
}
