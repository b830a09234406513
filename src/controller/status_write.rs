//! Writing a Canary's status safely.
//!
//! - The patch carries only what changed, and a field that went away is sent as `null`: in a
//!   JSON merge patch an omitted field is kept, so a flag or a map entry could never be cleared.
//! - The patch is conditional on the resourceVersion the reconcile read, so a decision made on
//!   a stale copy never overwrites a newer status.
//! - The resourceVersion each write produced is remembered, so a reconcile that starts before
//!   the watch has delivered the controller's own last write waits for it instead of deciding
//!   (and acting, and announcing) a second time.

use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Map, Value};

use super::written::Written;
use crate::api::{Canary, CanaryStatus};

/// The JSON merge patch (RFC 7386) that turns `before` into `after`.
pub fn merge_diff(before: &Value, after: &Value) -> Value {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, value) in new {
                match old.get(key) {
                    Some(previous) if previous == value => {}
                    Some(previous) => {
                        patch.insert(key.clone(), merge_diff(previous, value));
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => after.clone(),
    }
}

/// Writes `after` over `before` (the status of `canary` as read). When the canary changed
/// since it was read but its status did not (its metadata did: a finalizer, an operator's
/// request), the write is made again on the fresh copy: the decision's actions are already
/// applied, and losing its status would repeat them. A 409 remains when the status changed.
/// Returns the canary as written, or `None` when the status was unchanged.
pub async fn write(
    api: &Api<Canary>,
    canary: &Canary,
    before: &CanaryStatus,
    after: &CanaryStatus,
    written: &Written,
) -> Result<Option<Canary>, kube::Error> {
    // Every status says which generation of the spec it was decided on.
    let stamped = CanaryStatus {
        observed_generation: canary.metadata.generation,
        ..after.clone()
    };
    let after = &stamped;
    match write_once(api, canary, before, after, written).await {
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let fresh = api.get_status(&canary.name_any()).await?;
            if fresh.status.clone().unwrap_or_default() != *before {
                // Decided on an old copy: the next reconcile decides on this one.
                written.supersede(canary, fresh);
                return Err(kube::Error::Api(status));
            }
            write_once(api, &fresh, before, after, written).await
        }
        other => other,
    }
}

async fn write_once(
    api: &Api<Canary>,
    canary: &Canary,
    before: &CanaryStatus,
    after: &CanaryStatus,
    written: &Written,
) -> Result<Option<Canary>, kube::Error> {
    if before == after {
        return Ok(None);
    }
    let old = serde_json::to_value(before).unwrap_or(Value::Null);
    let new = serde_json::to_value(after).unwrap_or(Value::Null);
    let mut patch = json!({ "status": merge_diff(&old, &new) });
    if let Some(version) = canary.resource_version() {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    let updated = api
        .patch_status(
            &canary.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    written.record(&updated);
    Ok(Some(updated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_fields_become_nulls_and_unchanged_ones_are_left_out() {
        let before = json!({ "phase": "Progressing", "preRolloutPassed": true, "judgeState": { "a": 1, "b": 2 }, "canaryWeight": 20 });
        let after = json!({ "phase": "Failed", "judgeState": { "a": 1 }, "canaryWeight": 20 });
        assert_eq!(
            merge_diff(&before, &after),
            json!({ "phase": "Failed", "preRolloutPassed": null, "judgeState": { "b": null } })
        );
    }
}
