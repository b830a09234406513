//! Which kind of rollout a spec asks for, and how its traffic moves.

use crate::api::{CanaryAnalysis, CanarySpec};

use super::Routes;

/// The deployment strategy, derived from the analysis block the way Flagger derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// No analysis: promote as soon as the canary is ready.
    SkipAnalysis,
    /// Weighted steps (stepWeight or stepWeights) up to maxWeight.
    Canary,
    /// `match` + `iterations`: matching requests go to the canary.
    AbTesting,
    /// `iterations` without `match`: the canary gets test (or mirrored) traffic, then everything.
    BlueGreen,
}

impl Strategy {
    pub fn of(spec: &CanarySpec) -> Strategy {
        let Some(analysis) = spec.analysis.as_ref().filter(|_| !spec.skip_analysis) else {
            return Strategy::SkipAnalysis;
        };
        match (
            analysis.iterations.unwrap_or(0) > 0,
            analysis.r#match.is_empty(),
        ) {
            (true, false) => Strategy::AbTesting,
            (true, true) => Strategy::BlueGreen,
            (false, _) => Strategy::Canary,
        }
    }

    /// Routes while the canary is being analysed at `weight` (only Canary uses the weight).
    pub fn analysis_routes(self, analysis: &CanaryAnalysis, weight: i32) -> Routes {
        let mirror_percent = analysis
            .mirror
            .then(|| analysis.mirror_weight.unwrap_or(100).clamp(0, 100));
        match self {
            Strategy::Canary => Routes {
                mirror_percent,
                ..Routes::weighted(weight)
            },
            Strategy::AbTesting => Routes {
                match_to_canary: true,
                ..Routes::primary_only()
            },
            Strategy::BlueGreen => Routes {
                mirror_percent,
                ..Routes::primary_only()
            },
            Strategy::SkipAnalysis => Routes::primary_only(),
        }
    }
}

/// The weight after `current` in a canary rollout, capped at the maximum.
pub fn next_weight(analysis: &CanaryAnalysis, current: i32) -> i32 {
    let max = analysis.max_weight();
    if !analysis.step_weights.is_empty() {
        return analysis
            .step_weights
            .iter()
            .copied()
            .find(|weight| *weight > current)
            .unwrap_or(max)
            .min(max);
    }
    // Without a step the rollout goes to the maximum in one move.
    let step = analysis.step_weight.filter(|step| *step > 0).unwrap_or(max);
    (current + step).min(max)
}

/// The canary weight after one step of gradual promotion (`stepWeightPromotion`), going down to 0.
pub fn next_promotion_weight(analysis: Option<&CanaryAnalysis>, current: i32) -> i32 {
    match analysis
        .and_then(|a| a.step_weight_promotion)
        .filter(|s| *s > 0)
    {
        Some(step) => (current - step).max(0),
        None => 0,
    }
}
