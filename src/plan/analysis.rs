//! `spec.analysis`: the interval, the weights, the metrics, the webhooks and the windows.

use std::time::Duration;

use crate::api::{
    parse_duration, CanaryAnalysis, CanaryMetric, CanaryWebhook, ThresholdRange, BUILTIN_DURATION,
    BUILTIN_SUCCESS_RATE,
};
use crate::judge::Direction;

use super::{
    matches, Analysis, Findings, JudgeSettings, Metric, MetricSource, Options, ParsedWindow,
    SessionAffinity, Webhook,
};

/// The shortest analysis interval a cluster rollout may use, as Flagger enforces.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest interval even the standalone runner accepts.
const MIN_STANDALONE_INTERVAL: Duration = Duration::from_millis(200);

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_METRIC_WINDOW: Duration = Duration::from_secs(60);
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);
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
        metrics: metrics(&analysis.metrics, standalone, findings),
        webhooks: webhooks(&analysis.webhooks, findings),
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

fn metrics(declared: &[CanaryMetric], standalone: bool, findings: &mut Findings) -> Vec<Metric> {
    declared
        .iter()
        .enumerate()
        .map(|(index, metric)| {
            read_metric(
                metric,
                &format!("spec.analysis.metrics[{index}]"),
                standalone,
                findings,
            )
        })
        .collect()
}

fn read_metric(
    metric: &CanaryMetric,
    base: &str,
    standalone: bool,
    findings: &mut Findings,
) -> Metric {
    let window = match &metric.interval {
        None => DEFAULT_METRIC_WINDOW,
        Some(text) => parse_duration(text).unwrap_or_else(|error| {
            findings.error(&format!("{base}.interval"), error.to_string());
            DEFAULT_METRIC_WINDOW
        }),
    };
    let builtin = matches!(
        metric.name.as_str(),
        BUILTIN_SUCCESS_RATE | BUILTIN_DURATION
    );
    let source = match (&metric.template_ref, &metric.query) {
        (Some(template), _) => MetricSource::Template {
            name: template.name.clone(),
            namespace: template.namespace.clone(),
            variables: metric.template_variables.clone(),
        },
        (None, Some(query)) => MetricSource::Query(query.clone()),
        (None, None) => {
            if !builtin {
                findings.error(&format!("{base}.templateRef"), format!(
                    "metric {:?} is not a built-in ({BUILTIN_SUCCESS_RATE}, {BUILTIN_DURATION}) and has no templateRef",
                    metric.name
                ));
            }
            MetricSource::Builtin
        }
    };
    if metric.compare.is_some() && standalone {
        findings.error(&format!("{base}.compare"), "compare: primary needs Prometheus (the controller); a standalone run judges by thresholdRange");
    }
    if metric.threshold_range.is_none() && metric.threshold.is_none() && metric.compare.is_none() {
        findings.warning(
            base,
            format!(
                "metric {:?} has no thresholdRange: every value passes",
                metric.name
            ),
        );
    }
    Metric {
        name: metric.name.clone(),
        window,
        range: range(metric, base, findings),
        min_samples: metric.min_samples,
        source,
        judge: judge(metric, base, findings),
        on_no_data: metric.on_no_data.unwrap_or_default(),
    }
}

/// `thresholdRange`, or the deprecated `threshold` the way Flagger reads it for the built-ins:
/// a minimum for success rate, a maximum for everything else.
fn range(metric: &CanaryMetric, base: &str, findings: &mut Findings) -> ThresholdRange {
    if let Some(range) = &metric.threshold_range {
        if let (Some(min), Some(max)) = (range.min, range.max) {
            if min > max {
                findings.error(
                    &format!("{base}.thresholdRange"),
                    format!("thresholdRange min {min} is greater than max {max}"),
                );
            }
        }
        return range.clone();
    }
    match metric.threshold {
        Some(limit) if metric.name == BUILTIN_SUCCESS_RATE => ThresholdRange {
            min: Some(limit),
            max: None,
        },
        Some(limit) => ThresholdRange {
            min: None,
            max: Some(limit),
        },
        None => ThresholdRange::default(),
    }
}

fn judge(metric: &CanaryMetric, base: &str, findings: &mut Findings) -> Option<JudgeSettings> {
    let declared = metric.judge.clone().unwrap_or_default();
    if metric.judge.is_some() && metric.compare.is_none() {
        findings.warning(
            &format!("{base}.judge"),
            "judge has no effect without compare: primary",
        );
    }
    let confidence = declared.confidence.unwrap_or(0.99);
    if !(0.5..1.0).contains(&confidence) {
        findings.error(
            &format!("{base}.judge.confidence"),
            format!("confidence {confidence} must be at least 0.5 and below 1"),
        );
    }
    for (field, value) in [
        ("allowedIncrease", declared.allowed_increase),
        ("allowedDecrease", declared.allowed_decrease),
    ] {
        if value.is_some_and(|v| v < 0.0 || !v.is_finite()) {
            findings.error(
                &format!("{base}.judge.{field}"),
                format!("{field} is a percent and must not be negative"),
            );
        }
    }
    metric.compare?;
    // Error counts allow no increase by default; every other metric 20%.
    let counts = metric.name == BUILTIN_SUCCESS_RATE;
    Some(JudgeSettings {
        confidence,
        allowed_increase: declared
            .allowed_increase
            .unwrap_or(if counts { 0.0 } else { 20.0 })
            / 100.0,
        allowed_decrease: declared.allowed_decrease.unwrap_or(20.0) / 100.0,
        direction: declared.direction.unwrap_or(if counts {
            Direction::Decrease
        } else {
            Direction::Increase
        }),
    })
}

fn webhooks(declared: &[CanaryWebhook], findings: &mut Findings) -> Vec<Webhook> {
    let mut seen = std::collections::BTreeSet::new();
    let mut read = Vec::new();
    for (index, hook) in declared.iter().enumerate() {
        let base = format!("spec.analysis.webhooks[{index}]");
        if !seen.insert(&hook.name) {
            findings.error(
                &format!("{base}.name"),
                format!("webhook name {:?} is used twice", hook.name),
            );
        }
        if let Some(webhook) = read_webhook(hook, &base, findings) {
            read.push(webhook);
        }
    }
    read
}

fn read_webhook(hook: &CanaryWebhook, base: &str, findings: &mut Findings) -> Option<Webhook> {
    let timeout = match &hook.timeout {
        None => DEFAULT_HOOK_TIMEOUT,
        Some(text) => parse_duration(text).unwrap_or_else(|error| {
            findings.error(&format!("{base}.timeout"), error.to_string());
            DEFAULT_HOOK_TIMEOUT
        }),
    };
    let retries = match hook.retries {
        Some(retries) if retries < 0 => {
            findings.error(&format!("{base}.retries"), "retries must not be negative");
            0
        }
        retries => retries.unwrap_or(0) as u32,
    };
    if hook
        .secret_ref
        .as_ref()
        .is_some_and(|s| s.name.trim().is_empty())
    {
        findings.error(
            &format!("{base}.secretRef.name"),
            "secretRef.name must name a Secret in the Canary's namespace",
        );
    }
    let url = match reqwest::Url::parse(&hook.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        Ok(url) => {
            findings.error(
                &format!("{base}.url"),
                format!("scheme {:?} is not http or https", url.scheme()),
            );
            return None;
        }
        Err(error) => {
            findings.error(
                &format!("{base}.url"),
                format!("{:?} is not a URL: {error}", hook.url),
            );
            return None;
        }
    };
    Some(Webhook {
        name: hook.name.clone(),
        kind: hook.r#type,
        url,
        timeout,
        retries,
        metadata: hook.metadata.clone(),
        mute_alert: hook.mute_alert,
        secret: hook
            .secret_ref
            .as_ref()
            .map(|s| (s.name.clone(), s.key().to_string())),
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
