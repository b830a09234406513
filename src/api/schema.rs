//! Schema helpers: durations checked as the controller reads them, and the closed sets (enums)
//! of fields whose Rust type is a plain string.

use std::time::Duration;

use schemars::{json_schema, Schema, SchemaGenerator};

use super::duration::{
    go_duration, MAX_DURATION, MAX_INTERVAL, MAX_METRIC_WINDOW, MAX_WEBHOOK_TIMEOUT,
    MAX_WINDOW_LENGTH,
};

/// What [`super::parse_duration`] reads: whole numbers of ms, s, m or h, at most 12 digits each
/// (so no part can overflow).
const DURATION_PATTERN: &str = "^([0-9]{1,12}(ms|s|m|h))+$";

/// A duration string the API server checks as the controller would: its syntax by pattern, its
/// cap with CEL's `duration()` (Go's parser, which reads every string the pattern allows).
fn capped_duration(cap: Duration, what: &str) -> Schema {
    let cap = go_duration(cap);
    json_schema!({
        "type": "string",
        "maxLength": 64,
        "pattern": DURATION_PATTERN,
        "x-kubernetes-validations": [{
            "rule": format!("duration(self) <= duration('{cap}')"),
            "message": format!("{what} may be at most {cap}"),
        }]
    })
}

/// `analysis.interval`.
pub fn interval(_: &mut SchemaGenerator) -> Schema {
    capped_duration(MAX_INTERVAL, "an analysis interval")
}

/// `metrics[].interval`, the window a query covers.
pub fn metric_window(_: &mut SchemaGenerator) -> Schema {
    capped_duration(MAX_METRIC_WINDOW, "a metric's interval")
}

/// `webhooks[].timeout`.
pub fn webhook_timeout(_: &mut SchemaGenerator) -> Schema {
    capped_duration(MAX_WEBHOOK_TIMEOUT, "a webhook timeout")
}

/// `promotionWindows[].duration`.
pub fn window_length(_: &mut SchemaGenerator) -> Schema {
    capped_duration(MAX_WINDOW_LENGTH, "a promotion window")
}

/// Any other duration (route timeouts and the like).
pub fn duration(_: &mut SchemaGenerator) -> Schema {
    capped_duration(MAX_DURATION, "a duration")
}

/// `spec.provider`: the names [`super::RouterKind::parse`] reads.
pub fn provider(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "enum": super::provider::PROVIDERS })
}

/// `AlertProvider.spec.type`: the notifiers there are.
pub fn alert_kind(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "enum": crate::notify::KINDS })
}

/// `MetricTemplate.spec.provider.type`: the metric providers there are.
pub fn metric_provider_kind(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "enum": ["prometheus"] })
}

fn one_of(names: &[&str]) -> Schema {
    json_schema!({ "type": "string", "enum": names })
}

/// `targetRef.kind`: the workloads Flagger rolls out (a Knative Service among them).
pub fn target_kind(_: &mut SchemaGenerator) -> Schema {
    one_of(&["Deployment", "DaemonSet", "Service"])
}

/// `autoscalerRef.kind`.
pub fn autoscaler_kind(_: &mut SchemaGenerator) -> Schema {
    one_of(&["HorizontalPodAutoscaler", "ScaledObject"])
}

/// `ingressRef.kind`.
pub fn ingress_kind(_: &mut SchemaGenerator) -> Schema {
    one_of(&["Ingress"])
}

/// `upstreamRef.kind`.
pub fn upstream_kind(_: &mut SchemaGenerator) -> Schema {
    one_of(&["Upstream"])
}

/// `routeRef.kind`.
pub fn route_kind(_: &mut SchemaGenerator) -> Schema {
    one_of(&["ApisixRoute"])
}

/// `service.trafficDistribution`: Kubernetes' Service field.
pub fn traffic_distribution(_: &mut SchemaGenerator) -> Schema {
    one_of(&["PreferClose", "PreferSameZone", "PreferSameNode"])
}

/// Kubernetes' int-or-string (`targetPort: 8080` or `targetPort: http`).
pub fn int_or_string(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

/// A timestamp serialised as RFC 3339.
pub fn optional_timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "date-time",
        "nullable": true
    })
}
