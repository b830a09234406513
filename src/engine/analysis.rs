//! Judging the outcomes of one analysis step: webhooks first, then metrics against their ranges.

use crate::api::{CanaryAnalysis, HookType, NoDataPolicy};

use super::{HookOutcome, MetricOutcome, Unmeasured};

/// A failed check and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure(pub String);

/// The first failing hook among `outcomes`, described for an event.
pub fn failed_hook(kind: HookType, outcomes: &[HookOutcome]) -> Option<Failure> {
    outcomes.iter().find(|outcome| !outcome.ok).map(|outcome| {
        Failure(format!(
            "{} webhook {} failed: {}",
            kind.as_str(),
            outcome.name,
            outcome.message
        ))
    })
}

/// The first hook that answered yes (used for `rollback` hooks, where success means "roll back").
pub fn first_passing_hook(outcomes: &[HookOutcome]) -> Option<&HookOutcome> {
    outcomes.iter().find(|outcome| outcome.ok)
}

/// What the metrics of one step say.
#[derive(Debug, Default)]
pub struct Judgement {
    /// Metrics outside their range, or without a value that counts as a failure.
    pub failures: Vec<Failure>,
    /// Metrics that could not be judged and hold the step (no data under `hold`, provider down).
    pub holds: Vec<String>,
}

/// Judges every declared metric. A metric without a value is never a pass unless its
/// `onNoData` says so.
pub fn judge_metrics(analysis: &CanaryAnalysis, outcomes: &[MetricOutcome]) -> Judgement {
    let mut judgement = Judgement::default();
    for metric in &analysis.metrics {
        let Some(outcome) = outcomes.iter().find(|o| o.name == metric.name) else {
            judgement
                .failures
                .push(Failure(format!("metric {} was not measured", metric.name)));
            continue;
        };
        match &outcome.value {
            Err(Unmeasured::NoData(reason)) => match metric.on_no_data.unwrap_or_default() {
                NoDataPolicy::Fail => judgement
                    .failures
                    .push(Failure(format!("metric {}: {reason}", metric.name))),
                NoDataPolicy::Hold => judgement
                    .holds
                    .push(format!("metric {}: {reason}", metric.name)),
                NoDataPolicy::Pass => {}
            },
            Err(Unmeasured::ProviderDown(reason)) => judgement
                .holds
                .push(format!("metric {}: {reason}", metric.name)),
            Err(Unmeasured::Failed(reason)) => judgement
                .failures
                .push(Failure(format!("metric {}: {reason}", metric.name))),
            Ok(value) if !value.is_finite() => judgement.failures.push(Failure(format!(
                "metric {} is not a number ({value})",
                metric.name
            ))),
            Ok(value) => {
                let range = metric.accepted_range();
                if !range.contains(*value) {
                    judgement.failures.push(Failure(format!(
                        "metric {} = {} is outside {}",
                        metric.name,
                        format_value(*value),
                        describe_range(range.min, range.max)
                    )));
                }
            }
        }
    }
    judgement
}

/// A short summary of the measured values, for progress events.
pub fn summarise_metrics(outcomes: &[MetricOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| match &o.value {
            Ok(value) => format!("{}={}", o.name, format_value(*value)),
            Err(_) => format!("{}=no value", o.name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn describe_range(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("[{}, {}]", format_value(min), format_value(max)),
        (Some(min), None) => format!(">= {}", format_value(min)),
        (None, Some(max)) => format!("<= {}", format_value(max)),
        (None, None) => "any value".to_string(),
    }
}
