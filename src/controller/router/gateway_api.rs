//! Gateway API: one HTTPRoute `<svc>` attached to `spec.service.gatewayRefs` (a Gateway, or the
//! Service itself for mesh traffic, GAMMA style) with weighted backendRefs to `<svc>-primary` and
//! `<svc>-canary`. Rules are ordered most specific first: session cookies, then the A/B matches,
//! then the weighted rule, which is always last so the weights can be read back from it.

use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::session::{session_cookies, Cookie, SessionCookies};
use super::ObjectRouter;
use crate::api::{Canary, HeaderOperations};
use crate::controller::objects::{owner_reference, service_name};
use crate::engine::Routes;
use crate::plan::{Condition, Plan, RouteMatch};

const KIND: &str = "HTTPRoute";

fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        KIND,
    ))
}

/// A string condition as Gateway API's `{type, value}`: prefix and suffix become anchored
/// regular expressions, since HTTPRoute headers only know Exact and RegularExpression.
fn typed_value(condition: &Condition) -> (&'static str, String) {
    match condition {
        Condition::Exact(exact) => ("Exact", exact.clone()),
        Condition::Regex(regex) => ("RegularExpression", regex.clone()),
        Condition::Prefix(prefix) => ("RegularExpression", format!("^{}.*", regex::escape(prefix))),
        Condition::Suffix(suffix) => ("RegularExpression", format!(".*{}$", regex::escape(suffix))),
    }
}

fn named_matches(conditions: &std::collections::BTreeMap<String, Condition>) -> Vec<Value> {
    conditions
        .iter()
        .map(|(name, condition)| {
            let (kind, value) = typed_value(condition);
            json!({ "type": kind, "name": name, "value": value })
        })
        .collect()
}

/// An HTTPRouteMatch from an A/B condition (Istio's vocabulary, which Flagger manifests use).
fn route_match(condition: &RouteMatch) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(uri) = &condition.uri {
        let path = match uri {
            Condition::Exact(exact) => json!({ "type": "Exact", "value": exact }),
            Condition::Prefix(prefix) => json!({ "type": "PathPrefix", "value": prefix }),
            other => {
                let (kind, value) = typed_value(other);
                json!({ "type": kind, "value": value })
            }
        };
        out.insert("path".into(), path);
    }
    let headers = named_matches(&condition.headers);
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Array(headers));
    }
    let params = named_matches(&condition.query_params);
    if !params.is_empty() {
        out.insert("queryParams".into(), Value::Array(params));
    }
    if let Some(Condition::Exact(method)) = &condition.method {
        out.insert("method".into(), json!(method));
    }
    Value::Object(out)
}

fn cookie_match(cookie: &Cookie) -> Value {
    json!({ "headers": [{ "type": "RegularExpression", "name": "Cookie", "value": cookie.request_pattern }] })
}

fn header_filter(kind: &str, field: &str, operations: &HeaderOperations) -> Value {
    let pairs = |map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect::<Vec<_>>()
    };
    let mut modifier = serde_json::Map::new();
    if !operations.set.is_empty() {
        modifier.insert("set".into(), json!(pairs(&operations.set)));
    }
    if !operations.add.is_empty() {
        modifier.insert("add".into(), json!(pairs(&operations.add)));
    }
    if !operations.remove.is_empty() {
        modifier.insert("remove".into(), json!(operations.remove));
    }
    json!({ "type": kind, field: modifier })
}

fn set_cookie_filter(cookie: &Cookie) -> Value {
    json!({ "type": "ResponseHeaderModifier", "responseHeaderModifier": { "add": [{ "name": "Set-Cookie", "value": cookie.set_cookie }] } })
}

/// The A/B matches of the canary, as the route carries them.
fn ab_matches(plan: &Plan) -> Vec<Value> {
    plan.analysis.matches.iter().map(route_match).collect()
}

/// How the rules of one HTTPRoute are written: the two backends, and what every rule carries.
struct Rules<'a> {
    service: &'a crate::api::CanaryService,
    primary: String,
    canary: String,
    /// The filters of spec.service: header changes and extra mirrors.
    filters: Vec<Value>,
}

impl Rules<'_> {
    fn backend(&self, host: &str, weight: i32, filters: Vec<Value>) -> Value {
        let port = self.service.port;
        let mut out =
            json!({ "group": "", "kind": "Service", "name": host, "port": port, "weight": weight });
        if !filters.is_empty() {
            out["filters"] = Value::Array(filters);
        }
        out
    }

    fn rule(&self, matches: Vec<Value>, filters: Vec<Value>, backends: Vec<Value>) -> Value {
        let mut out = serde_json::Map::new();
        if !matches.is_empty() {
            out.insert("matches".into(), Value::Array(matches));
        }
        if !filters.is_empty() {
            out.insert("filters".into(), Value::Array(filters));
        }
        out.insert("backendRefs".into(), Value::Array(backends));
        let mut timeouts = serde_json::Map::new();
        if let Some(timeout) = &self.service.timeout {
            timeouts.insert("request".into(), json!(timeout));
        }
        if let Some(timeout) = &self.service.backend_timeout {
            timeouts.insert("backendRequest".into(), json!(timeout));
        }
        if !timeouts.is_empty() {
            out.insert("timeouts".into(), Value::Object(timeouts));
        }
        Value::Object(out)
    }

    /// Everything to one side for requests matching `matches`.
    fn pinned(&self, matches: Vec<Value>, host: &str) -> Value {
        let backends = vec![self.backend(host, 100, vec![])];
        self.rule(matches, self.filters.clone(), backends)
    }

    /// The weighted rule, always last so the weights can be read back from it.
    fn weighted(&self, routes: Routes, cookies: Option<&SessionCookies>) -> Value {
        let mut filters = self.filters.clone();
        if let Some(percent) = routes.mirror_percent {
            let port = self.service.port;
            filters.push(json!({
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": { "group": "", "kind": "Service", "name": self.canary, "port": port },
                    "percent": percent
                }
            }));
        }
        let cookie_filter =
            |cookie: Option<&Cookie>| cookie.map(set_cookie_filter).into_iter().collect();
        let backends = vec![
            self.backend(
                &self.primary,
                routes.primary_weight,
                cookie_filter(cookies.and_then(|c| c.primary.as_ref())),
            ),
            self.backend(
                &self.canary,
                routes.canary_weight,
                cookie_filter(cookies.map(|c| &c.canary)),
            ),
        ];
        self.rule(vec![], filters, backends)
    }
}

/// What every rule carries, from spec.service: header changes, then extra mirrors.
fn service_filters(service: &crate::api::CanaryService) -> Vec<Value> {
    let mirrors = service.mirror.iter().map(|mirror| {
        let mirror = serde_json::to_value(mirror).unwrap_or(Value::Null);
        json!({ "type": "RequestMirror", "requestMirror": mirror })
    });
    header_filters(service).into_iter().chain(mirrors).collect()
}

fn header_filters(service: &crate::api::CanaryService) -> Vec<Value> {
    let Some(headers) = &service.headers else {
        return Vec::new();
    };
    let request = headers
        .request
        .as_ref()
        .map(|ops| header_filter("RequestHeaderModifier", "requestHeaderModifier", ops));
    let response = headers
        .response
        .as_ref()
        .map(|ops| header_filter("ResponseHeaderModifier", "responseHeaderModifier", ops));
    request.into_iter().chain(response).collect()
}

/// The HTTPRoute for `routes`: session cookies first, then the A/B matches, then the weights.
pub fn http_route(canary: &Canary, plan: &Plan, routes: Routes) -> Value {
    let name = service_name(canary);
    let service = &canary.spec.service;
    let writer = Rules {
        service,
        primary: crate::naming::primary(&name),
        canary: crate::naming::canary(&name),
        filters: service_filters(service),
    };
    let cookies = session_cookies(plan, canary.status.as_ref(), routes);
    let mut rules = Vec::new();
    if let Some(cookies) = &cookies {
        rules.push(writer.pinned(vec![cookie_match(&cookies.canary)], &writer.canary));
        if let Some(primary) = &cookies.primary {
            rules.push(writer.pinned(vec![cookie_match(primary)], &writer.primary));
        }
    }
    let ab = ab_matches(plan);
    if routes.match_to_canary && !ab.is_empty() {
        let backends = vec![
            writer.backend(&writer.primary, 0, vec![]),
            writer.backend(&writer.canary, 100, vec![]),
        ];
        rules.push(writer.rule(ab, writer.filters.clone(), backends));
    }
    rules.push(writer.weighted(routes, cookies.as_ref()));
    let mut spec = json!({
        "parentRefs": serde_json::to_value(service.gateway_refs.clone().unwrap_or_default())
            .unwrap_or(Value::Null),
        "rules": rules,
    });
    if !service.hosts.is_empty() {
        spec["hostnames"] = json!(service.hosts);
    }
    let owner = owner_reference(canary).ok();
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": KIND,
        "metadata": { "name": name, "namespace": canary.namespace().unwrap_or_default(), "ownerReferences": owner.map(|o| vec![o]) },
        "spec": spec
    })
}

/// The routes an HTTPRoute written by [`http_route`] expresses.
pub fn routes_of_http_route(canary: &Canary, plan: &Plan, spec: &Value) -> Option<Routes> {
    let canary_host = crate::naming::canary(&service_name(canary));
    let rules = spec.get("rules")?.as_array()?;
    let main = rules.last()?;
    let canary_weight = main["backendRefs"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == json!(canary_host))
        .and_then(|b| b["weight"].as_i64())
        .unwrap_or(0) as i32;
    let ab = ab_matches(plan);
    let mirror_percent = main["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| {
            f["type"] == "RequestMirror"
                && f["requestMirror"]["backendRef"]["name"] == json!(canary_host)
        })
        .map(|f| f["requestMirror"]["percent"].as_i64().unwrap_or(100) as i32);
    Some(Routes {
        primary_weight: 100 - canary_weight,
        canary_weight,
        // The API server adds defaults (a `/` PathPrefix) to matches: compare what was written.
        match_to_canary: !ab.is_empty()
            && rules[..rules.len() - 1].iter().any(|r| {
                crate::controller::policies::contains(&r["matches"], &Value::Array(ab.clone()))
            }),
        mirror_percent,
    })
}

/// The Gateway API router: one HTTPRoute per canary.
pub fn router(client: &Client) -> ObjectRouter {
    ObjectRouter {
        client: client.clone(),
        resource: resource(),
        kind: KIND,
        scope: super::Scope::Namespaced,
        build: http_route,
        read: routes_of_http_route,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::{CanaryAnalysis, CanaryService, HeaderPolicy, SessionAffinity, StringMatch};

    use crate::controller::router::fixtures::insider;

    fn canary(analysis: CanaryAnalysis) -> Canary {
        let service = CanaryService {
            timeout: Some("15s".into()),
            gateway_refs: Some(vec![crate::api::ParentReference {
                group: Some(String::new()),
                kind: Some("Service".into()),
                name: "podinfo".into(),
                port: Some(9898),
                ..Default::default()
            }]),
            headers: Some(HeaderPolicy {
                request: Some(HeaderOperations {
                    add: BTreeMap::from([("x-via".into(), "aviary".into())]),
                    ..Default::default()
                }),
                response: None,
            }),
            ..Default::default()
        };
        crate::controller::router::fixtures::canary(service, Some(analysis))
    }

    #[test]
    fn weighted_route_with_mirror_round_trips() {
        let canary = canary(CanaryAnalysis::default());
        let routes = Routes {
            mirror_percent: Some(40),
            ..Routes::weighted(20)
        };
        let route = http_route(
            &canary,
            &crate::controller::router::fixtures::plan(&canary),
            routes,
        );
        let spec = &route["spec"];
        assert_eq!(spec["parentRefs"][0]["kind"], json!("Service"));
        let main = &spec["rules"][0];
        assert_eq!(main["backendRefs"][0]["name"], json!("podinfo-primary"));
        assert_eq!(main["backendRefs"][0]["weight"], json!(80));
        assert_eq!(main["backendRefs"][1]["weight"], json!(20));
        assert_eq!(main["timeouts"]["request"], json!("15s"));
        assert_eq!(main["filters"][0]["type"], json!("RequestHeaderModifier"));
        assert_eq!(main["filters"][1]["requestMirror"]["percent"], json!(40));
        assert_eq!(
            routes_of_http_route(
                &canary,
                &crate::controller::router::fixtures::plan(&canary),
                spec
            ),
            Some(routes)
        );
    }

    #[test]
    fn ab_rule_comes_first_and_reads_back() {
        let mut cookie = insider();
        cookie.headers = BTreeMap::from([(
            "cookie".into(),
            StringMatch {
                regex: Some("^(.*?;)?(canary=always)(;.*)?$".into()),
                ..Default::default()
            },
        )]);
        let canary = canary(CanaryAnalysis {
            r#match: vec![insider(), cookie],
            ..Default::default()
        });
        let routes = Routes {
            match_to_canary: true,
            ..Routes::primary_only()
        };
        let route = http_route(
            &canary,
            &crate::controller::router::fixtures::plan(&canary),
            routes,
        );
        let first = &route["spec"]["rules"][0];
        assert_eq!(
            first["matches"][0]["headers"][0],
            json!({ "type": "Exact", "name": "x-canary", "value": "insider" })
        );
        assert_eq!(
            first["matches"][1]["headers"][0]["type"],
            json!("RegularExpression")
        );
        assert_eq!(first["backendRefs"][1]["weight"], json!(100));
        assert_eq!(
            routes_of_http_route(
                &canary,
                &crate::controller::router::fixtures::plan(&canary),
                &route["spec"]
            ),
            Some(routes)
        );
    }

    #[test]
    fn session_affinity_pins_both_sides_while_split() {
        let canary = canary(CanaryAnalysis {
            session_affinity: Some(SessionAffinity {
                cookie_name: "canary-session".into(),
                primary_cookie_name: Some("primary-session".into()),
                max_age: Some(600),
                ..Default::default()
            }),
            ..Default::default()
        });
        let route = http_route(
            &canary,
            &crate::controller::router::fixtures::plan(&canary),
            Routes::weighted(10),
        );
        let rules = route["spec"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(
            rules[0]["backendRefs"],
            json!([{ "group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898, "weight": 100 }])
        );
        assert_eq!(rules[1]["backendRefs"][0]["name"], json!("podinfo-primary"));
        let canary_backend = &rules[2]["backendRefs"][1];
        assert_eq!(
            canary_backend["filters"][0]["responseHeaderModifier"]["add"][0]["value"],
            json!("canary-session=1; Max-Age=600; Path=/")
        );
        assert_eq!(
            routes_of_http_route(
                &canary,
                &crate::controller::router::fixtures::plan(&canary),
                &route["spec"]
            ),
            Some(Routes::weighted(10))
        );
        // Once promoted, no cookie is set or honoured.
        let promoted = http_route(
            &canary,
            &crate::controller::router::fixtures::plan(&canary),
            Routes::primary_only(),
        );
        assert_eq!(promoted["spec"]["rules"].as_array().unwrap().len(), 1);
    }
}
