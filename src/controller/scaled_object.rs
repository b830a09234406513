//! KEDA ScaledObjects (`autoscalerRef.kind: ScaledObject`), as Flagger keeps them:
//! - the primary gets a `-primary` copy that scales `<target>-primary`, its trigger queries
//!   pointed at the primary (by `primaryScalerQueries`, or by renaming the target in them);
//! - the user's ScaledObject is paused at zero replicas (KEDA's `paused-replicas` annotation)
//!   while the canary is idle, and unpaused while a revision is analysed or the canary reverted.
//!
//! Without the pause, KEDA's HorizontalPodAutoscaler would scale the idle canary back up.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{json, Map, Value};

use super::objects::{owner_reference, ObjectError};
use crate::api::{AutoscalerRef, Canary};
use crate::naming;

/// KEDA's annotation: while present, the ScaledObject holds its target at that many replicas.
const PAUSED_REPLICAS: &str = "autoscaling.keda.sh/paused-replicas";
/// The field manager of the pause annotation, apart from Aviary's other writes, so that
/// applying an empty annotation set removes only the pause.
const PAUSE_MANAGER: &str = "aviary-scaler-pause";

pub fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "keda.sh",
        "v1alpha1",
        "ScaledObject",
    ))
}

/// Why an `autoscalerRef` could not be copied or paused (for either kind).
#[derive(Debug, thiserror::Error)]
pub enum AutoscalerError {
    #[error("spec.autoscalerRef.name: {kind} {name} not found in the canary's namespace")]
    NotFound { kind: &'static str, name: String },
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Object(#[from] ObjectError),
}

/// `query` with the target's name pointed at the primary: `<t>` and `<t>-canary` both become
/// `<t>-primary`, and a name already ending in `-primary` is left alone.
pub fn primary_query(query: &str, target: &str) -> String {
    let primary = naming::primary(target);
    let canary = naming::canary(target);
    // A character no query holds marks the names already rewritten.
    const MARK: &str = "\u{1}";
    query
        .replace(&primary, MARK)
        .replace(&canary, MARK)
        .replace(target, MARK)
        .replace(MARK, &primary)
}

/// The `-primary` copy of `source` (a ScaledObject's JSON) for `canary`.
pub fn primary_copy(
    canary: &Canary,
    reference: &AutoscalerRef,
    source: &Value,
) -> Result<Value, ObjectError> {
    let target = &canary.spec.target_ref.name;
    let mut spec = source["spec"].clone();
    spec["scaleTargetRef"]["name"] = json!(naming::primary(target));
    if let Some(triggers) = spec["triggers"].as_array_mut() {
        for trigger in triggers {
            point_at_primary(trigger, reference, target);
        }
    }
    if let Some(replicas) = &reference.primary_scaler_replicas {
        if let Some(min) = replicas.min_replicas {
            spec["minReplicaCount"] = json!(min);
        }
        if let Some(max) = replicas.max_replicas {
            spec["maxReplicaCount"] = json!(max);
        }
    }
    Ok(json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {
            "name": naming::primary(&reference.name),
            "namespace": canary.namespace(),
            "ownerReferences": [owner_reference(canary)?],
        },
        "spec": spec,
    }))
}

/// Flagger's rule: with `primaryScalerQueries`, a named trigger takes its query from there
/// (and unnamed ones are left as they are); without, the target's name is rewritten.
fn point_at_primary(trigger: &mut Value, reference: &AutoscalerRef, target: &str) {
    let name = trigger["name"].as_str().map(str::to_string);
    let Some(metadata) = trigger.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let query = match &reference.primary_scaler_queries {
        Some(queries) => name.and_then(|n| queries.get(&n).cloned()),
        None => metadata
            .get("query")
            .and_then(Value::as_str)
            .map(|query| primary_query(query, target)),
    };
    if let Some(query) = query {
        metadata.insert("query".into(), json!(query));
    }
}

/// Writes the primary's copy of the canary's ScaledObject.
pub async fn write_primary_copy(
    client: &Client,
    canary: &Canary,
    reference: &AutoscalerRef,
) -> Result<(), AutoscalerError> {
    let api = scaled_objects(client, canary);
    let source = api
        .get_opt(&reference.name)
        .await?
        .ok_or_else(|| not_found(reference))?;
    let source = serde_json::to_value(&source).unwrap_or_default();
    let copy = primary_copy(canary, reference, &source)?;
    let name = naming::primary(&reference.name);
    let params = PatchParams::apply(naming::FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&copy)).await?;
    Ok(())
}

/// Pauses the canary's own ScaledObject at zero replicas, or lifts the pause.
pub async fn set_paused(
    client: &Client,
    canary: &Canary,
    reference: &AutoscalerRef,
    paused: bool,
) -> Result<(), AutoscalerError> {
    let api = scaled_objects(client, canary);
    if api.get_opt(&reference.name).await?.is_none() {
        return Err(not_found(reference));
    }
    let mut annotations = Map::new();
    if paused {
        annotations.insert(PAUSED_REPLICAS.into(), json!("0"));
    }
    let patch = json!({
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": { "name": reference.name, "annotations": annotations },
    });
    let params = PatchParams::apply(PAUSE_MANAGER).force();
    api.patch(&reference.name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

fn not_found(reference: &AutoscalerRef) -> AutoscalerError {
    AutoscalerError::NotFound {
        kind: "ScaledObject",
        name: reference.name.clone(),
    }
}

fn scaled_objects(client: &Client, canary: &Canary) -> Api<DynamicObject> {
    let namespace = canary.namespace().unwrap_or_default();
    Api::namespaced_with(client.clone(), &namespace, &resource())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn queries_point_at_the_primary_once() {
        let query = r#"sum(rate(http_requests_total{deployment="web"}[1m])) + sum(rate(x{deployment="web-canary"}[1m])) + y{d="web-primary"}"#;
        assert_eq!(
            primary_query(query, "web"),
            r#"sum(rate(http_requests_total{deployment="web-primary"}[1m])) + sum(rate(x{deployment="web-primary"}[1m])) + y{d="web-primary"}"#
        );
    }

    fn canary(queries: Option<BTreeMap<String, String>>) -> (Canary, AutoscalerRef) {
        let reference = AutoscalerRef {
            api_version: Some("keda.sh/v1alpha1".into()),
            kind: Some("ScaledObject".into()),
            name: "web-so".into(),
            primary_scaler_queries: queries,
            primary_scaler_replicas: Some(crate::api::ScalerReplicas {
                min_replicas: Some(2),
                max_replicas: Some(7),
            }),
        };
        let mut canary = Canary::new("web", Default::default());
        canary.spec.target_ref.name = "web".into();
        canary.metadata.namespace = Some("test".into());
        canary.metadata.uid = Some("uid-1".into());
        (canary, reference)
    }

    fn source() -> Value {
        json!({ "spec": {
            "scaleTargetRef": { "name": "web" }, "minReplicaCount": 1, "maxReplicaCount": 3,
            "triggers": [
                { "type": "prometheus", "name": "rps", "metadata": { "query": "sum(x{d=\"web\"})", "threshold": "10" } },
                { "type": "cpu", "metadata": { "value": "50" } }
            ]
        }})
    }

    #[test]
    fn the_copy_scales_the_primary_with_rewritten_queries() {
        let (canary, reference) = canary(None);
        let copy = primary_copy(&canary, &reference, &source()).unwrap();
        assert_eq!(copy["metadata"]["name"], json!("web-so-primary"));
        assert_eq!(copy["spec"]["scaleTargetRef"]["name"], json!("web-primary"));
        assert_eq!(
            copy["spec"]["triggers"][0]["metadata"]["query"],
            json!("sum(x{d=\"web-primary\"})")
        );
        assert_eq!(copy["spec"]["triggers"][1], source()["spec"]["triggers"][1]);
        assert_eq!(
            (
                copy["spec"]["minReplicaCount"].clone(),
                copy["spec"]["maxReplicaCount"].clone()
            ),
            (json!(2), json!(7))
        );
    }

    #[test]
    fn primary_scaler_queries_replace_named_triggers_only() {
        let queries =
            BTreeMap::from([("rps".to_string(), "sum(y{d=\"web-primary\"})".to_string())]);
        let (canary, reference) = canary(Some(queries));
        let copy = primary_copy(&canary, &reference, &source()).unwrap();
        assert_eq!(
            copy["spec"]["triggers"][0]["metadata"]["query"],
            json!("sum(y{d=\"web-primary\"})")
        );
        assert_eq!(copy["spec"]["triggers"][1], source()["spec"]["triggers"][1]);
    }
}
