//! Istio: a VirtualService `<svc>` with the weighted route (A/B matches first) and DestinationRules
//! `<svc>-primary` and `<svc>-canary` carrying the service's traffic policy.

use futures::future::BoxFuture;
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::session::{session_cookies, Cookie};
use super::{read_spec, write, Router, RouterError};
use crate::api::Canary;
use crate::controller::objects::{owner_reference, service_name};
use crate::engine::Routes;
use crate::plan::{Condition, Plan, RouteMatch};

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", "v1", kind))
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

/// The VirtualService for `routes`.
pub fn virtual_service(canary: &Canary, plan: &Plan, routes: Routes) -> Value {
    let name = service_name(canary);
    let namespace = canary.namespace().unwrap_or_default();
    let service = &canary.spec.service;
    let mut hosts = service.hosts.clone();
    if !hosts.contains(&name) {
        hosts.push(name.clone());
    }
    let mut gateways = service.gateways.clone();
    if gateways.is_empty() {
        gateways.push("mesh".into());
    }
    let primary_host = crate::naming::primary(&name);
    let canary_host = crate::naming::canary(&name);
    let destination = |host: &str, weight: i32| json!({ "destination": { "host": host, "port": { "number": service.port } }, "weight": weight });
    let cookies = session_cookies(plan, routes);
    // A destination whose responses set a session cookie.
    let setting = |host: &str, weight: i32, cookie: Option<&Cookie>| {
        let mut out = destination(host, weight);
        if let Some(cookie) = cookie {
            out["headers"] = json!({ "response": { "add": { "Set-Cookie": cookie.set_cookie } } });
        }
        out
    };
    // Settings every route carries, from spec.service.
    let mut common = serde_json::Map::new();
    if let Some(timeout) = &service.timeout {
        common.insert("timeout".into(), json!(timeout));
    }
    if let Some(retries) = &service.retries {
        common.insert(
            "retries".into(),
            serde_json::to_value(retries).unwrap_or(Value::Null),
        );
    }
    if let Some(headers) = &service.headers {
        common.insert(
            "headers".into(),
            serde_json::to_value(headers).unwrap_or(Value::Null),
        );
    }
    if let Some(cors) = &service.cors_policy {
        common.insert("corsPolicy".into(), cors.clone());
    }
    if let Some(rewrite) = &service.rewrite {
        common.insert("rewrite".into(), rewrite.clone());
    }
    let service_matches = service.r#match.clone().unwrap_or_default();
    let mut http = Vec::new();
    if let Some(cookies) = &cookies {
        let sessions = [
            ("canary-session", Some(&cookies.canary), &canary_host),
            ("primary-session", cookies.primary.as_ref(), &primary_host),
        ];
        for (rule, cookie, host) in sessions {
            let Some(cookie) = cookie else { continue };
            let mut pinned = common.clone();
            pinned.insert("name".into(), json!(rule));
            pinned.insert(
                "match".into(),
                json!([{ "headers": { "Cookie": { "regex": cookie.request_pattern } } }]),
            );
            pinned.insert("route".into(), json!([destination(host, 100)]));
            http.push(Value::Object(pinned));
        }
    }
    let ab_matches = plan.analysis.matches.as_slice();
    if routes.match_to_canary && !ab_matches.is_empty() {
        let mut ab = common.clone();
        ab.insert("name".into(), json!("canary-match"));
        ab.insert(
            "match".into(),
            Value::Array(ab_matches.iter().map(http_match).collect()),
        );
        ab.insert(
            "route".into(),
            json!([
                destination(&primary_host, 0),
                destination(&canary_host, 100)
            ]),
        );
        http.push(Value::Object(ab));
    }
    let mut main = common;
    main.insert("name".into(), json!("primary"));
    if !service_matches.is_empty() {
        main.insert("match".into(), Value::Array(service_matches));
    }
    main.insert(
        "route".into(),
        json!([
            setting(
                &primary_host,
                routes.primary_weight,
                cookies.as_ref().and_then(|c| c.primary.as_ref())
            ),
            setting(
                &canary_host,
                routes.canary_weight,
                cookies.as_ref().map(|c| &c.canary)
            )
        ]),
    );
    if let Some(percent) = routes.mirror_percent {
        main.insert(
            "mirror".into(),
            json!({ "host": canary_host, "port": { "number": service.port } }),
        );
        main.insert(
            "mirrorPercentage".into(),
            json!({ "value": f64::from(percent) }),
        );
    }
    http.push(Value::Object(main));
    let owner = owner_reference(canary).ok();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": { "name": name, "namespace": namespace, "ownerReferences": owner.map(|o| vec![o]) },
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
                spec["trafficPolicy"] = policy.clone();
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

impl Router for IstioRouter {
    fn ensure<'a>(
        &'a self,
        canary: &'a Canary,
        _: &'a Plan,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let namespace = canary.namespace().unwrap_or_default();
            for rule in destination_rules(canary) {
                write(
                    &self.client,
                    &resource("DestinationRule"),
                    "DestinationRule",
                    &namespace,
                    rule,
                )
                .await?;
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
            let namespace = canary.namespace().unwrap_or_default();
            write(
                &self.client,
                &resource("VirtualService"),
                "VirtualService",
                &namespace,
                virtual_service(canary, plan, routes),
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
            let namespace = canary.namespace().unwrap_or_default();
            let name = service_name(canary);
            let kind = "VirtualService";
            let spec = read_spec(&self.client, &resource(kind), kind, &namespace, &name).await?;
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
