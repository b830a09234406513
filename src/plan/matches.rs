//! A/B match conditions, each string condition read into exactly one kind, and what the router
//! of a canary can express.

use std::collections::BTreeMap;

use crate::api::{CanarySpec, Matcher, RequestMatch, RouterKind, StringMatch};

use super::Findings;

/// A string condition of exactly one kind. A regex is checked to compile when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(String),
}

/// One A/B condition (a subset of Istio's HTTPMatchRequest), read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    pub name: Option<String>,
    pub headers: BTreeMap<String, Condition>,
    pub without_headers: BTreeMap<String, Condition>,
    pub query_params: BTreeMap<String, Condition>,
    pub uri: Option<Condition>,
    pub method: Option<Condition>,
    pub scheme: Option<Condition>,
    pub authority: Option<Condition>,
    pub port: Option<i32>,
    pub ignore_uri_case: Option<bool>,
    pub source_labels: BTreeMap<String, String>,
    pub source_namespace: Option<String>,
    pub gateways: Vec<String>,
}

impl Condition {
    /// The one kind `wire` names, or why it names none or several; a regex must compile.
    pub fn read(wire: &StringMatch) -> Result<Condition, String> {
        Ok(match wire.matcher().map_err(|e| e.to_string())? {
            Matcher::Exact(text) => Condition::Exact(text.to_string()),
            Matcher::Prefix(text) => Condition::Prefix(text.to_string()),
            Matcher::Suffix(text) => Condition::Suffix(text.to_string()),
            Matcher::Regex(pattern) => {
                regex::Regex::new(pattern)
                    .map_err(|error| format!("invalid regex {pattern:?}: {error}"))?;
                Condition::Regex(pattern.to_string())
            }
        })
    }
}

/// Reads every condition; each one that is not exactly one kind is an error at its path.
pub(super) fn read(declared: &[RequestMatch], findings: &mut Findings) -> Vec<RouteMatch> {
    declared
        .iter()
        .enumerate()
        .map(|(index, request)| {
            read_one(request, &format!("spec.analysis.match[{index}]"), findings)
        })
        .collect()
}

fn read_one(request: &RequestMatch, base: &str, findings: &mut Findings) -> RouteMatch {
    let mut one = |field: String, wire: &StringMatch| match Condition::read(wire) {
        Ok(condition) => Some(condition),
        Err(reason) => {
            findings.error(&format!("{base}.{field}"), reason);
            None
        }
    };
    let mut map = |section: &str,
                   wires: &BTreeMap<String, StringMatch>|
     -> BTreeMap<String, Condition> {
        wires
            .iter()
            .filter_map(|(key, wire)| Some((key.clone(), one(format!("{section}.{key}"), wire)?)))
            .collect()
    };
    let headers = map("headers", &request.headers);
    let without_headers = map("withoutHeaders", &request.without_headers);
    let query_params = map("queryParams", &request.query_params);
    let mut single = |field: &str, wire: &Option<StringMatch>| {
        wire.as_ref().and_then(|wire| one(field.to_string(), wire))
    };
    RouteMatch {
        name: request.name.clone(),
        headers,
        without_headers,
        query_params,
        uri: single("uri", &request.uri),
        method: single("method", &request.method),
        scheme: single("scheme", &request.scheme),
        authority: single("authority", &request.authority),
        port: request.port,
        ignore_uri_case: request.ignore_uri_case,
        source_labels: request.source_labels.clone(),
        source_namespace: request.source_namespace.clone(),
        gateways: request.gateways.clone(),
    }
}

/// What the canary's router can express: a field it cannot honour is refused, not ignored.
pub(super) fn check_router(spec: &CanarySpec, router: RouterKind, findings: &mut Findings) {
    if router.needs_parent_refs() && spec.service.gateway_refs.as_ref().is_none_or(Vec::is_empty) {
        findings.error(
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
            findings.error(
                &format!("spec.service.gatewayRefs[{index}].name"),
                "each gatewayRef needs a name",
            );
        }
    }
    let Some(analysis) = &spec.analysis else {
        return;
    };
    if analysis.mirror && !router.can_mirror() {
        findings.error(
            "spec.analysis.mirror",
            format!("provider {router} cannot mirror traffic; use istio or gatewayapi:v1"),
        );
    }
    if !analysis.r#match.is_empty() && !router.can_match() {
        findings.error(
            "spec.analysis.match",
            format!("provider {router} cannot route by header or cookie; use istio or gatewayapi:v1 for A/B testing"),
        );
    }
    if analysis.session_affinity.is_some() && !router.can_pin_sessions() {
        findings.error(
            "spec.analysis.sessionAffinity",
            format!(
                "provider {router} cannot keep sessions on the canary; use istio or gatewayapi:v1"
            ),
        );
    }
}
