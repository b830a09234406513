//! The Kubernetes objects a Canary generates, as pure functions of the Canary and its target:
//! the primary Deployment or DaemonSet and the apex, primary and canary Services.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};

use super::workload::Workload;
use crate::api::Canary;
use crate::naming::{self, REVISION_ANNOTATION};

/// The labels Flagger accepts as the workload's selector, in the order it tries them.
pub const SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

/// Why objects cannot be generated for a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("{0} has no selector label app, name or app.kubernetes.io/name")]
    NoSelectorLabel(String),
    #[error("{0} has no pod template")]
    NoTemplate(String),
    #[error("Canary has no name or namespace")]
    Unnamed,
}

/// The revision of a target: a digest of its pod template (what a rollout is about).
pub fn revision(template: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The selector label of the target and its value.
pub fn selector_label(target: &Workload) -> Result<(String, String), ObjectError> {
    let labels = target.match_labels();
    SELECTOR_LABELS
        .iter()
        .find_map(|label| {
            labels?
                .get(*label)
                .map(|value| (label.to_string(), value.clone()))
        })
        .ok_or_else(|| ObjectError::NoSelectorLabel(described(target)))
}

/// `Deployment web`, `DaemonSet agent`: how errors name a workload.
fn described(target: &Workload) -> String {
    format!("{:?} {}", target.kind(), target.name())
}

pub fn owner_reference(canary: &Canary) -> Result<OwnerReference, ObjectError> {
    canary.controller_owner_ref(&()).ok_or(ObjectError::Unnamed)
}

/// The apex Service name (spec.service.name, default the target's name).
pub fn service_name(canary: &Canary) -> String {
    canary
        .spec
        .service
        .name
        .clone()
        .unwrap_or_else(|| canary.spec.target_ref.name.clone())
}

/// The primary's pod template and selector: the target's template with the selector value
/// suffixed `-primary` and config references pointed at the `-primary` copies.
fn primary_pods(target: &Workload) -> Result<(PodTemplateSpec, LabelSelector), ObjectError> {
    let (label, value) = selector_label(target)?;
    let primary_value = naming::primary(&value);
    let mut template = target
        .template()
        .ok_or_else(|| ObjectError::NoTemplate(described(target)))?;
    super::configs::rewrite_for_primary(&mut template);
    let pod_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    pod_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(label.clone(), primary_value.clone());
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(label, primary_value)])),
        ..LabelSelector::default()
    };
    Ok((template, selector))
}

/// The primary's metadata: owned by the Canary, labelled like its pods and annotated with the
/// revision it runs.
fn primary_meta(
    canary: &Canary,
    target: &Workload,
    selector: &LabelSelector,
    revision: &str,
) -> Result<ObjectMeta, ObjectError> {
    Ok(ObjectMeta {
        name: Some(naming::primary(&target.name())),
        namespace: canary.metadata.namespace.clone(),
        labels: selector.match_labels.clone(),
        annotations: Some(BTreeMap::from([(
            REVISION_ANNOTATION.to_string(),
            revision.to_string(),
        )])),
        owner_references: Some(vec![owner_reference(canary)?]),
        ..ObjectMeta::default()
    })
}

/// The primary of the target's kind. `replicas` sizes a Deployment; a DaemonSet runs on the
/// nodes its template allows.
pub fn primary(
    canary: &Canary,
    target: &Workload,
    replicas: i32,
    revision: &str,
) -> Result<Primary, ObjectError> {
    let (template, selector) = primary_pods(target)?;
    let metadata = primary_meta(canary, target, &selector, revision)?;
    Ok(match target {
        Workload::Deployment(d) => {
            let spec = d.spec.clone().unwrap_or_default();
            Primary::Deployment(Deployment {
                metadata,
                spec: Some(DeploymentSpec {
                    replicas: Some(replicas),
                    selector,
                    template,
                    strategy: spec.strategy,
                    min_ready_seconds: spec.min_ready_seconds,
                    revision_history_limit: spec.revision_history_limit,
                    progress_deadline_seconds: spec.progress_deadline_seconds,
                    paused: None,
                }),
                status: None,
            })
        }
        Workload::DaemonSet(d) => {
            let spec = d.spec.clone().unwrap_or_default();
            Primary::DaemonSet(DaemonSet {
                metadata,
                spec: Some(DaemonSetSpec {
                    selector,
                    template,
                    update_strategy: spec.update_strategy,
                    min_ready_seconds: spec.min_ready_seconds,
                    revision_history_limit: spec.revision_history_limit,
                }),
                status: None,
            })
        }
        // Its primary is one of its own Revisions, named by an annotation: nothing is copied.
        Workload::Knative(_) => return Err(ObjectError::NoTemplate(described(target))),
    })
}

/// A primary as written.
#[derive(Debug, Clone)]
pub enum Primary {
    Deployment(Deployment),
    DaemonSet(DaemonSet),
}

/// The three Services: apex and `-primary` select the primary pods, `-canary` the target's.
pub fn services(canary: &Canary, target: &Workload) -> Result<Vec<Service>, ObjectError> {
    let (label, value) = selector_label(target)?;
    let base = service_name(canary);
    let spec = &canary.spec.service;
    let port = ServicePort {
        name: Some(spec.port_name.clone().unwrap_or_else(|| "http".to_string())),
        port: spec.port,
        protocol: Some("TCP".into()),
        app_protocol: spec.app_protocol.clone(),
        target_port: Some(match &spec.target_port {
            Some(serde_json::Value::String(name)) => IntOrString::String(name.clone()),
            Some(serde_json::Value::Number(n)) => IntOrString::Int(n.as_i64().unwrap_or(0) as i32),
            _ => IntOrString::Int(spec.port),
        }),
        node_port: None,
    };
    let owner = owner_reference(canary)?;
    let unmanaged = spec.unmanaged_metadata.clone().unwrap_or_default();
    // Keys others own are left out of what is applied, so their values stay as they are.
    let managed = |pairs: &BTreeMap<String, String>, others: &[String]| {
        let kept: BTreeMap<String, String> = pairs
            .iter()
            .filter(|(key, _)| !others.contains(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(kept).filter(|kept| !kept.is_empty())
    };
    let meta = |name: String, extra: Option<&crate::api::ServiceMetadata>| ObjectMeta {
        name: Some(name),
        namespace: canary.metadata.namespace.clone(),
        labels: extra.and_then(|m| managed(&m.labels, &unmanaged.labels)),
        annotations: extra.and_then(|m| managed(&m.annotations, &unmanaged.annotations)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let service = |meta: ObjectMeta, selector_value: String| Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: spec.headless.then(|| "None".to_string()),
            traffic_distribution: spec.traffic_distribution.clone(),
            selector: Some(BTreeMap::from([(label.clone(), selector_value)])),
            ports: Some(vec![port.clone()]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    let primary_value = naming::primary(&value);
    Ok(vec![
        service(
            meta(base.clone(), spec.apex.as_ref()),
            primary_value.clone(),
        ),
        service(
            meta(naming::primary(&base), spec.primary.as_ref()),
            primary_value,
        ),
        service(meta(naming::canary(&base), spec.canary.as_ref()), value),
    ])
}

/// A `-primary` copy of the target's HorizontalPodAutoscaler, scaling the primary.
pub fn primary_autoscaler(
    canary: &Canary,
    source: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
) -> Result<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler, ObjectError> {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    let name = source.metadata.name.clone().unwrap_or_default();
    let mut spec = source.spec.clone().unwrap_or_default();
    spec.scale_target_ref.name = naming::primary(&canary.spec.target_ref.name);
    if let Some(replicas) = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .and_then(|r| r.primary_scaler_replicas.as_ref())
    {
        if let Some(min) = replicas.min_replicas {
            spec.min_replicas = Some(min);
        }
        if let Some(max) = replicas.max_replicas {
            spec.max_replicas = max;
        }
    }
    Ok(HorizontalPodAutoscaler {
        metadata: ObjectMeta {
            name: Some(naming::primary(&name)),
            namespace: canary.metadata.namespace.clone(),
            owner_references: Some(vec![owner_reference(canary)?]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}
