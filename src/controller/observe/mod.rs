//! What one reconcile knows about a canary, read from the watch-fed stores and nothing else: a
//! pure function of them, so it is tested with store writers and no API server. Everything
//! that keeps a canary from running comes back as an [`Obstacle`] for the engine to report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::configs::{combined_revision, referenced, ConfigKind, Configs};
use super::index::RelationIndex;
use super::knative::KnativeService;
use super::objects;
use super::workload::Workload;
use crate::api::{Canary, MetricTemplate, MetricTemplateSpec, OperatorRequest, RouterKind};
use crate::engine::{Observations, Obstacle, Unreadable};
use crate::metrics::templates::{Resolution, TemplateSource, TemplateVars};
use crate::naming::{self, REQUEST_ANNOTATION, REVISION_ANNOTATION};
use crate::plan::{Plan, TargetKind};

/// The watch-fed stores a reconcile reads.
#[derive(Clone, Copy)]
pub struct Stores<'a> {
    pub deployments: &'a Store<Deployment>,
    pub daemon_sets: &'a Store<DaemonSet>,
    pub config_maps: &'a Store<ConfigMap>,
    pub secrets: &'a Store<Secret>,
    pub canaries: &'a Store<Canary>,
    pub templates: &'a Store<MetricTemplate>,
    pub relations: &'a RelationIndex,
}

impl Stores<'_> {
    /// The workload of `kind` named `name`, from the store of its kind.
    pub fn workload(&self, kind: TargetKind, namespace: &str, name: &str) -> Option<Workload> {
        match kind {
            TargetKind::Deployment => self
                .deployments
                .get(&ObjectRef::new(name).within(namespace))
                .map(Workload::Deployment),
            TargetKind::DaemonSet => self
                .daemon_sets
                .get(&ObjectRef::new(name).within(namespace))
                .map(Workload::DaemonSet),
            // Not watched: read when its canary is reconciled ([`observe_knative`]).
            TargetKind::KnativeService => None,
        }
    }
}

/// The controller's own settings that decide what a canary may do.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_router: RouterKind,
    /// The shortest analysis interval accepted (`--min-interval`).
    pub min_interval: Duration,
    /// The Prometheus of canaries that name none.
    pub metrics_server: String,
    /// How the proxies' telemetry is scraped: what the comparative judge samples at.
    pub sampling: crate::judge::sampling::SamplingModel,
}

/// The world as one reconcile of a canary sees it.
pub struct World {
    pub plan: Plan,
    pub target: Workload,
    pub primary: Option<Workload>,
    /// The ConfigMaps and Secrets the target's pod template uses.
    pub refs: BTreeSet<(ConfigKind, String)>,
    /// Every metric resolved to a built-in or a rendered query.
    pub checks: Vec<(String, Resolution)>,
    pub observations: Observations,
}

/// The canary's spec read into its plan, or why it cannot be.
pub fn read_plan(canary: &Canary, settings: &Settings) -> Result<Plan, Obstacle> {
    let options = crate::plan::Options {
        // The interval's floor is the controller's own, checked below.
        allow_short_intervals: true,
        default_router: Some(settings.default_router),
    };
    let plan = crate::plan::plan(&canary.spec, options).map_err(Obstacle::InvalidSpec)?;
    if plan.interval < settings.min_interval {
        return Err(Obstacle::IntervalBelowFloor {
            interval: plan.interval,
            floor: settings.min_interval,
        });
    }
    Ok(plan)
}

/// Everything a decision about `canary` needs from the stores.
pub fn observe(
    canary: &Canary,
    plan: Plan,
    stores: Stores<'_>,
    settings: &Settings,
) -> Result<World, Obstacle> {
    let namespace = canary.namespace().unwrap_or_default();
    let checks = resolve_checks(canary, &plan, stores, settings)?;
    let target_name = &plan.target.name;
    if let Some(owner) = conflicting_owner(canary, stores) {
        return Err(Obstacle::TargetClaimed {
            target: target_name.clone(),
            owner,
        });
    }
    let lookup = |name: &str| stores.workload(plan.target.kind, &namespace, name);
    let kind = plan.target.kind;
    let target = lookup(target_name)
        .ok_or_else(|| Obstacle::TargetNotFound(format!("{kind:?} {namespace}/{target_name}")))?;
    refuse_on_delete(&target)?;
    refuse_bad_mesh(canary, &plan)?;
    refuse_kind_change(canary, kind, stores)?;
    objects::selector_label(&target).map_err(|e| Obstacle::TargetSelectorMissing(e.to_string()))?;
    let primary = lookup(&naming::primary(target_name));
    let template = target.template();
    let refs = template.as_ref().map(referenced).unwrap_or_default();
    let configs = Configs {
        config_maps: stores.config_maps,
        secrets: stores.secrets,
        namespace: &namespace,
    };
    let checksums = configs.checksums(&refs);
    let observations = Observations {
        target_revision: template
            .as_ref()
            .map(|t| combined_revision(&objects::revision(t), &checksums)),
        primary_revision: primary
            .as_ref()
            .and_then(|p| p.annotations().get(REVISION_ANNOTATION).cloned()),
        primary_ready: primary
            .as_ref()
            .is_some_and(|p| p.is_ready(plan.analysis.primary_ready_threshold)),
        canary_ready: target.is_ready(plan.analysis.canary_ready_threshold),
        request: operator_request(canary),
        configs: checksums,
        ..Observations::default()
    };
    Ok(World {
        plan,
        target,
        primary,
        refs,
        checks,
        observations,
    })
}

/// Everything a decision about a canary of a Knative Service needs: the Service as just read
/// (`None` when it does not exist) and the stores. Its Revisions are the primary and the
/// canary; the latest created one is the revision a rollout is about.
pub fn observe_knative(
    canary: &Canary,
    plan: Plan,
    service: Option<KnativeService>,
    stores: Stores<'_>,
    settings: &Settings,
) -> Result<World, Obstacle> {
    let checks = resolve_checks(canary, &plan, stores, settings)?;
    let (namespace, name) = (canary.namespace().unwrap_or_default(), &plan.target.name);
    if let Some(owner) = conflicting_owner(canary, stores) {
        let target = name.clone();
        return Err(Obstacle::TargetClaimed { target, owner });
    }
    let service = service
        .ok_or_else(|| Obstacle::TargetNotFound(format!("Knative Service {namespace}/{name}")))?;
    let primary = service
        .primary_revision(&canary.uid().unwrap_or_default())
        .cloned();
    // Revision names reach PromQL label matchers, and the status and annotation they are read
    // from are free text.
    let named = [
        (
            "status.latestCreatedRevisionName",
            service.latest_created.as_ref(),
        ),
        (
            "metadata.annotations[\"aviary.dev/primary-revision\"]",
            primary.as_ref(),
        ),
    ];
    for (field, revision) in named {
        if let Some(bad) = revision.filter(|r| !naming::is_dns_label(r)) {
            return Err(Obstacle::InvalidSpec(format!(
                "spec.targetRef: Knative Service {name} has {field} {bad:?}, which is no Revision name"
            )));
        }
    }
    let observations = Observations {
        target_revision: service.latest_created.clone(),
        primary_ready: primary.as_deref().is_some_and(|r| service.serves(r)),
        primary_revision: primary,
        canary_ready: service.is_ready(),
        request: operator_request(canary),
        ..Observations::default()
    };
    Ok(World {
        plan,
        target: Workload::Knative(std::sync::Arc::new(service)),
        primary: None,
        refs: BTreeSet::new(),
        checks,
        observations,
    })
}

/// Kuma's mesh is named by an annotation on the Canary: written into a cluster-scoped route,
/// it must be a name Kuma can have.
fn refuse_bad_mesh(canary: &Canary, plan: &Plan) -> Result<(), Obstacle> {
    let key = crate::controller::router::MESH_ANNOTATION;
    match canary.annotations().get(key) {
        Some(mesh) if plan.router == RouterKind::Kuma && !naming::is_dns_label(mesh) => {
            Err(Obstacle::InvalidSpec(format!(
                "metadata.annotations[\"{key}\"]: {mesh:?} is not a mesh name (a DNS label)"
            )))
        }
        _ => Ok(()),
    }
}

/// A DaemonSet that updates its pods only when they are deleted would keep the canary's old
/// pods through a new revision, and the primary's through a promotion: Flagger refuses it too.
fn refuse_on_delete(target: &Workload) -> Result<(), Obstacle> {
    let Workload::DaemonSet(daemon_set) = target else {
        return Ok(());
    };
    let strategy = daemon_set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref());
    match strategy.and_then(|s| s.type_.as_deref()) {
        Some("OnDelete") => Err(Obstacle::InvalidSpec(format!(
            "spec.targetRef: DaemonSet {} has updateStrategy OnDelete; a canary needs RollingUpdate",
            target.name()
        ))),
        _ => Ok(()),
    }
}

/// A primary of the other kind, made by this canary before its `targetRef.kind` changed, would
/// go on serving beside the new one (both carry the same pod labels, so the Services would send
/// traffic to both). The canary waits until that primary is gone.
fn refuse_kind_change(
    canary: &Canary,
    kind: TargetKind,
    stores: Stores<'_>,
) -> Result<(), Obstacle> {
    let other = match kind {
        TargetKind::Deployment => TargetKind::DaemonSet,
        TargetKind::DaemonSet => TargetKind::Deployment,
        TargetKind::KnativeService => return Ok(()),
    };
    let namespace = canary.namespace().unwrap_or_default();
    let name = naming::primary(&canary.spec.target_ref.name);
    let uid = canary.uid().unwrap_or_default();
    match stores.workload(other, &namespace, &name) {
        Some(stale) if stale.is_controlled_by(&uid) => Err(Obstacle::InvalidSpec(format!(
            "spec.targetRef.kind: this canary made {other:?} {name}, and now names a {kind:?}; \
             delete {name} (or recreate the Canary) before changing the kind"
        ))),
        _ => Ok(()),
    }
}

/// The operator request annotated on the canary. One that does not read is identified by a
/// digest of its text, so it is answered once.
pub fn operator_request(canary: &Canary) -> Option<Result<OperatorRequest, Unreadable>> {
    let text = canary.annotations().get(REQUEST_ANNOTATION)?;
    Some(OperatorRequest::parse(text).map_err(|message| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Unreadable {
            marker: format!("unreadable-{hex}"),
            message,
        }
    }))
}

/// Another Canary, created earlier, that targets the same Deployment: found through the index,
/// never by scanning every canary.
pub fn conflicting_owner(canary: &Canary, stores: Stores<'_>) -> Option<String> {
    let namespace = canary.namespace().unwrap_or_default();
    let target = &canary.spec.target_ref.name;
    let key = |c: &Canary| (c.creation_timestamp().map(|t| t.0), c.name_any());
    stores
        .relations
        .for_workload(&namespace, target)
        .into_iter()
        .filter(|other| other.name != canary.name_any())
        .filter_map(|other| stores.canaries.get(&other))
        .filter(|other| other.spec.target_ref.name == *target)
        .filter(|other| key(other) < key(canary))
        .map(|other| other.name_any())
        .min()
}

/// MetricTemplates and Secrets as the watch-fed stores hold them.
struct StoreSource<'a>(Stores<'a>);

impl TemplateSource for StoreSource<'_> {
    fn template(&self, namespace: &str, name: &str) -> Option<MetricTemplateSpec> {
        self.0
            .templates
            .get(&ObjectRef::new(name).within(namespace))
            .map(|t| t.spec.clone())
    }

    fn secret(&self, namespace: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let secret = self
            .0
            .secrets
            .get(&ObjectRef::new(name).within(namespace))
            .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
        Ok(secret
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect())
    }
}

/// The Prometheus a canary's checks query.
pub fn metrics_address(plan: &Plan, settings: &Settings) -> String {
    plan.metrics_server
        .clone()
        .unwrap_or_else(|| settings.metrics_server.clone())
}

/// Every metric resolved to a built-in or a rendered query, or the problems by field path.
fn resolve_checks(
    canary: &Canary,
    plan: &Plan,
    stores: Stores<'_>,
    settings: &Settings,
) -> Result<Vec<(String, Resolution)>, Obstacle> {
    let vars = TemplateVars {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        target: plan.target.name.clone(),
        service: objects::service_name(canary),
        ingress: canary
            .spec
            .ingress_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        ..TemplateVars::default()
    };
    let address = metrics_address(plan, settings);
    let source = StoreSource(stores);
    crate::metrics::templates::resolve(plan, &vars, &address, settings.sampling, &source).map_err(
        |problems| {
            let joined = problems.iter().map(ToString::to_string).collect::<Vec<_>>();
            Obstacle::InvalidMetric(joined.join("; "))
        },
    )
}

#[cfg(test)]
mod tests;
