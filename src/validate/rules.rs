//! The semantic checks: what serde's types cannot say about a manifest. A Canary's are made
//! by the plan's reading ([`crate::plan::read`]); the other kinds are checked here.

use crate::api::{AlertProviderSpec, CanarySpec, MetricTemplateSpec};

use super::{Options, Severity, Sink};

const TEMPLATE_VARIABLES: [&str; 6] = [
    "name",
    "namespace",
    "target",
    "service",
    "ingress",
    "interval",
];

pub fn check_canary(
    spec: &CanarySpec,
    options: Options,
    sink: &mut Sink<'_>,
) -> Option<crate::plan::Plan> {
    let (plan, findings) = crate::plan::read(spec, options);
    for issue in findings.0 {
        match issue.severity {
            Severity::Error => sink.error(&issue.path, issue.message),
            Severity::Warning => sink.warning(&issue.path, issue.message),
        }
    }
    plan
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
    if let Err(problem) = crate::metrics::prometheus::template_headers(&spec.provider.headers) {
        sink.error("spec.provider.headers", problem);
    }
    if !spec.provider.headers.is_empty() && spec.provider.address.is_none() {
        sink.error(
            "spec.provider.headers",
            "headers need the template's own provider.address: they are never sent to the controller's shared Prometheus",
        );
    }
    if spec.provider.region.is_some() {
        sink.warning(
            "spec.provider.region",
            "region is read by cloud providers (CloudWatch); Prometheus ignores it",
        );
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
