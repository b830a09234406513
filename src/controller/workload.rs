//! The workload a canary rolls out, whichever kind `targetRef` names: a Deployment or a
//! DaemonSet. Everything that differs between the two kinds is answered here (their selector,
//! their pod template, their readiness, how they are scaled down), so the rest of the
//! controller reads one type.
//!
//! A DaemonSet has no replica count: one pod runs on every node its template may run on. It is
//! scaled down by a node selector that no node carries, and up by taking that selector away.
//! The selector is never part of the revision, so scaling the canary down or up is never taken
//! for a new revision to analyse.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Map, Value};

use super::knative::KnativeService;
use crate::plan::TargetKind;

/// The node selector that keeps a scaled-down DaemonSet's pods off every node.
pub const SCALED_DOWN_KEY: &str = "aviary.dev/scale-to-zero";
/// Flagger's key for the same: a DaemonSet Flagger scaled down reads as scaled down here too,
/// and is scaled up by taking either key away.
pub const FLAGGER_SCALED_DOWN_KEY: &str = "flagger.app/scale-to-zero";
const SCALED_DOWN_KEYS: [&str; 2] = [SCALED_DOWN_KEY, FLAGGER_SCALED_DOWN_KEY];

/// A target or primary as a watch-fed store holds it.
#[derive(Debug, Clone)]
pub enum Workload {
    Deployment(Arc<Deployment>),
    DaemonSet(Arc<DaemonSet>),
    /// A Knative Service, read from the API server: it has no pod template of its own to copy,
    /// no selector and no size ([`super::knative`]).
    Knative(Arc<KnativeService>),
}

impl Workload {
    pub fn kind(&self) -> TargetKind {
        match self {
            Workload::Deployment(_) => TargetKind::Deployment,
            Workload::DaemonSet(_) => TargetKind::DaemonSet,
            Workload::Knative(_) => TargetKind::KnativeService,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Workload::Deployment(d) => d.name_any(),
            Workload::DaemonSet(d) => d.name_any(),
            Workload::Knative(s) => s.name.clone(),
        }
    }

    pub fn annotations(&self) -> &BTreeMap<String, String> {
        match self {
            Workload::Deployment(d) => d.annotations(),
            Workload::DaemonSet(d) => d.annotations(),
            Workload::Knative(s) => &s.annotations,
        }
    }

    /// Whether the object with `uid` is its controlling owner.
    pub fn is_controlled_by(&self, uid: &str) -> bool {
        let owners = match self {
            Workload::Deployment(d) => d.owner_references(),
            Workload::DaemonSet(d) => d.owner_references(),
            Workload::Knative(_) => &[],
        };
        owners
            .iter()
            .any(|o| o.controller == Some(true) && !uid.is_empty() && o.uid == uid)
    }

    /// The labels of the selector's `matchLabels`.
    pub fn match_labels(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref()?.selector.match_labels.as_ref(),
            Workload::DaemonSet(d) => d.spec.as_ref()?.selector.match_labels.as_ref(),
            Workload::Knative(_) => None,
        }
    }

    /// The pod template as its owner wrote it: a DaemonSet's without the node selector that
    /// scales it down.
    pub fn template(&self) -> Option<PodTemplateSpec> {
        match self {
            Workload::Deployment(d) => Some(d.spec.as_ref()?.template.clone()),
            Workload::DaemonSet(d) => Some(unscaled(d.spec.as_ref()?.template.clone())),
            Workload::Knative(_) => None,
        }
    }

    /// The replicas asked for. A DaemonSet asks for none when scaled down and otherwise for
    /// as many as it has nodes, which only its status knows: `None`.
    pub fn replicas(&self) -> Option<i32> {
        match self {
            Workload::Deployment(d) => d.spec.as_ref()?.replicas,
            Workload::DaemonSet(d) => is_scaled_down(d).then_some(0),
            Workload::Knative(_) => None,
        }
    }

    /// Whether no pod of it is asked for.
    pub fn is_scaled_down(&self) -> bool {
        self.replicas() == Some(0)
    }

    /// Serving: the current generation rolled out and at least `threshold_percent` of the
    /// pods asked for available. A scaled-down workload does not serve.
    pub fn is_ready(&self, threshold_percent: i32) -> bool {
        match self {
            Workload::Deployment(d) => super::readiness::is_ready(d, threshold_percent),
            Workload::DaemonSet(d) => {
                !is_scaled_down(d) && super::readiness::daemon_set_ready(d, threshold_percent)
            }
            Workload::Knative(s) => s.is_ready(),
        }
    }
}

/// The workload of `kind` named `name`, as the API server has it now.
pub async fn fetch(
    client: &kube::Client,
    namespace: &str,
    kind: TargetKind,
    name: &str,
) -> Result<Option<Workload>, kube::Error> {
    Ok(match kind {
        TargetKind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|d| Workload::Deployment(Arc::new(d))),
        TargetKind::DaemonSet => Api::<DaemonSet>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await?
            .map(|d| Workload::DaemonSet(Arc::new(d))),
        TargetKind::KnativeService => super::knative::fetch(client, namespace, name)
            .await?
            .map(|s| Workload::Knative(Arc::new(s))),
    })
}

fn is_scaled_down(daemon_set: &DaemonSet) -> bool {
    let selector = daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_selector.as_ref());
    selector.is_some_and(|selector| SCALED_DOWN_KEYS.iter().any(|k| selector.contains_key(*k)))
}

/// `template` without the scaling node selector; an empty selector is left out, as the API
/// server leaves it out, so the revision is the same before a scale-down and after a scale-up.
fn unscaled(mut template: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(spec) = template.spec.as_mut() {
        if let Some(selector) = spec.node_selector.as_mut() {
            for key in SCALED_DOWN_KEYS {
                selector.remove(key);
            }
            if selector.is_empty() {
                spec.node_selector = None;
            }
        }
    }
    template
}

/// Scales `target` to `replicas`, or, for a DaemonSet, down (0) or up (any other count).
/// Writes nothing when it is already there.
pub async fn scale(
    client: &kube::Client,
    namespace: &str,
    target: &Workload,
    replicas: i32,
) -> Result<(), kube::Error> {
    let name = target.name();
    match target {
        Workload::Deployment(d) => {
            if d.spec.as_ref().and_then(|s| s.replicas) == Some(replicas) {
                return Ok(());
            }
            let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
            api.patch(&name, &PatchParams::default(), &patch).await?;
        }
        Workload::DaemonSet(d) => {
            let down = replicas == 0;
            if is_scaled_down(d) == down {
                return Ok(());
            }
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
            let patch = Patch::Merge(daemon_set_scale_patch(down));
            api.patch(&name, &PatchParams::default(), &patch).await?;
        }
        // Knative scales every Revision by its own traffic.
        Workload::Knative(_) => {}
    }
    Ok(())
}

/// The merge patch that puts the scaling node selector on (down) or takes both keys off.
fn daemon_set_scale_patch(down: bool) -> Value {
    let selector: Map<String, Value> = if down {
        std::iter::once((SCALED_DOWN_KEY.to_string(), json!("true"))).collect()
    } else {
        SCALED_DOWN_KEYS
            .iter()
            .map(|key| (key.to_string(), Value::Null))
            .collect()
    };
    json!({ "spec": { "template": { "spec": { "nodeSelector": selector } } } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon_set(node_selector: Value) -> Workload {
        let d: DaemonSet = serde_json::from_value(json!({
            "metadata": { "name": "agent" },
            "spec": {
                "selector": { "matchLabels": { "app": "agent" } },
                "template": {
                    "metadata": { "labels": { "app": "agent" } },
                    "spec": { "nodeSelector": node_selector,
                              "containers": [{ "name": "agent", "image": "agent:1" }] }
                }
            }
        }))
        .unwrap();
        Workload::DaemonSet(Arc::new(d))
    }

    #[test]
    fn scaling_a_daemon_set_down_or_up_leaves_its_revision_alone() {
        let revision = |w: &Workload| super::super::objects::revision(&w.template().unwrap());
        let up = daemon_set(Value::Null);
        let down = daemon_set(json!({ SCALED_DOWN_KEY: "true" }));
        let by_flagger = daemon_set(json!({ FLAGGER_SCALED_DOWN_KEY: "true" }));
        assert!(!up.is_scaled_down() && down.is_scaled_down() && by_flagger.is_scaled_down());
        assert_eq!(revision(&up), revision(&down));
        assert_eq!(revision(&up), revision(&by_flagger));
        assert_eq!((up.replicas(), down.replicas()), (None, Some(0)));
        let pinned = daemon_set(json!({ "disk": "ssd", SCALED_DOWN_KEY: "true" }));
        let template = pinned.template().unwrap();
        let kept = template.spec.unwrap().node_selector.unwrap();
        assert_eq!(kept, BTreeMap::from([("disk".into(), "ssd".into())]));
    }

    #[test]
    fn a_scaled_down_daemon_set_does_not_serve() {
        assert!(!daemon_set(json!({ SCALED_DOWN_KEY: "true" })).is_ready(0));
    }

    #[test]
    fn scaling_up_takes_both_keys_away() {
        let up = daemon_set_scale_patch(false);
        let selector = &up["spec"]["template"]["spec"]["nodeSelector"];
        assert_eq!(selector[SCALED_DOWN_KEY], Value::Null);
        assert!(selector
            .as_object()
            .unwrap()
            .contains_key(FLAGGER_SCALED_DOWN_KEY));
        let down = daemon_set_scale_patch(true);
        assert_eq!(
            down["spec"]["template"]["spec"]["nodeSelector"][SCALED_DOWN_KEY],
            "true"
        );
    }
}
