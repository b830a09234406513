//! The `revertOnDeletion` finalizer, added and removed with JSON patches that first `test` what
//! they change: a list of finalizers written by someone else in the meantime makes the patch fail
//! (and the reconcile retry), so another controller's finalizer is never overwritten.

use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::api::Canary;
use crate::naming::FINALIZER;

/// The operations that add Aviary's finalizer to `current`, or none when it is there. With no
/// list to test (Kubernetes omits an empty one), the object's `resource_version` is tested.
pub fn adding(current: &[String], resource_version: Option<&str>) -> Option<Value> {
    if current.iter().any(|f| f == FINALIZER) {
        return None;
    }
    Some(if current.is_empty() {
        json!([
            { "op": "test", "path": "/metadata/resourceVersion", "value": resource_version },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] }
        ])
    } else {
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current },
            { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER }
        ])
    })
}

/// The operations that remove Aviary's finalizer from `current`, or none when it is absent.
pub fn removing(current: &[String]) -> Option<Value> {
    let index = current.iter().position(|f| f == FINALIZER)?;
    let path = format!("/metadata/finalizers/{index}");
    Some(json!([
        { "op": "test", "path": path, "value": FINALIZER },
        { "op": "remove", "path": path }
    ]))
}

async fn apply(api: &Api<Canary>, canary: &Canary, operations: Value) -> Result<(), kube::Error> {
    let patch = serde_json::from_value(operations).map_err(kube::Error::SerdeError)?;
    api.patch(
        &canary.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

pub async fn ensure(api: &Api<Canary>, canary: &Canary) -> Result<(), kube::Error> {
    match adding(
        canary.finalizers(),
        canary.metadata.resource_version.as_deref(),
    ) {
        Some(operations) => apply(api, canary, operations).await,
        None => Ok(()),
    }
}

pub async fn release(api: &Api<Canary>, canary: &Canary) -> Result<(), kube::Error> {
    match removing(canary.finalizers()) {
        Some(operations) => apply(api, canary, operations).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_locally(document: &mut Value, operations: Value) -> Result<(), String> {
        let patch: json_patch::Patch = serde_json::from_value(operations).unwrap();
        json_patch::patch(document, &patch).map_err(|e| e.to_string())
    }

    #[test]
    fn adds_beside_others_and_removes_only_its_own() {
        let mut canary = json!({ "metadata": { "finalizers": ["other.io/keep"] } });
        let current = vec!["other.io/keep".to_string()];
        apply_locally(&mut canary, adding(&current, Some("1")).unwrap()).unwrap();
        assert_eq!(
            canary["metadata"]["finalizers"],
            json!(["other.io/keep", FINALIZER])
        );
        let current: Vec<String> =
            serde_json::from_value(canary["metadata"]["finalizers"].clone()).unwrap();
        assert!(adding(&current, Some("2")).is_none());
        apply_locally(&mut canary, removing(&current).unwrap()).unwrap();
        assert_eq!(canary["metadata"]["finalizers"], json!(["other.io/keep"]));
    }

    #[test]
    fn a_list_changed_meanwhile_fails_the_patch_instead_of_being_overwritten() {
        let read = vec!["other.io/keep".to_string()];
        let mut changed =
            json!({ "metadata": { "finalizers": ["other.io/keep", "third.io/new"] } });
        assert!(apply_locally(&mut changed, adding(&read, Some("1")).unwrap()).is_err());
        let mut created =
            json!({ "metadata": { "resourceVersion": "8", "finalizers": ["third.io/new"] } });
        assert!(apply_locally(&mut created, adding(&[], Some("7")).unwrap()).is_err());
        let mut fresh = json!({ "metadata": { "resourceVersion": "7" } });
        apply_locally(&mut fresh, adding(&[], Some("7")).unwrap()).unwrap();
        assert_eq!(fresh["metadata"]["finalizers"], json!([FINALIZER]));
    }
}
