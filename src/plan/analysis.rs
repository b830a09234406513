//! `spec.analysis`: the interval, the weights, the metrics, the webhooks and the windows.

use std::time::Duration;

use crate::api::{
    parse_duration, CanaryAnalysis, CanarySpec, MAX_ALERTS, MAX_MATCHES, MAX_METRICS,
    MAX_PROMOTION_WINDOWS, MAX_WEBHOOKS,
};

use super::{matches, metric, webhook, windows, Analysis, Findings, Options, Strategy};

/// The shortest analysis interval a cluster rollout may use, as Flagger enforces.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest interval even the standalone runner accepts.
const MIN_STANDALONE_INTERVAL: Duration = Duration::from_millis(200);

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub use crate::api::MAX_INTERVAL;
const DEFAULT_MAX_WEIGHT: i32 = 100;
const DEFAULT_READY_THRESHOLD: i32 = 100;

/// The analysis interval: `^[0-9]+(m|s)$` and at least 10s in a cluster, as Flagger's schema
/// says; the standalone runner also takes `250ms` and `1m30s` above its own floor.
fn interval(analysis: &CanaryAnalysis, options: Options, findings: &mut Findings) -> Duration {
    let Some(text) = &analysis.interval else {
        return DEFAULT_INTERVAL;
    };
    let path = "spec.analysis.interval";
    let plain = text.len() > 1
        && text.ends_with(['s', 'm'])
        && !text.ends_with("ms")
        && text[..text.len() - 1].chars().all(|c| c.is_ascii_digit());
    let interval = match parse_duration(text) {
        Ok(interval) => interval,
        Err(error) => {
            findings.error(path, error.to_string());
            return DEFAULT_INTERVAL;
        }
    };
    if interval > MAX_INTERVAL {
        findings.error(
            path,
            format!("interval {text:?} is longer than {MAX_INTERVAL:?}"),
        );
    } else if options.allow_short_intervals {
        if interval < MIN_STANDALONE_INTERVAL {
            findings.error(path, format!("interval {text:?} is below {MIN_STANDALONE_INTERVAL:?}, the standalone minimum"));
        }
    } else if !plain {
        findings.error(
            path,
            format!("interval {text:?} must match ^[0-9]+(m|s)$, for example 30s or 1m"),
        );
    } else if interval < MIN_INTERVAL {
        findings.error(path, format!("interval {text:?} is below the minimum of 10s (only `aviary run --allow-short-intervals` may go lower)"));
    }
    interval
}

/// A percent field within `low..=100`, or its default.
fn percent(value: Option<i32>, path: &str, low: i32, default: i32, findings: &mut Findings) -> i32 {
    match value {
        Some(value) if !(low..=100).contains(&value) => {
            findings.error(path, format!("{value} is not between {low} and 100"));
            default
        }
        Some(value) => value,
        None => default,
    }
}

fn optional_percent(value: Option<i32>, path: &str, findings: &mut Findings) -> Option<i32> {
    value.map(|v| percent(Some(v), path, 1, v, findings))
}

/// `spec.analysis` read: the interval, the analysis and the strategy; `None` after an error.
/// Its own fields are read first, then each part that has a room of its own, once.
pub(super) fn read(
    spec: &CanarySpec,
    options: Options,
    findings: &mut Findings,
) -> Option<(Duration, Analysis, Strategy)> {
    let declared = spec.analysis.clone().unwrap_or_default();
    let analysis = &declared;
    let before = findings.0.len();
    let interval = interval(analysis, options, findings);
    let (max_weight, step_weights, step_weight) = weights(analysis, findings);
    let iterations = iterations(analysis, findings);
    let threshold = threshold(analysis, findings);
    let percents = Percents::read(analysis, findings);
    check_alerts(analysis, findings);
    check_list_lengths(analysis, findings);
    let strategy = strategy(spec, iterations);
    let (matches, session_affinity) = matches::requests(analysis, findings);
    let read = Analysis {
        threshold,
        max_weight,
        step_weights,
        step_weight,
        step_weight_promotion: percents.step_weight_promotion,
        iterations,
        mirror_percent: analysis.mirror.then_some(percents.mirror),
        primary_ready_threshold: percents.primary_ready,
        canary_ready_threshold: percents.canary_ready,
        matches,
        session_affinity,
        require_mtls: analysis.require_mtls,
        metrics: metric::metrics(&analysis.metrics, spec.standalone.is_some(), findings),
        webhooks: webhook::webhooks(&analysis.webhooks, interval, findings),
        alerts: analysis.alerts.clone(),
        windows: windows::promotion_windows(&analysis.promotion_windows, findings),
    };
    let failed = findings.0[before..]
        .iter()
        .any(|i| i.severity == super::Severity::Error);
    (!failed).then_some((interval, read, strategy))
}

/// Each list of the analysis within its cap (the CRD's `maxItems` say the same).
fn check_list_lengths(analysis: &CanaryAnalysis, findings: &mut Findings) {
    let lists = [
        ("match", analysis.r#match.len(), MAX_MATCHES),
        ("metrics", analysis.metrics.len(), MAX_METRICS),
        ("webhooks", analysis.webhooks.len(), MAX_WEBHOOKS),
        ("alerts", analysis.alerts.len(), MAX_ALERTS),
        (
            "promotionWindows",
            analysis.promotion_windows.len(),
            MAX_PROMOTION_WINDOWS,
        ),
    ];
    for (name, length, cap) in lists {
        if length > cap {
            findings.error(
                &format!("spec.analysis.{name}"),
                format!("{length} entries; at most {cap} are allowed"),
            );
        }
    }
    for (index, entry) in analysis.r#match.iter().enumerate() {
        let maps = [
            ("headers", entry.headers.len()),
            ("withoutHeaders", entry.without_headers.len()),
            ("queryParams", entry.query_params.len()),
            ("sourceLabels", entry.source_labels.len()),
        ];
        for (name, length) in maps
            .into_iter()
            .filter(|(_, length)| *length > MAX_MATCH_KEYS)
        {
            findings.error(
                &format!("spec.analysis.match[{index}].{name}"),
                format!("{length} keys; at most {MAX_MATCH_KEYS} are allowed"),
            );
        }
    }
}

/// Keys one match entry's maps may hold (the CRD's `maxProperties`).
const MAX_MATCH_KEYS: usize = 16;

/// The deployment strategy, derived from the analysis block the way Flagger derives it.
fn strategy(spec: &CanarySpec, iterations: i32) -> Strategy {
    let Some(analysis) = spec.analysis.as_ref().filter(|_| !spec.skip_analysis) else {
        return Strategy::SkipAnalysis;
    };
    match (iterations > 0, analysis.r#match.is_empty()) {
        (true, false) => Strategy::AbTesting,
        (true, true) => Strategy::BlueGreen,
        (false, _) => Strategy::Canary,
    }
}

fn threshold(analysis: &CanaryAnalysis, findings: &mut Findings) -> i32 {
    match analysis.threshold {
        None => 1,
        Some(threshold) if threshold >= 1 => threshold,
        Some(threshold) => {
            findings.error(
                "spec.analysis.threshold",
                format!("threshold {threshold} must be at least 1"),
            );
            1
        }
    }
}

/// The percent fields besides the weights.
struct Percents {
    step_weight_promotion: Option<i32>,
    mirror: i32,
    primary_ready: i32,
    canary_ready: i32,
}

impl Percents {
    fn read(analysis: &CanaryAnalysis, findings: &mut Findings) -> Percents {
        let ready = |value, path, findings: &mut Findings| {
            percent(value, path, 0, DEFAULT_READY_THRESHOLD, findings)
        };
        Percents {
            step_weight_promotion: optional_percent(
                analysis.step_weight_promotion,
                "spec.analysis.stepWeightPromotion",
                findings,
            ),
            mirror: percent(
                analysis.mirror_weight,
                "spec.analysis.mirrorWeight",
                0,
                100,
                findings,
            ),
            primary_ready: ready(
                analysis.primary_ready_threshold,
                "spec.analysis.primaryReadyThreshold",
                findings,
            ),
            canary_ready: ready(
                analysis.canary_ready_threshold,
                "spec.analysis.canaryReadyThreshold",
                findings,
            ),
        }
    }
}

/// `(maxWeight, stepWeights, stepWeight)`: the highest weight is the last of `stepWeights`
/// when given, else `maxWeight`.
fn weights(analysis: &CanaryAnalysis, findings: &mut Findings) -> (i32, Vec<i32>, Option<i32>) {
    let declared_max = percent(
        analysis.max_weight,
        "spec.analysis.maxWeight",
        1,
        DEFAULT_MAX_WEIGHT,
        findings,
    );
    let step = optional_percent(analysis.step_weight, "spec.analysis.stepWeight", findings);
    // Flagger caps the weight at maxWeight, so a larger step means one step to the maximum.
    if let Some(step) = step.filter(|step| *step > declared_max) {
        findings.warning(
            "spec.analysis.stepWeight",
            format!("stepWeight {step} is above maxWeight {declared_max}: the first step goes straight to {declared_max}"),
        );
    }
    // Flagger ignores maxWeight when stepWeights is set: the last step weight is the maximum.
    if analysis.max_weight.is_some() && !analysis.step_weights.is_empty() {
        findings.warning(
            "spec.analysis.maxWeight",
            "maxWeight is ignored when stepWeights is set: the last step weight is the highest",
        );
    }
    for (index, weight) in analysis.step_weights.iter().enumerate() {
        let path = format!("spec.analysis.stepWeights[{index}]");
        if !(1..=100).contains(weight) {
            findings.error(&path, format!("{weight} is not between 1 and 100"));
        }
        if index > 0 && *weight <= analysis.step_weights[index - 1] {
            findings.error(
                &path,
                format!(
                    "stepWeights must increase: {weight} follows {}",
                    analysis.step_weights[index - 1]
                ),
            );
        }
    }
    let max = analysis
        .step_weights
        .last()
        .copied()
        .unwrap_or(declared_max);
    (max, analysis.step_weights.clone(), step)
}

fn iterations(analysis: &CanaryAnalysis, findings: &mut Findings) -> i32 {
    match analysis.iterations {
        None if !analysis.r#match.is_empty() => {
            findings.warning(
                "spec.analysis.match",
                "match without iterations is ignored: A/B testing needs iterations",
            );
            0
        }
        None => 0,
        Some(count) if count < 0 => {
            findings.error(
                "spec.analysis.iterations",
                format!("iterations {count} must not be negative"),
            );
            0
        }
        Some(count) => {
            if count > 0 && (analysis.step_weight.is_some() || !analysis.step_weights.is_empty()) {
                findings.warning("spec.analysis.iterations", "iterations and stepWeight(s) are both set: iterations wins (A/B or blue/green), the weights are ignored");
            }
            if count == 0 && !analysis.r#match.is_empty() {
                findings.warning(
                    "spec.analysis.match",
                    "match without iterations is ignored: A/B testing needs iterations",
                );
            }
            count
        }
    }
}

fn check_alerts(analysis: &CanaryAnalysis, findings: &mut Findings) {
    for (index, alert) in analysis.alerts.iter().enumerate() {
        if alert.provider_ref.name.trim().is_empty() {
            findings.error(
                &format!("spec.analysis.alerts[{index}].providerRef.name"),
                "providerRef.name must name an AlertProvider",
            );
        }
    }
}
