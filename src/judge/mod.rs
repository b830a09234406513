//! The comparative judge (`compare: primary`): the same metric measured for the primary and the
//! canary over the same window, and a verdict — Pass, Fail or Inconclusive — from both, with the
//! numbers that support it.
//!
//! Two tests, each suited to its data:
//! - error counts go through a sequential test whose false-alarm rate stays below 1 − confidence
//!   however many intervals look at it ([`sequential`]);
//! - any other metric is sampled over sub-intervals and compared with a Mann–Whitney U test, the
//!   allowed change built into the hypothesis and the confidence split across the analysis's
//!   intervals ([`mann_whitney`]).

pub mod mann_whitney;
pub mod sequential;
mod stats;

use serde::{Deserialize, Serialize};

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

/// How strict the judge is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Probability of not failing a healthy canary over the whole analysis (0.99).
    pub confidence: f64,
    /// Allowed relative increase (0.2 = +20 %) before a change counts.
    pub allowed_increase: f64,
    pub allowed_decrease: f64,
    pub direction: Direction,
    /// How many intervals the analysis may look (the sample test spends its error over them).
    pub looks: u32,
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
    /// Canary over primary: the ratio of error rates, or the Hodges–Lehmann ratio of samples.
    pub effect: Option<f64>,
    /// The sample test's p-value in the direction that decided, or None for counts.
    pub p_value: Option<f64>,
    /// The sequential test's likelihood ratio and the bound it is compared to.
    pub evidence: Option<(f64, f64)>,
    pub detail: String,
}

/// Fewer requests on either side than this and the count test is inconclusive.
const MIN_REQUESTS: f64 = 20.0;

/// Judges one interval of error counts, carrying the sequential test in `state`.
pub fn judge_counts(
    settings: &Settings,
    canary: Counts,
    primary: Counts,
    state: &mut SequentialState,
) -> Judgement {
    let bound = 1.0 + settings.allowed_increase;
    state.update(canary, primary, bound);
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

/// Judges sub-interval samples of a metric, canary against primary.
pub fn judge_samples(settings: &Settings, canary: &[f64], primary: &[f64]) -> Judgement {
    let alpha = settings.alpha() / f64::from(settings.looks.max(1));
    let effect = mann_whitney::ratio_estimate(canary, primary);
    let up = 1.0 + settings.allowed_increase;
    let down = (1.0 - settings.allowed_decrease).max(0.0);
    let Some((above, below)) = mann_whitney::shifted_tests(canary, primary, up, down) else {
        return Judgement {
            verdict: Verdict::Inconclusive,
            effect,
            p_value: None,
            evidence: None,
            detail: format!(
                "too few samples to compare ({} canary, {} primary)",
                canary.len(),
                primary.len()
            ),
        };
    };
    let ratio = effect.map_or("n/a".to_string(), |r| format!("{r:.2}"));
    let rises = matches!(settings.direction, Direction::Increase | Direction::Either);
    let falls = matches!(settings.direction, Direction::Decrease | Direction::Either);
    let (verdict, p_value, detail) = if rises && above < alpha {
        (
            Verdict::Fail,
            above,
            format!(
                "canary/primary ratio {ratio}: above ×{up:.2} with p={above:.2e} < {alpha:.1e}"
            ),
        )
    } else if falls && below < alpha {
        (
            Verdict::Fail,
            below,
            format!(
                "canary/primary ratio {ratio}: below ×{down:.2} with p={below:.2e} < {alpha:.1e}"
            ),
        )
    } else {
        let p = if rises { above } else { below };
        (
            Verdict::Pass,
            p,
            format!("canary/primary ratio {ratio}: within the allowance (p={p:.2})"),
        )
    };
    Judgement {
        verdict,
        effect,
        p_value: Some(p_value),
        evidence: None,
        detail,
    }
}
