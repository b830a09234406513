//! `spec.analysis.metrics[]`: each check's window, range, source and judge.

use std::time::Duration;

use crate::api::{
    parse_duration, CanaryMetric, ThresholdRange, BUILTIN_DURATION, BUILTIN_SUCCESS_RATE,
};
use crate::judge::Direction;

use super::{Findings, JudgeSettings, Metric, MetricSource};

const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// The longest window a metric's query may cover.
pub use crate::api::MAX_METRIC_WINDOW as MAX_WINDOW;

pub(super) fn metrics(
    declared: &[CanaryMetric],
    standalone: bool,
    findings: &mut Findings,
) -> Vec<Metric> {
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
        None => DEFAULT_WINDOW,
        Some(text) => match parse_duration(text) {
            Ok(window) if window <= MAX_WINDOW => window,
            Ok(_) => {
                let message = format!("interval {text:?} is longer than {MAX_WINDOW:?}");
                findings.error(&format!("{base}.interval"), message);
                DEFAULT_WINDOW
            }
            Err(error) => {
                findings.error(&format!("{base}.interval"), error.to_string());
                DEFAULT_WINDOW
            }
        },
    };
    check_name(&metric.name, base, findings);
    let builtin = matches!(
        metric.name.as_str(),
        BUILTIN_SUCCESS_RATE | BUILTIN_DURATION
    );
    let source = match (&metric.template_ref, &metric.query) {
        (Some(template), _) => MetricSource::Template {
            name: template.name.clone(),
            namespace: template.namespace.clone(),
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
        variables: variables(metric, base, findings),
        judge: judge(metric, base, findings),
        on_no_data: metric.on_no_data.unwrap_or_default(),
    }
}

/// A metric's name is a label of Aviary's own `/metrics` and appears in Events: 1 to 63
/// letters, digits, spaces and `._%-`, starting with a letter or digit and not ending in a
/// space, dot, underscore or dash (the CRD's pattern says the same).
fn check_name(name: &str, base: &str, findings: &mut Findings) {
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '%' | '-');
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let last_ok = name
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '%');
    if name.len() > 63 || !first_ok || !last_ok || !name.chars().all(inner) {
        findings.error(
            &format!("{base}.name"),
            format!("metric name {name:?} must be 1 to 63 letters, digits, spaces or ._%- and start with a letter or digit"),
        );
    }
}

/// Characters that could end a PromQL string or label matcher, or start a new one: a variable's
/// value is pasted into the template's query, so it must stay one value.
const QUERY_BREAKING: [char; 7] = ['"', '\'', '`', '\\', '{', '}', '\n'];

/// `templateVariables`, each value checked so it cannot change the query's meaning (a tenant's
/// `x"} or vector(1) #` would otherwise turn a failing check into a passing one).
fn variables(
    metric: &CanaryMetric,
    base: &str,
    findings: &mut Findings,
) -> std::collections::BTreeMap<String, String> {
    for (key, value) in &metric.template_variables {
        let breaking = value
            .chars()
            .find(|c| QUERY_BREAKING.contains(c) || c.is_control());
        if let Some(found) = breaking {
            findings.error(
                &format!("{base}.templateVariables.{key}"),
                format!("{found:?} may not appear in a template variable: quotes, backslashes, braces and control characters could change the query's meaning"),
            );
        }
    }
    metric.template_variables.clone()
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
