//! Linkerd through SMI: a TrafficSplit `<svc>` (`split.smi-spec.io`, v1alpha1 to v1alpha3 as the
//! provider names) whose root service is the apex and whose backends are `<svc>-primary` and
//! `<svc>-canary` with their integer weights. SMI splits by weight only: no header matches and
//! no mirroring (validation refuses both).

use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::ObjectRouter;
use crate::api::{Canary, SmiVersion};
use crate::controller::objects::{owner_reference, service_name};
use crate::engine::Routes;

const KIND: &str = "TrafficSplit";

fn resource(version: SmiVersion) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "split.smi-spec.io",
        version.as_str(),
        KIND,
    ))
}

/// The TrafficSplit for `routes` (as v1alpha2: [`super::ObjectRouter`] sets the version it writes).
pub fn traffic_split(canary: &Canary, routes: Routes) -> Value {
    let name = service_name(canary);
    let namespace = canary.namespace().unwrap_or_default();
    let owner = owner_reference(canary).ok();
    json!({
        "apiVersion": "split.smi-spec.io/v1alpha2",
        "kind": KIND,
        "metadata": { "name": name, "namespace": namespace, "ownerReferences": owner.map(|o| vec![o]) },
        "spec": {
            "service": name,
            "backends": [
                { "service": crate::naming::primary(&name), "weight": routes.primary_weight },
                { "service": crate::naming::canary(&name), "weight": routes.canary_weight }
            ]
        }
    })
}

/// The routes a TrafficSplit written by [`traffic_split`] expresses.
pub fn routes_of_traffic_split(canary: &Canary, spec: &Value) -> Option<Routes> {
    let canary_service = crate::naming::canary(&service_name(canary));
    let canary_weight = spec["backends"]
        .as_array()?
        .iter()
        .find(|b| b["service"] == json!(canary_service))?["weight"]
        .as_i64()? as i32;
    Some(Routes::weighted(canary_weight))
}

/// The SMI router for one TrafficSplit version: one TrafficSplit per canary.
pub fn router(client: &Client, version: SmiVersion) -> ObjectRouter {
    ObjectRouter {
        client: client.clone(),
        resource: resource(version),
        kind: KIND,
        scope: super::Scope::Namespaced,
        build: |canary, _, routes| traffic_split(canary, routes),
        read: |canary, _, spec| routes_of_traffic_split(canary, spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CanaryService;

    #[test]
    fn split_round_trips() {
        let canary = crate::controller::router::fixtures::canary(CanaryService::default(), None);
        let split = traffic_split(&canary, Routes::weighted(35));
        assert_eq!(split["spec"]["service"], json!("podinfo"));
        assert_eq!(split["spec"]["backends"][0]["weight"], json!(65));
        assert_eq!(
            routes_of_traffic_split(&canary, &split["spec"]),
            Some(Routes::weighted(35))
        );
    }
}
