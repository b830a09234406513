//! Judging the outcomes of one analysis step: webhooks first, then metrics against their ranges.

use crate::api::{CanaryAnalysis, HookType};

use super::{HookOutcome, MetricOutcome};

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

/// Every metric outside its range or without a value, described for an event.
/// A metric that has no value is never a pass: "no data" is reported as a failure with its reason.
pub fn failed_metrics(analysis: &CanaryAnalysis, outcomes: &[MetricOutcome]) -> Vec<Failure> {
    let mut failures = Vec::new();
    for metric in &analysis.metrics {
        let Some(outcome) = outcomes.iter().find(|o| o.name == metric.name) else {
            failures.push(Failure(format!("metric {} was not measured", metric.name)));
            continue;
        };
        match &outcome.value {
            Err(reason) => failures.push(Failure(format!("metric {}: {reason}", metric.name))),
            Ok(value) if !value.is_finite() => failures.push(Failure(format!(
                "metric {} is not a number ({value})",
                metric.name
            ))),
            Ok(value) => {
                let range = metric.accepted_range();
                if !range.contains(*value) {
                    failures.push(Failure(format!(
                        "metric {} = {} is outside {}",
                        metric.name,
                        format_value(*value),
                        describe_range(range.min, range.max)
                    )));
                }
            }
        }
    }
    failures
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
