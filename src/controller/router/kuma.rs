//! Kuma: a cluster-scoped TrafficRoute (`kuma.io/v1alpha1`) in the canary's mesh that sends the
//! apex's Kuma service to the primary's and the canary's by weight. Kuma names a Kubernetes
//! Service's port `<service>_<namespace>_svc_<port>`. Weights only: no header matches, no
//! mirroring (validation refuses both).
//!
//! Flagger names the object after the apex alone, so two teams' canaries of one name share it;
//! here its name carries the namespace ([`super::cluster_object_name`]). A cluster-scoped object
//! cannot be owned by a Canary, so the controller deletes it when the Canary goes.

use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::{cluster_object_name, ObjectRouter, Scope};
use crate::api::Canary;
use crate::controller::objects::service_name;
use crate::engine::Routes;
use crate::naming;

const KIND: &str = "TrafficRoute";
/// The Canary annotation naming its Kuma mesh, as Flagger reads it.
pub const MESH_ANNOTATION: &str = "kuma.io/mesh";
const KUMA_SERVICE_TAG: &str = "kuma.io/service";

fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("kuma.io", "v1alpha1", KIND))
}

/// Kuma's name for port `port` of Service `service` in `namespace`.
pub fn kuma_service(service: &str, namespace: &str, port: i32) -> String {
    format!("{service}_{namespace}_svc_{port}")
}

/// The mesh a canary's TrafficRoute belongs to: its `kuma.io/mesh` annotation, else `default`.
pub fn mesh_of(canary: &Canary) -> String {
    canary
        .annotations()
        .get(MESH_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| "default".into())
}

/// The TrafficRoute for `routes`.
pub fn traffic_route(canary: &Canary, routes: Routes) -> Value {
    let apex = service_name(canary);
    let namespace = canary.namespace().unwrap_or_default();
    let port = canary.spec.service.port;
    let tag = |service: &str| json!({ KUMA_SERVICE_TAG: kuma_service(service, &namespace, port) });
    json!({
        "apiVersion": "kuma.io/v1alpha1",
        "kind": KIND,
        "metadata": {
            "name": cluster_object_name(canary),
            "labels": {
                naming::MANAGED_BY_LABEL: naming::MANAGED_BY,
                naming::CANARY_UID_LABEL: canary.uid().unwrap_or_default(),
            },
            "annotations": { naming::CANARY_ANNOTATION: format!("{namespace}/{}", canary.name_any()) },
        },
        "mesh": mesh_of(canary),
        "spec": {
            "sources": [{ "match": { KUMA_SERVICE_TAG: "*" } }],
            "destinations": [{ "match": tag(&apex) }],
            "conf": {
                "split": [
                    { "weight": routes.primary_weight, "destination": tag(&naming::primary(&apex)) },
                    { "weight": routes.canary_weight, "destination": tag(&naming::canary(&apex)) }
                ]
            }
        }
    })
}

/// The routes a TrafficRoute written by [`traffic_route`] expresses.
pub fn routes_of_traffic_route(canary: &Canary, spec: &Value) -> Option<Routes> {
    let namespace = canary.namespace().unwrap_or_default();
    let port = canary.spec.service.port;
    let canary_service = kuma_service(&naming::canary(&service_name(canary)), &namespace, port);
    let weight = spec["conf"]["split"]
        .as_array()?
        .iter()
        .find(|s| s["destination"][KUMA_SERVICE_TAG] == json!(canary_service))?["weight"]
        .as_i64()?;
    // Anyone who may edit the route may write any number there.
    Some(Routes::weighted(weight.clamp(0, 100) as i32))
}

pub fn router(client: &Client) -> ObjectRouter {
    ObjectRouter {
        client: client.clone(),
        resource: resource(),
        kind: KIND,
        scope: Scope::Cluster,
        build: |canary, _, routes| traffic_route(canary, routes),
        read: |canary, _, spec| routes_of_traffic_route(canary, spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CanaryService;

    #[test]
    fn route_round_trips_and_is_named_by_namespace() {
        let canary = crate::controller::router::fixtures::canary(CanaryService::default(), None);
        let route = traffic_route(&canary, Routes::weighted(30));
        assert_eq!(route["metadata"]["name"], json!("podinfo.test"));
        assert_eq!(route["mesh"], json!("default"));
        assert_eq!(
            route["spec"]["destinations"][0]["match"][KUMA_SERVICE_TAG],
            json!("podinfo_test_svc_9898")
        );
        let split = &route["spec"]["conf"]["split"];
        assert_eq!(split[0]["weight"], json!(70));
        assert_eq!(
            split[1]["destination"][KUMA_SERVICE_TAG],
            json!("podinfo-canary_test_svc_9898")
        );
        assert_eq!(
            routes_of_traffic_route(&canary, &route["spec"]),
            Some(Routes::weighted(30))
        );
    }

    #[test]
    fn the_mesh_comes_from_the_canary_annotation() {
        let mut canary =
            crate::controller::router::fixtures::canary(CanaryService::default(), None);
        canary
            .annotations_mut()
            .insert(MESH_ANNOTATION.into(), "payments".into());
        assert_eq!(
            traffic_route(&canary, Routes::primary_only())["mesh"],
            json!("payments")
        );
    }
}
