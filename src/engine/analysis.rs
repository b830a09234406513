//! Judging the outcomes of one analysis step: webhooks first, then metrics against their ranges.

use crate::api::{HookType, MetricJudgement, NoDataPolicy};
use crate::judge::{self, Settings, Tests, Verdict};
use crate::plan::{Analysis, JudgeSettings, Metric};

use super::{Comparison, HookOutcome, MetricOutcome, Unmeasured};

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
    /// Comparative verdicts of regression: their error is controlled across intervals, so
    /// one is enough to roll back.
    pub decisive: Vec<Failure>,
    /// Metrics that could not be judged and hold the step (no data under `hold`, provider down).
    pub holds: Vec<String>,
    /// The comparative judge's verdicts and numbers, for the status.
    pub records: Vec<MetricJudgement>,
    /// The sequential tests after this step.
    pub states: Tests,
}

fn settings(judge: &JudgeSettings) -> Settings {
    Settings {
        confidence: judge.confidence,
        allowed_increase: judge.allowed_increase,
        allowed_decrease: judge.allowed_decrease,
        direction: judge.direction,
    }
}

/// Judges a `compare: primary` metric from both sides.
fn compare(
    (metric, judge): (&Metric, &JudgeSettings),
    (value, comparison): (f64, &Comparison),
    judgement: &mut Judgement,
) {
    let settings = settings(judge);
    let tests = &mut judgement.states;
    let verdict = match comparison {
        Comparison::Counts {
            canary,
            primary,
            through,
        } => {
            let state = tests.counts.entry(metric.name.clone()).or_default();
            judge::judge_counts(&settings, (*canary, *primary), *through, state)
        }
        Comparison::Samples {
            pairs,
            through,
            medians,
        } => {
            let state = tests.samples.entry(metric.name.clone()).or_default();
            let sampled = judge::Sampled {
                pairs,
                through: *through,
                medians: *medians,
            };
            judge::judge_pairs(&settings, sampled, state)
        }
    };
    if verdict.verdict == Verdict::Fail {
        judgement.decisive.push(Failure(format!(
            "metric {} judged against the primary: {}",
            metric.name, verdict.detail
        )));
    }
    // Too little data to compare is not a pass: a thresholdRange, when set, still applies.
    let range = &metric.range;
    if verdict.verdict == Verdict::Inconclusive && !range.contains(value) {
        judgement.failures.push(Failure(format!(
            "metric {} = {} is outside {} (too little data to judge against the primary)",
            metric.name,
            format_value(value),
            describe_range(range.min, range.max)
        )));
    }
    judgement.records.push(MetricJudgement {
        metric: metric.name.clone(),
        verdict: verdict.verdict,
        effect: verdict.effect,
        p_value: verdict.p_value,
        evidence: verdict.evidence.map(|(e, _)| e),
        detail: verdict.detail,
    });
}

/// Judges every declared metric. A metric without a value is never a pass unless its
/// `onNoData` says so. `tests` holds the sequential tests of comparative metrics so far.
pub fn judge_metrics(analysis: &Analysis, outcomes: &[MetricOutcome], tests: Tests) -> Judgement {
    let mut judgement = Judgement {
        states: tests,
        ..Judgement::default()
    };
    for metric in &analysis.metrics {
        let Some(outcome) = outcomes.iter().find(|o| o.name == metric.name) else {
            judgement
                .failures
                .push(Failure(format!("metric {} was not measured", metric.name)));
            continue;
        };
        if let Some(judge) = &metric.judge {
            if let (Ok(value), Some(comparison)) = (&outcome.value, &outcome.comparison) {
                compare((metric, judge), (*value, comparison), &mut judgement);
                continue;
            }
            if outcome.value.is_ok() {
                judgement.failures.push(Failure(format!(
                    "metric {}: the primary was not measured",
                    metric.name
                )));
                continue;
            }
        }
        match &outcome.value {
            Err(Unmeasured::NoData(reason)) => match metric.on_no_data {
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
                let range = &metric.range;
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
/// What the status shows of one step's metrics: value, range, in range or not.
pub fn check_records(
    analysis: &Analysis,
    outcomes: &[MetricOutcome],
) -> Vec<crate::api::MetricCheck> {
    outcomes
        .iter()
        .map(|outcome| {
            // The same range the verdict uses: `thresholdRange`, or the deprecated `threshold`.
            let range = analysis
                .metrics
                .iter()
                .find(|m| m.name == outcome.name)
                .map(|m| m.range.clone())
                .unwrap_or_default();
            let (value, passed, detail) = match &outcome.value {
                Ok(value) => (Some(*value), range.contains(*value), String::new()),
                Err(reason) => (None, false, reason.to_string()),
            };
            crate::api::MetricCheck {
                metric: outcome.name.clone(),
                value,
                min: range.min,
                max: range.max,
                passed,
                detail,
            }
        })
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CanaryAnalysis, CanaryMetric, CanaryService, CanarySpec, TargetRef};
    use crate::api::{BUILTIN_DURATION, BUILTIN_SUCCESS_RATE};

    fn read(analysis: CanaryAnalysis) -> Analysis {
        let spec = CanarySpec {
            target_ref: TargetRef {
                name: "podinfo".into(),
                ..TargetRef::default()
            },
            service: CanaryService {
                port: 80,
                ..CanaryService::default()
            },
            analysis: Some(analysis),
            ..CanarySpec::default()
        };
        crate::plan::plan(&spec, Default::default())
            .unwrap()
            .analysis
    }

    fn measured(name: &str, value: f64) -> MetricOutcome {
        MetricOutcome {
            name: name.into(),
            value: Ok(value),
            comparison: None,
        }
    }

    /// The status shows a check as failed exactly when the verdict counts it as failed, also
    /// under the deprecated `threshold` (a minimum for the success rate, a maximum otherwise).
    #[test]
    fn last_checks_use_the_range_the_verdict_uses() {
        let analysis = read(CanaryAnalysis {
            metrics: vec![
                CanaryMetric {
                    name: BUILTIN_SUCCESS_RATE.into(),
                    threshold: Some(99.0),
                    ..CanaryMetric::default()
                },
                CanaryMetric {
                    name: BUILTIN_DURATION.into(),
                    threshold: Some(500.0),
                    ..CanaryMetric::default()
                },
            ],
            ..CanaryAnalysis::default()
        });
        let outcomes = [
            measured(BUILTIN_SUCCESS_RATE, 90.0),
            measured(BUILTIN_DURATION, 200.0),
        ];
        let verdict = judge_metrics(&analysis, &outcomes, Tests::default());
        assert_eq!(verdict.failures.len(), 1, "{:?}", verdict.failures);
        let records = check_records(&analysis, &outcomes);
        assert!(!records[0].passed, "90% under a 99% threshold: {records:?}");
        assert_eq!(records[0].min, Some(99.0));
        assert!(records[1].passed, "{records:?}");
        assert_eq!(records[1].max, Some(500.0));
    }
}
