//! `spec.analysis`: the interval, the weights, the metrics, the webhooks and the windows.

use std::time::Duration;

use crate::api::{parse_duration, CanaryAnalysis};

use super::{matches, Analysis, Findings, Options, ParsedWindow, SessionAffinity};

/// The shortest analysis interval a cluster rollout may use, as Flagger enforces.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest interval even the standalone runner accepts.
const MIN_STANDALONE_INTERVAL: Duration = Duration::from_millis(200);

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_MAX_WEIGHT: i32 = 100;
const DEFAULT_READY_THRESHOLD: i32 = 100;
/// Cookie lifetime when `maxAge` is unset: one day, as Flagger.
const DEFAULT_COOKIE_MAX_AGE: i32 = 86_400;

/// The analysis interval: `^[0-9]+(m|s)$` and at least 10s in a cluster, as Flagger's schema
/// says; the standalone runner also takes `250ms` and `1m30s` above its own floor.
pub(super) fn interval(
    analysis: &CanaryAnalysis,
    options: Options,
    findings: &mut Findings,
) -> Duration {
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
    if options.allow_short_intervals {
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

pub(super) fn read(
    analysis: &CanaryAnalysis,
    standalone: bool,
    findings: &mut Findings,
) -> Option<Analysis> {
    let before = findings.0.len();
    let (max_weight, step_weights, step_weight) = weights(analysis, findings);
    let iterations = iterations(analysis, findings);
    let threshold = match analysis.threshold {
        None => 1,
        Some(threshold) if threshold >= 1 => threshold,
        Some(threshold) => {
            findings.error(
                "spec.analysis.threshold",
                format!("threshold {threshold} must be at least 1"),
            );
            1
        }
    };
    let mirror_weight = percent(
        analysis.mirror_weight,
        "spec.analysis.mirrorWeight",
        0,
        100,
        findings,
    );
    let read = Analysis {
        threshold,
        max_weight,
        step_weights,
        step_weight,
        step_weight_promotion: optional_percent(
            analysis.step_weight_promotion,
            "spec.analysis.stepWeightPromotion",
            findings,
        ),
        iterations,
        mirror_percent: analysis.mirror.then_some(mirror_weight),
        primary_ready_threshold: percent(
            analysis.primary_ready_threshold,
            "spec.analysis.primaryReadyThreshold",
            0,
            DEFAULT_READY_THRESHOLD,
            findings,
        ),
        canary_ready_threshold: percent(
            analysis.canary_ready_threshold,
            "spec.analysis.canaryReadyThreshold",
            0,
            DEFAULT_READY_THRESHOLD,
            findings,
        ),
        matches: matches::read(&analysis.r#match, findings),
        session_affinity: session_affinity(analysis, findings),
        require_mtls: analysis.require_mtls,
        metrics: super::metric::read_all(&analysis.metrics, standalone, findings),
        webhooks: super::webhook::read_all(&analysis.webhooks, findings),
        alerts: analysis.alerts.clone(),
        windows: windows(analysis, findings),
    };
    check_alerts(analysis, findings);
    if iterations == 0 && !analysis.r#match.is_empty() {
        findings.warning(
            "spec.analysis.match",
            "match without iterations is ignored: A/B testing needs iterations",
        );
    }
    let failed = findings.0[before..]
        .iter()
        .any(|i| i.severity == super::Severity::Error);
    (!failed).then_some(read)
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
    if let Some(step) = step.filter(|step| *step > declared_max) {
        findings.error(
            "spec.analysis.stepWeight",
            format!("stepWeight {step} is above maxWeight {declared_max}"),
        );
    }
    for (index, weight) in analysis.step_weights.iter().enumerate() {
        let path = format!("spec.analysis.stepWeights[{index}]");
        if !(1..=100).contains(weight) {
            findings.error(&path, format!("{weight} is not between 1 and 100"));
        } else if analysis.max_weight.is_some() && *weight > declared_max {
            findings.error(
                &path,
                format!("step weight {weight} is above maxWeight {declared_max}"),
            );
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
            count
        }
    }
}

fn session_affinity(analysis: &CanaryAnalysis, findings: &mut Findings) -> Option<SessionAffinity> {
    let affinity = analysis.session_affinity.as_ref()?;
    if affinity.cookie_name.trim().is_empty() {
        findings.error(
            "spec.analysis.sessionAffinity.cookieName",
            "cookieName must not be empty",
        );
    }
    if affinity.primary_cookie_name.as_deref() == Some(affinity.cookie_name.as_str()) {
        findings.error(
            "spec.analysis.sessionAffinity.primaryCookieName",
            format!("primaryCookieName {:?} equals cookieName: the two cookies must differ or no session could be told apart", affinity.cookie_name),
        );
    }
    let max_age = match affinity.max_age {
        Some(age) if age <= 0 => {
            findings.error(
                "spec.analysis.sessionAffinity.maxAge",
                format!("maxAge {age} must be positive"),
            );
            DEFAULT_COOKIE_MAX_AGE
        }
        age => age.unwrap_or(DEFAULT_COOKIE_MAX_AGE),
    };
    Some(SessionAffinity {
        cookie_name: affinity.cookie_name.clone(),
        primary_cookie_name: affinity.primary_cookie_name.clone(),
        max_age,
    })
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

fn windows(analysis: &CanaryAnalysis, findings: &mut Findings) -> Vec<ParsedWindow> {
    use super::windows::WindowError;
    let mut read = Vec::new();
    for (index, window) in analysis.promotion_windows.iter().enumerate() {
        match ParsedWindow::parse(window) {
            Ok(parsed) => read.push(parsed),
            Err(error) => {
                let field = match error {
                    WindowError::Schedule(..) => "schedule",
                    WindowError::Duration(..) => "duration",
                    WindowError::TimeZone(..) => "timeZone",
                };
                findings.error(
                    &format!("spec.analysis.promotionWindows[{index}].{field}"),
                    error.to_string(),
                );
            }
        }
    }
    read
}
