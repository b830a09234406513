//! The Kubernetes objects a Canary generates, as pure functions of the Canary and its target:
//! the primary Deployment and the apex, primary and canary Services.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use sha2::{Digest, Sha256};

use crate::api::Canary;
use crate::naming::{self, REVISION_ANNOTATION};

/// The labels Flagger accepts as the workload's selector, in the order it tries them.
pub const SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

/// Why objects cannot be generated for a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("Deployment {0} has no selector label app, name or app.kubernetes.io/name")]
    NoSelectorLabel(String),
    #[error("Deployment {0} has no pod template")]
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
pub fn selector_label(target: &Deployment) -> Result<(String, String), ObjectError> {
    let name = target.metadata.name.clone().unwrap_or_default();
    let labels = target
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    SELECTOR_LABELS
        .iter()
        .find_map(|label| {
            labels
                .get(*label)
                .map(|value| (label.to_string(), value.clone()))
        })
        .ok_or(ObjectError::NoSelectorLabel(name))
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

/// The primary Deployment: the target's current template with the selector value suffixed
/// `-primary` and config references pointed at the `-primary` copies, owned by the Canary and
/// annotated with the revision it runs.
pub fn primary_deployment(
    canary: &Canary,
    target: &Deployment,
    replicas: i32,
    revision: &str,
) -> Result<Deployment, ObjectError> {
    let target_name = target.metadata.name.clone().unwrap_or_default();
    let (label, value) = selector_label(target)?;
    let primary_value = naming::primary(&value);
    let target_spec = target
        .spec
        .clone()
        .ok_or_else(|| ObjectError::NoTemplate(target_name.clone()))?;
    let mut template = target_spec.template.clone();
    super::configs::rewrite_for_primary(&mut template);
    let pod_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    pod_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(label.clone(), primary_value.clone());
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(naming::primary(&target_name)),
            namespace: canary.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(label.clone(), primary_value.clone())])),
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_string(),
                revision.to_string(),
            )])),
            owner_references: Some(vec![owner_reference(canary)?]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(label, primary_value)])),
                ..LabelSelector::default()
            },
            template,
            strategy: target_spec.strategy,
            min_ready_seconds: target_spec.min_ready_seconds,
            revision_history_limit: target_spec.revision_history_limit,
            progress_deadline_seconds: target_spec.progress_deadline_seconds,
            paused: None,
        }),
        status: None,
    })
}

/// The three Services: apex and `-primary` select the primary pods, `-canary` the target's.
pub fn services(canary: &Canary, target: &Deployment) -> Result<Vec<Service>, ObjectError> {
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
