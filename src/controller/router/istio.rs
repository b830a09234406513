//! Istio: a VirtualService `<svc>` with the weighted route (A/B matches first) and DestinationRules
//! `<svc>-primary` and `<svc>-canary` carrying the service's traffic policy.

use futures::future::BoxFuture;
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::session::{session_cookies, Cookie, SessionCookies};
use super::{read_spec, write, Router, RouterError};
use crate::api::Canary;
use crate::controller::objects::{owner_reference, service_name};
use crate::engine::Routes;
use crate::plan::{Condition, Plan, RouteMatch};

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", "v1", kind))
}

/// A typed Istio field as the JSON Istio reads (our types carry Istio's field names).
fn as_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn string_match(condition: &Condition) -> Value {
    match condition {
        Condition::Exact(text) => json!({ "exact": text }),
        Condition::Prefix(text) => json!({ "prefix": text }),
        Condition::Suffix(text) => json!({ "suffix": text }),
        Condition::Regex(text) => json!({ "regex": text }),
    }
}

/// An Istio HTTPMatchRequest from an A/B condition.
fn http_match(condition: &RouteMatch) -> Value {
    let mut out = serde_json::Map::new();
    if !condition.headers.is_empty() {
        let headers: serde_json::Map<_, _> = condition
            .headers
            .iter()
            .map(|(name, m)| (name.clone(), string_match(m)))
            .collect();
        out.insert("headers".into(), Value::Object(headers));
    }
    if let Some(uri) = &condition.uri {
        out.insert("uri".into(), string_match(uri));
    }
    if let Some(method) = &condition.method {
        out.insert("method".into(), string_match(method));
    }
    if !condition.source_labels.is_empty() {
        out.insert("sourceLabels".into(), json!(condition.source_labels));
    }
    if let Some(namespace) = &condition.source_namespace {
        out.insert("sourceNamespace".into(), json!(namespace));
    }
    if !condition.query_params.is_empty() {
        let params: serde_json::Map<_, _> = condition
            .query_params
            .iter()
            .map(|(name, m)| (name.clone(), string_match(m)))
            .collect();
        out.insert("queryParams".into(), Value::Object(params));
    }
    Value::Object(out)
}

/// The two hosts of a rollout and the port both serve.
struct Hosts {
    primary: String,
    canary: String,
    port: i32,
}

impl Hosts {
    fn destination(&self, host: &str, weight: i32) -> Value {
        json!({ "destination": { "host": host, "port": { "number": self.port } }, "weight": weight })
    }

    /// A destination whose responses set a session cookie.
    fn setting(&self, host: &str, weight: i32, cookie: Option<&Cookie>) -> Value {
        let mut out = self.destination(host, weight);
        if let Some(cookie) = cookie {
            out["headers"] = json!({ "response": { "add": { "Set-Cookie": cookie.set_cookie } } });
        }
        out
    }
}

/// Settings every route carries, from spec.service.
fn common_settings(service: &crate::api::CanaryService) -> serde_json::Map<String, Value> {
    let mut common = serde_json::Map::new();
    if let Some(timeout) = &service.timeout {
        common.insert("timeout".into(), json!(timeout));
    }
    if let Some(retries) = &service.retries {
        let retries = serde_json::to_value(retries).unwrap_or(Value::Null);
        common.insert("retries".into(), retries);
    }
    if let Some(headers) = &service.headers {
        let headers = serde_json::to_value(headers).unwrap_or(Value::Null);
        common.insert("headers".into(), headers);
    }
    if let Some(cors) = &service.cors_policy {
        common.insert("corsPolicy".into(), as_json(cors));
    }
    if let Some(rewrite) = &service.rewrite {
        // `type` is Flagger's Gateway API extension; Istio's HTTPRewrite has no such field.
        let rewrite = crate::api::HttpRewrite {
            r#type: None,
            ..rewrite.clone()
        };
        common.insert("rewrite".into(), as_json(&rewrite));
    }
    common
}

/// A named route: the common settings plus `fields`.
fn route(common: &serde_json::Map<String, Value>, name: &str, fields: [(&str, Value); 2]) -> Value {
    let mut out = common.clone();
    out.insert("name".into(), json!(name));
    for (key, value) in fields {
        out.insert(key.into(), value);
    }
    Value::Object(out)
}

/// Routes that keep a session where its cookie says it started.
fn session_routes(
    common: &serde_json::Map<String, Value>,
    hosts: &Hosts,
    cookies: &SessionCookies,
) -> Vec<Value> {
    let sessions = [
        ("canary-session", Some(&cookies.canary), &hosts.canary),
        ("primary-session", cookies.primary.as_ref(), &hosts.primary),
    ];
    sessions
        .into_iter()
        .filter_map(|(name, cookie, host)| {
            let matcher =
                json!([{ "headers": { "Cookie": { "regex": cookie?.request_pattern } } }]);
            let destination = json!([hosts.destination(host, 100)]);
            Some(route(
                common,
                name,
                [("match", matcher), ("route", destination)],
            ))
        })
        .collect()
}

/// The weighted route every request not matched earlier takes.
fn main_route(
    common: &serde_json::Map<String, Value>,
    service: &crate::api::CanaryService,
    hosts: &Hosts,
    routes: Routes,
    cookies: Option<&SessionCookies>,
) -> Value {
    let mut main = common.clone();
    main.insert("name".into(), json!("primary"));
    if let Some(matches) = service.r#match.as_ref().filter(|m| !m.is_empty()) {
        main.insert("match".into(), as_json(matches));
    }
    let primary_cookie = cookies.and_then(|c| c.primary.as_ref());
    let canary_cookie = cookies.map(|c| &c.canary);
    main.insert(
        "route".into(),
        json!([
            hosts.setting(&hosts.primary, routes.primary_weight, primary_cookie),
            hosts.setting(&hosts.canary, routes.canary_weight, canary_cookie)
        ]),
    );
    if let Some(percent) = routes.mirror_percent {
        let mirror = json!({ "host": hosts.canary, "port": { "number": hosts.port } });
        main.insert("mirror".into(), mirror);
        main.insert(
            "mirrorPercentage".into(),
            json!({ "value": f64::from(percent) }),
        );
    }
    Value::Object(main)
}

/// The VirtualService for `routes`: session routes, then the A/B route, then the weighted one.
pub fn virtual_service(canary: &Canary, plan: &Plan, routes: Routes) -> Value {
    let name = service_name(canary);
    let service = &canary.spec.service;
    let mut hosts = service.hosts.clone();
    if !hosts.contains(&name) {
        hosts.push(name.clone());
    }
    let mut gateways = service.gateways.clone();
    if gateways.is_empty() {
        gateways.push("mesh".into());
    }
    let targets = Hosts {
        primary: crate::naming::primary(&name),
        canary: crate::naming::canary(&name),
        port: service.port,
    };
    let common = common_settings(service);
    let cookies = session_cookies(plan, canary.status.as_ref(), routes);
    let mut http = Vec::new();
    if let Some(cookies) = &cookies {
        http.extend(session_routes(&common, &targets, cookies));
    }
    let ab_matches = plan.analysis.matches.as_slice();
    if routes.match_to_canary && !ab_matches.is_empty() {
        let matcher = Value::Array(ab_matches.iter().map(http_match).collect());
        let split = json!([
            targets.destination(&targets.primary, 0),
            targets.destination(&targets.canary, 100)
        ]);
        http.push(route(
            &common,
            "canary-match",
            [("match", matcher), ("route", split)],
        ));
    }
    http.push(main_route(
        &common,
        service,
        &targets,
        routes,
        cookies.as_ref(),
    ));
    let owner = owner_reference(canary).ok();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": name, "namespace": canary.namespace().unwrap_or_default(), "ownerReferences": owner.map(|o| vec![o]) },
        "spec": { "hosts": hosts, "gateways": gateways, "http": http }
    })
}

/// DestinationRules for the primary and the canary hosts, with spec.service.trafficPolicy.
pub fn destination_rules(canary: &Canary) -> Vec<Value> {
    let name = service_name(canary);
    let namespace = canary.namespace().unwrap_or_default();
    let owner = owner_reference(canary).ok();
    ["primary", "canary"]
        .iter()
        .map(|role| {
            let host = format!("{name}-{role}");
            let mut spec = json!({ "host": host });
            if let Some(policy) = &canary.spec.service.traffic_policy {
                spec["trafficPolicy"] = as_json(policy);
            }
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": { "name": host, "namespace": namespace, "ownerReferences": owner.clone().map(|o| vec![o]) },
                "spec": spec
            })
        })
        .collect()
}

/// The routes a VirtualService written by [`virtual_service`] expresses.
pub fn routes_of_virtual_service(canary: &Canary, spec: &Value) -> Option<Routes> {
    let name = service_name(canary);
    let canary_host = crate::naming::canary(&name);
    let http = spec.get("http")?.as_array()?;
    let main = http
        .iter()
        .find(|r| r.get("name") == Some(&json!("primary")))?;
    let weight_of = |host: &str| {
        main.get("route")?
            .as_array()?
            .iter()
            .find(|d| d["destination"]["host"] == json!(host))?
            .get("weight")?
            .as_i64()
    };
    let canary_weight = weight_of(&canary_host).unwrap_or(0) as i32;
    Some(Routes {
        primary_weight: 100 - canary_weight,
        canary_weight,
        match_to_canary: http
            .iter()
            .any(|r| r.get("name") == Some(&json!("canary-match"))),
        mirror_percent: main
            .get("mirrorPercentage")
            .and_then(|m| m["value"].as_f64())
            .map(|v| v.round() as i32),
    })
}

pub struct IstioRouter {
    pub client: Client,
}

impl IstioRouter {
    fn api(&self, canary: &Canary, kind: &str) -> kube::Api<kube::api::DynamicObject> {
        let namespace = canary.namespace().unwrap_or_default();
        kube::Api::namespaced_with(self.client.clone(), &namespace, &resource(kind))
    }
}

impl Router for IstioRouter {
    fn ensure<'a>(
        &'a self,
        canary: &'a Canary,
        _: &'a Plan,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let api = self.api(canary, "DestinationRule");
            for rule in destination_rules(canary) {
                write(&api, "DestinationRule", rule).await?;
            }
            Ok(())
        })
    }

    fn apply<'a>(
        &'a self,
        canary: &'a Canary,
        plan: &'a Plan,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let object = virtual_service(canary, plan, routes);
            write(
                &self.api(canary, "VirtualService"),
                "VirtualService",
                object,
            )
            .await
        })
    }

    fn current<'a>(
        &'a self,
        canary: &'a Canary,
        _: &'a Plan,
    ) -> BoxFuture<'a, Result<Option<Routes>, RouterError>> {
        Box::pin(async move {
            let name = service_name(canary);
            let kind = "VirtualService";
            let spec = read_spec(&self.api(canary, kind), kind, &name).await?;
            Ok(spec.and_then(|spec| routes_of_virtual_service(canary, &spec)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CanaryAnalysis, CanaryService};

    fn canary() -> Canary {
        let analysis = CanaryAnalysis {
            r#match: vec![crate::controller::router::fixtures::insider()],
            ..Default::default()
        };
        crate::controller::router::fixtures::canary(CanaryService::default(), Some(analysis))
    }

    #[test]
    fn weighted_route_round_trips() {
        let canary = canary();
        let routes = Routes {
            mirror_percent: Some(25),
            ..Routes::weighted(30)
        };
        let vs = virtual_service(
            &canary,
            &crate::controller::router::fixtures::plan(&canary),
            routes,
        );
        assert_eq!(vs["spec"]["hosts"], json!(["podinfo"]));
        assert_eq!(vs["spec"]["gateways"], json!(["mesh"]));
        assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], json!(30));
        assert_eq!(
            routes_of_virtual_service(&canary, &vs["spec"]),
            Some(routes)
        );
    }

    #[test]
    fn ab_match_route_comes_first() {
        let canary = canary();
        let routes = Routes {
            match_to_canary: true,
            ..Routes::primary_only()
        };
        let vs = virtual_service(
            &canary,
            &crate::controller::router::fixtures::plan(&canary),
            routes,
        );
        let first = &vs["spec"]["http"][0];
        assert_eq!(
            first["match"][0]["headers"]["x-canary"]["exact"],
            json!("insider")
        );
        assert_eq!(
            first["route"][1]["destination"]["host"],
            json!("podinfo-canary")
        );
        assert_eq!(first["route"][1]["weight"], json!(100));
        assert_eq!(
            routes_of_virtual_service(&canary, &vs["spec"]),
            Some(routes)
        );
    }
}
