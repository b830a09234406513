//! Knative Service targets. A Knative Service makes a new Revision for each change of its
//! template; the primary is the Revision named in the Service's `aviary.dev/primary-revision`
//! annotation, and the canary is its latest created Revision. Knative's own traffic block
//! (`spec.traffic`) splits requests between the two, so there is no `-primary` copy, no
//! generated Service and nothing to scale: Knative scales each Revision itself.
//!
//! The Service is read with a GET when its canary is reconciled (no watch: the Knative CRDs
//! may not be installed at all), so a new Revision is noticed at the canary's next interval.

use std::collections::BTreeMap;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use crate::engine::Routes;
use crate::naming::CANARY_UID_LABEL;

/// The Service annotation naming the primary Revision.
pub const PRIMARY_REVISION_ANNOTATION: &str = "aviary.dev/primary-revision";
pub const KIND: &str = "Service";

fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("serving.knative.dev", "v1", KIND))
}

fn api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource())
}

/// What the controller reads of a Knative Service, parsed once from the API's object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnativeService {
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    pub latest_created: Option<String>,
    pub latest_ready: Option<String>,
    /// The Revisions Knative's Route reports as receiving traffic (`status.traffic`).
    pub routed: Vec<String>,
    /// `spec.traffic` as written.
    pub traffic: Value,
}

impl KnativeService {
    pub fn from_object(object: &DynamicObject) -> KnativeService {
        let status = &object.data["status"];
        let text = |v: &Value| v.as_str().map(str::to_string);
        let routed = status["traffic"].as_array().into_iter().flatten();
        KnativeService {
            name: object.name_any(),
            annotations: object.annotations().clone(),
            latest_created: text(&status["latestCreatedRevisionName"]),
            latest_ready: text(&status["latestReadyRevisionName"]),
            routed: routed.filter_map(|t| text(&t["revisionName"])).collect(),
            traffic: object.data["spec"]["traffic"].clone(),
        }
    }

    /// The primary Revision, as named by the canary with uid `owner`: a name another canary
    /// (or an earlier Canary of this name) left is not this one's primary.
    pub fn primary_revision(&self, owner: &str) -> Option<&String> {
        let ours = !owner.is_empty()
            && self.annotations.get(CANARY_UID_LABEL).map(String::as_str) == Some(owner);
        self.annotations
            .get(PRIMARY_REVISION_ANNOTATION)
            .filter(|_| ours)
    }

    /// The latest Revision is ready: Knative made it and it passed its readiness checks.
    pub fn is_ready(&self) -> bool {
        self.latest_created.is_some() && self.latest_created == self.latest_ready
    }

    /// Whether `revision` can take traffic: it is the latest ready one, or Knative routes to it.
    pub fn serves(&self, revision: &str) -> bool {
        self.latest_ready.as_deref() == Some(revision) || self.routed.iter().any(|r| r == revision)
    }
}

/// The Knative Service `name`, as the API server has it now.
pub async fn fetch(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<KnativeService>, kube::Error> {
    let found = api(client, namespace).get_opt(name).await?;
    Ok(found.as_ref().map(KnativeService::from_object))
}

/// Names `revision` the primary of the canary with uid `owner` (bootstrap and promotion);
/// `None` takes both annotations away.
pub async fn set_primary(
    client: &Client,
    namespace: &str,
    name: &str,
    primary: Option<(&str, &str)>,
) -> Result<(), kube::Error> {
    let (revision, owner) = primary.unzip();
    let annotations = json!({ PRIMARY_REVISION_ANNOTATION: revision, CANARY_UID_LABEL: owner });
    let patch = json!({ "metadata": { "annotations": annotations } });
    api(client, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// The traffic block for `routes`: the primary and the canary Revisions, each by name, so a
/// Revision made after the one analysed never takes the canary's share. Once they are the same
/// (promoted), the one entry.
pub fn traffic(primary: &str, canary: &str, routes: Routes) -> Value {
    if primary == canary {
        return json!([{ "revisionName": primary, "percent": 100 }]);
    }
    json!([
        { "revisionName": primary, "percent": routes.primary_weight },
        { "revisionName": canary, "percent": routes.canary_weight }
    ])
}

/// The routes a traffic block written by [`traffic`] for `primary` expresses.
pub fn routes_of_traffic(traffic: &Value, primary: &str) -> Option<Routes> {
    let entries = traffic.as_array()?;
    if entries.len() == 1 && entries[0]["revisionName"] == json!(primary) {
        return Some(Routes::primary_only());
    }
    let canary = entries.iter().find(|t| {
        t["latestRevision"] != json!(true)
            && t["revisionName"].as_str().is_some_and(|r| r != primary)
    })?;
    // Anyone who may edit the Service may write any number there.
    Some(Routes::weighted(
        canary["percent"].as_i64()?.clamp(0, 100) as i32
    ))
}

/// Writes `spec.traffic`. A merge patch replaces the whole list, so nothing of an older split
/// (or a user's own block) is left beside it.
pub async fn write_traffic(
    client: &Client,
    namespace: &str,
    name: &str,
    traffic: Value,
) -> Result<(), kube::Error> {
    let patch = json!({ "spec": { "traffic": traffic } });
    api(client, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: Value, annotations: Value) -> KnativeService {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": { "name": "hello", "annotations": annotations },
            "status": status
        }))
        .unwrap();
        KnativeService::from_object(&object)
    }

    #[test]
    fn the_latest_revision_is_ready_once_knative_says_so() {
        let creating = service(
            json!({ "latestCreatedRevisionName": "hello-00002", "latestReadyRevisionName": "hello-00001",
                    "traffic": [{ "revisionName": "hello-00001", "percent": 100 }] }),
            json!({ PRIMARY_REVISION_ANNOTATION: "hello-00001", CANARY_UID_LABEL: "uid-1" }),
        );
        assert!(!creating.is_ready());
        assert!(creating.serves("hello-00001") && !creating.serves("hello-00002"));
        assert_eq!(
            creating.primary_revision("uid-1").map(String::as_str),
            Some("hello-00001")
        );
        assert_eq!(
            creating.primary_revision("uid-2"),
            None,
            "another canary's primary"
        );
        let ready = service(
            json!({ "latestCreatedRevisionName": "hello-00002", "latestReadyRevisionName": "hello-00002" }),
            json!({}),
        );
        assert!(ready.is_ready() && ready.primary_revision("uid-1").is_none());
    }

    #[test]
    fn traffic_names_both_revisions_and_round_trips() {
        let block = traffic("hello-00001", "hello-00002", Routes::weighted(20));
        assert_eq!(
            block[0],
            json!({ "revisionName": "hello-00001", "percent": 80 })
        );
        assert_eq!(
            block[1],
            json!({ "revisionName": "hello-00002", "percent": 20 })
        );
        assert_eq!(
            routes_of_traffic(&block, "hello-00001"),
            Some(Routes::weighted(20))
        );
        let promoted = traffic("hello-00002", "hello-00002", Routes::primary_only());
        assert_eq!(
            promoted,
            json!([{ "revisionName": "hello-00002", "percent": 100 }])
        );
        assert_eq!(
            routes_of_traffic(&promoted, "hello-00002"),
            Some(Routes::primary_only())
        );
        let forged =
            json!([{ "revisionName": "a", "percent": 0 }, { "revisionName": "b", "percent": -7 }]);
        assert_eq!(routes_of_traffic(&forged, "a"), Some(Routes::weighted(0)));
    }

    #[test]
    fn revision_names_are_dns_labels() {
        assert!(crate::naming::is_dns_label("hello-00001"));
        for bad in [
            "",
            "x\"}) or vector(1",
            "Hello",
            "-a",
            "a-",
            &"a".repeat(64),
        ] {
            assert!(!crate::naming::is_dns_label(bad), "{bad}");
        }
    }
}
