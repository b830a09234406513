//! How a rollout's traffic moves under each strategy.

use crate::plan::{Analysis, Strategy};

use super::Routes;

/// Routes while the canary is being analysed at `weight` (only Canary uses the weight).
pub fn analysis_routes(strategy: Strategy, analysis: &Analysis, weight: i32) -> Routes {
    let mirror_percent = analysis.mirror_percent;
    match strategy {
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

/// The canary weight after one step of gradual promotion (`stepWeightPromotion`), going down to 0.
pub fn next_promotion_weight(analysis: &Analysis, current: i32) -> i32 {
    match analysis.step_weight_promotion.filter(|s| *s > 0) {
        Some(step) => (current - step).max(0),
        None => 0,
    }
}
