//! The semantic checks: what serde's types cannot say about a manifest.

use std::time::Duration;

use crate::api::{
    parse_duration, AlertProviderSpec, CanaryAnalysis, CanarySpec, Matcher, MetricTemplateSpec,
    RouterKind, BUILTIN_DURATION, BUILTIN_SUCCESS_RATE,
};

use super::{Options, Sink};

/// The shortest analysis interval a cluster rollout may use, as Flagger enforces.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest interval even the standalone runner accepts.
const MIN_STANDALONE_INTERVAL: Duration = Duration::from_millis(200);

const TEMPLATE_VARIABLES: [&str; 6] = [
    "name",
    "namespace",
    "target",
    "service",
    "ingress",
    "interval",
];

pub fn check_canary(spec: &CanarySpec, options: Options, sink: &mut Sink<'_>) {
    if spec.target_ref.name.trim().is_empty() {
        sink.error(
            "spec.targetRef.name",
            "targetRef.name must name the Deployment or DaemonSet to roll out",
        );
    }
    if let Some(kind) = &spec.target_ref.kind {
        if !matches!(kind.as_str(), "Deployment" | "DaemonSet") {
            sink.error(
                "spec.targetRef.kind",
                format!("kind {kind:?} cannot be rolled out; use Deployment or DaemonSet"),
            );
        }
    }
    if !(1..=65535).contains(&spec.service.port) {
        sink.error(
            "spec.service.port",
            format!("port {} is not between 1 and 65535", spec.service.port),
        );
    }
    if let Some(seconds) = spec.progress_deadline_seconds {
        if seconds <= 0 {
            sink.error(
                "spec.progressDeadlineSeconds",
                format!("progressDeadlineSeconds {seconds} must be positive"),
            );
        }
    }
    if let Some(analysis) = &spec.analysis {
        check_analysis(analysis, options, spec.standalone.is_some(), sink);
    }
    if spec.standalone.is_none() {
        check_router(spec, options, sink);
    }
    if let Some(standalone) = &spec.standalone {
        for (path, address) in [
            ("spec.standalone.listen", &standalone.listen),
            (
                "spec.standalone.primary.address",
                &standalone.primary.address,
            ),
            ("spec.standalone.canary.address", &standalone.canary.address),
        ] {
            if address.parse::<std::net::SocketAddr>().is_err() {
                sink.error(
                    path,
                    format!("{address:?} is not an ip:port address, for example 127.0.0.1:8080"),
                );
            }
        }
        if standalone.primary.address == standalone.canary.address {
            sink.error(
                "spec.standalone.canary.address",
                "primary and canary must listen on different addresses",
            );
        }
    }
}

fn check_interval(text: &str, path: &str, options: Options, sink: &mut Sink<'_>) {
    let plain = text.len() > 1
        && text.ends_with(['s', 'm'])
        && !text.ends_with("ms")
        && text[..text.len() - 1].chars().all(|c| c.is_ascii_digit());
    match parse_duration(text) {
        Ok(interval) if options.allow_short_intervals => {
            if interval < MIN_STANDALONE_INTERVAL {
                sink.error(path, format!("interval {text:?} is below {MIN_STANDALONE_INTERVAL:?}, the standalone minimum"));
            }
        }
        Ok(interval) if !plain => {
            sink.error(path, format!("interval {text:?} must match ^[0-9]+(m|s)$, for example 30s or 1m"));
            let _ = interval;
        }
        Ok(interval) if interval < MIN_INTERVAL => sink.error(
            path,
            format!("interval {text:?} is below the minimum of 10s (only `aviary run --allow-short-intervals` may go lower)"),
        ),
        Ok(_) => {}
        Err(error) => sink.error(path, error.to_string()),
    }
}

fn check_percent(value: Option<i32>, path: &str, low: i32, sink: &mut Sink<'_>) {
    if let Some(value) = value {
        if !(low..=100).contains(&value) {
            sink.error(path, format!("{value} is not between {low} and 100"));
        }
    }
}

fn check_analysis(
    analysis: &CanaryAnalysis,
    options: Options,
    standalone: bool,
    sink: &mut Sink<'_>,
) {
    if let Some(interval) = &analysis.interval {
        check_interval(interval, "spec.analysis.interval", options, sink);
    }
    if let Some(threshold) = analysis.threshold {
        if threshold < 1 {
            sink.error(
                "spec.analysis.threshold",
                format!("threshold {threshold} must be at least 1"),
            );
        }
    }
    check_percent(analysis.max_weight, "spec.analysis.maxWeight", 1, sink);
    check_percent(analysis.step_weight, "spec.analysis.stepWeight", 1, sink);
    check_percent(
        analysis.step_weight_promotion,
        "spec.analysis.stepWeightPromotion",
        1,
        sink,
    );
    check_percent(
        analysis.mirror_weight,
        "spec.analysis.mirrorWeight",
        0,
        sink,
    );
    check_percent(
        analysis.primary_ready_threshold,
        "spec.analysis.primaryReadyThreshold",
        0,
        sink,
    );
    check_percent(
        analysis.canary_ready_threshold,
        "spec.analysis.canaryReadyThreshold",
        0,
        sink,
    );
    let max_weight = analysis
        .max_weight
        .unwrap_or(CanaryAnalysis::DEFAULT_MAX_WEIGHT);
    if let Some(step) = analysis.step_weight {
        if step > max_weight {
            sink.error(
                "spec.analysis.stepWeight",
                format!("stepWeight {step} is above maxWeight {max_weight}"),
            );
        }
    }
    for (index, weight) in analysis.step_weights.iter().enumerate() {
        let path = format!("spec.analysis.stepWeights[{index}]");
        if !(1..=100).contains(weight) {
            sink.error(&path, format!("{weight} is not between 1 and 100"));
        } else if analysis.max_weight.is_some() && *weight > max_weight {
            sink.error(
                &path,
                format!("step weight {weight} is above maxWeight {max_weight}"),
            );
        }
        if index > 0 && *weight <= analysis.step_weights[index - 1] {
            sink.error(
                &path,
                format!(
                    "stepWeights must increase: {weight} follows {}",
                    analysis.step_weights[index - 1]
                ),
            );
        }
    }
    let iterations = analysis.iterations.unwrap_or(0);
    if let Some(count) = analysis.iterations {
        if count < 0 {
            sink.error(
                "spec.analysis.iterations",
                format!("iterations {count} must not be negative"),
            );
        }
    }
    if iterations > 0 && (analysis.step_weight.is_some() || !analysis.step_weights.is_empty()) {
        sink.warning("spec.analysis.iterations", "iterations and stepWeight(s) are both set: iterations wins (A/B or blue/green), the weights are ignored");
    }
    if iterations == 0 && !analysis.r#match.is_empty() {
        sink.warning(
            "spec.analysis.match",
            "match without iterations is ignored: A/B testing needs iterations",
        );
    }
    check_matches(analysis, sink);
    if let Some(affinity) = &analysis.session_affinity {
        if affinity.cookie_name.trim().is_empty() {
            sink.error(
                "spec.analysis.sessionAffinity.cookieName",
                "cookieName must not be empty",
            );
        }
    }
    for (index, metric) in analysis.metrics.iter().enumerate() {
        let base = format!("spec.analysis.metrics[{index}]");
        if let Some(range) = &metric.threshold_range {
            if let (Some(min), Some(max)) = (range.min, range.max) {
                if min > max {
                    sink.error(
                        &format!("{base}.thresholdRange"),
                        format!("thresholdRange min {min} is greater than max {max}"),
                    );
                }
            }
        }
        if let Some(interval) = &metric.interval {
            if let Err(error) = parse_duration(interval) {
                sink.error(&format!("{base}.interval"), error.to_string());
            }
        }
        let builtin = matches!(
            metric.name.as_str(),
            BUILTIN_SUCCESS_RATE | BUILTIN_DURATION
        );
        if !builtin && metric.template_ref.is_none() && metric.query.is_none() {
            sink.error(&format!("{base}.templateRef"), format!(
                "metric {:?} is not a built-in ({BUILTIN_SUCCESS_RATE}, {BUILTIN_DURATION}) and has no templateRef",
                metric.name
            ));
        }
        if let Some(judge) = &metric.judge {
            if metric.compare.is_none() {
                sink.warning(
                    &format!("{base}.judge"),
                    "judge has no effect without compare: primary",
                );
            }
            if let Some(confidence) = judge.confidence {
                if !(0.5..1.0).contains(&confidence) {
                    sink.error(
                        &format!("{base}.judge.confidence"),
                        format!("confidence {confidence} must be at least 0.5 and below 1"),
                    );
                }
            }
            for (field, value) in [
                ("allowedIncrease", judge.allowed_increase),
                ("allowedDecrease", judge.allowed_decrease),
            ] {
                if value.is_some_and(|v| v < 0.0) {
                    sink.error(
                        &format!("{base}.judge.{field}"),
                        format!("{field} is a percent and must not be negative"),
                    );
                }
            }
        }
        if metric.compare.is_some() && standalone {
            sink.error(
                &format!("{base}.compare"),
                "compare: primary needs Prometheus (the controller); a standalone run judges by thresholdRange",
            );
        }
        if metric.threshold_range.is_none()
            && metric.threshold.is_none()
            && metric.compare.is_none()
        {
            sink.warning(
                &base,
                format!(
                    "metric {:?} has no thresholdRange: every value passes",
                    metric.name
                ),
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, hook) in analysis.webhooks.iter().enumerate() {
        let base = format!("spec.analysis.webhooks[{index}]");
        if !seen.insert(&hook.name) {
            sink.error(
                &format!("{base}.name"),
                format!("webhook name {:?} is used twice", hook.name),
            );
        }
        match reqwest::Url::parse(&hook.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => sink.error(
                &format!("{base}.url"),
                format!("scheme {:?} is not http or https", url.scheme()),
            ),
            Err(error) => sink.error(
                &format!("{base}.url"),
                format!("{:?} is not a URL: {error}", hook.url),
            ),
        }
        if let Some(timeout) = &hook.timeout {
            if let Err(error) = parse_duration(timeout) {
                sink.error(&format!("{base}.timeout"), error.to_string());
            }
        }
        if hook.retries.is_some_and(|r| r < 0) {
            sink.error(&format!("{base}.retries"), "retries must not be negative");
        }
        if let Some(secret) = &hook.secret_ref {
            if secret.name.trim().is_empty() {
                sink.error(
                    &format!("{base}.secretRef.name"),
                    "secretRef.name must name a Secret in the Canary's namespace",
                );
            }
        }
    }
    for (index, alert) in analysis.alerts.iter().enumerate() {
        if alert.provider_ref.name.trim().is_empty() {
            sink.error(
                &format!("spec.analysis.alerts[{index}].providerRef.name"),
                "providerRef.name must name an AlertProvider",
            );
        }
    }
    check_promotion_windows(analysis, sink);
}

/// Every string condition of `analysis.match` is exactly one of exact, prefix, suffix or regex,
/// and a regex compiles: otherwise two routers could read the same condition differently.
fn check_matches(analysis: &CanaryAnalysis, sink: &mut Sink<'_>) {
    for (index, request) in analysis.r#match.iter().enumerate() {
        for (field, condition) in request.conditions() {
            let path = format!("spec.analysis.match[{index}].{field}");
            match condition.matcher() {
                Err(reason) => sink.error(&path, reason.to_string()),
                Ok(Matcher::Regex(pattern)) => {
                    if let Err(error) = regex::Regex::new(pattern) {
                        sink.error(&path, format!("invalid regex {pattern:?}: {error}"));
                    }
                }
                Ok(_) => {}
            }
        }
    }
}

fn check_promotion_windows(analysis: &CanaryAnalysis, sink: &mut Sink<'_>) {
    use crate::engine::windows::{ParsedWindow, WindowError};
    for (index, window) in analysis.promotion_windows.iter().enumerate() {
        let base = format!("spec.analysis.promotionWindows[{index}]");
        if let Err(error) = ParsedWindow::parse(window) {
            let field = match error {
                WindowError::Schedule(..) => "schedule",
                WindowError::Duration(..) => "duration",
                WindowError::TimeZone(..) => "timeZone",
            };
            sink.error(&format!("{base}.{field}"), error.to_string());
        }
    }
}

/// What the canary's router can express: a field it cannot honour is refused, not ignored.
fn check_router(spec: &CanarySpec, options: Options, sink: &mut Sink<'_>) {
    let router = match &spec.provider {
        Some(name) => match RouterKind::parse(name) {
            Ok(router) => router,
            Err(error) => {
                sink.error("spec.provider", error.to_string());
                return;
            }
        },
        None => options.default_router.unwrap_or(RouterKind::Istio),
    };
    if router.needs_parent_refs() && spec.service.gateway_refs.as_ref().is_none_or(Vec::is_empty) {
        sink.error(
            "spec.service.gatewayRefs",
            format!("provider {router} needs gatewayRefs: the Gateway (or, for mesh traffic, the Service) the HTTPRoute attaches to"),
        );
    }
    for (index, parent) in spec.service.gateway_refs.iter().flatten().enumerate() {
        if parent
            .get("name")
            .and_then(|n| n.as_str())
            .is_none_or(str::is_empty)
        {
            sink.error(
                &format!("spec.service.gatewayRefs[{index}].name"),
                "each gatewayRef needs a name",
            );
        }
    }
    let Some(analysis) = &spec.analysis else {
        return;
    };
    if analysis.mirror && !router.can_mirror() {
        sink.error(
            "spec.analysis.mirror",
            format!("provider {router} cannot mirror traffic; use istio or gatewayapi:v1"),
        );
    }
    if !analysis.r#match.is_empty() && !router.can_match() {
        sink.error(
            "spec.analysis.match",
            format!("provider {router} cannot route by header or cookie; use istio or gatewayapi:v1 for A/B testing"),
        );
    }
    if let Some(affinity) = &analysis.session_affinity {
        if !router.can_pin_sessions() {
            sink.error(
                "spec.analysis.sessionAffinity",
                format!("provider {router} cannot keep sessions on the canary; use istio or gatewayapi:v1"),
            );
        }
        if affinity.primary_cookie_name.as_deref() == Some(affinity.cookie_name.as_str()) {
            sink.error(
                "spec.analysis.sessionAffinity.primaryCookieName",
                format!(
                    "primaryCookieName {:?} equals cookieName: the two cookies must differ or no session could be told apart",
                    affinity.cookie_name
                ),
            );
        }
    }
}

pub fn check_metric_template(spec: &MetricTemplateSpec, sink: &mut Sink<'_>) {
    if spec.provider.r#type != "prometheus" {
        sink.error(
            "spec.provider.type",
            format!(
                "provider type {:?} is not supported; use prometheus",
                spec.provider.r#type
            ),
        );
    }
    if spec.query.trim().is_empty() {
        sink.error("spec.query", "query must not be empty");
    }
    for problem in template_problems(&spec.query) {
        sink.error("spec.query", problem);
    }
}

/// Problems with the `{{ … }}` placeholders of a query: unclosed braces and unknown variables.
pub fn template_problems(query: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rest = query;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            problems.push(format!(
                "unclosed {{{{ at {:?}",
                after.chars().take(20).collect::<String>()
            ));
            break;
        };
        let variable = after[..close].trim();
        let known = TEMPLATE_VARIABLES.contains(&variable)
            || variable.strip_prefix("variables.").is_some_and(|name| {
                !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            });
        if !known {
            problems.push(format!(
                "unknown variable {{{{ {variable} }}}}; use name, namespace, target, service, interval or variables.<key>"
            ));
        }
        rest = &after[close + 2..];
    }
    problems
}

pub fn check_alert_provider(spec: &AlertProviderSpec, sink: &mut Sink<'_>) {
    if !crate::notify::KINDS.contains(&spec.r#type.as_str()) {
        sink.error(
            "spec.type",
            format!(
                "type {:?} is not one of {}",
                spec.r#type,
                crate::notify::KINDS.join(", ")
            ),
        );
    }
    if spec.address.is_none() && spec.secret_ref.is_none() {
        sink.warning(
            "spec.address",
            "no address and no secretRef: alerts have nowhere to go",
        );
    }
}
