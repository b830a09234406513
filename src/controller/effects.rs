//! The cluster side of the adapter protocol: the engine's actions as writes to the API server
//! and the mesh, its metrics from Prometheus, its events as Kubernetes Events and alerts.

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use super::configs::Configs;
use super::objects;
use super::observe::{metrics_address, World};
use super::reconcile::ReconcileError;
use super::scaled_object;
use super::workload::Workload;
use super::Context;
use crate::api::HookType;
use crate::api::{Canary, CanaryStatus};
use crate::driver::Adapter;
use crate::engine::{Event, HookOutcome, MetricOutcome, Routes};
use crate::metrics::compare::{Comparer, Sides};
use crate::metrics::prometheus::{MeshProvider, PrometheusClient, WorkloadRef};
use crate::metrics::templates::WithTemplates;
use crate::naming::{self, FIELD_MANAGER};
use crate::plan::{AutoscalerKind, Webhook};

/// One step's metric queries, owned.
struct Measurement {
    plan: crate::plan::Plan,
    address: String,
    http: reqwest::Client,
    mesh: crate::metrics::prometheus::MeshTelemetry,
    namespace: String,
    /// The canary's and the primary's workload names as the telemetry labels them.
    sides: (String, String),
    checks: Vec<(String, crate::metrics::templates::Resolution)>,
    pool: std::sync::Arc<crate::metrics::templates::PrometheusPool>,
    sampling: crate::judge::sampling::SamplingModel,
    /// Per comparative metric, the end of the last sub-interval (then of the counts) its
    /// test counted.
    sampled_until: std::collections::BTreeMap<String, i64>,
    counted_until: std::collections::BTreeMap<String, i64>,
}

impl Measurement {
    async fn run(self) -> Vec<MetricOutcome> {
        let plan = &self.plan;
        // A query must answer well within the interval, or the step would be late.
        let timeout = (plan.interval / 2).clamp(Duration::from_secs(1), Duration::from_secs(10));
        let provider = MeshProvider {
            prometheus: PrometheusClient::with_http(self.http.clone(), &self.address, timeout),
            mesh: self.mesh,
            workload: WorkloadRef {
                namespace: self.namespace.clone(),
                name: self.sides.0.clone(),
                kind: plan.target.kind,
            },
        };
        let templated = WithTemplates {
            builtins: &provider,
            resolved: &self.checks,
            pool: &self.pool,
            workload: plan.target.name.clone(),
            timeout,
        };
        let mut outcomes = crate::driver::measure_all(plan, &templated).await;
        let primary = WorkloadRef {
            name: self.sides.1.clone(),
            ..provider.workload.clone()
        };
        let comparer = Comparer {
            prometheus: &provider.prometheus,
            mesh: provider.mesh,
            sides: Sides {
                canary: &provider.workload,
                primary: &primary,
            },
            resolved: &self.checks,
            pool: &self.pool,
            timeout,
            analysis_interval: plan.interval,
            sampling: self.sampling,
            sampled_until: &self.sampled_until,
            counted_until: &self.counted_until,
            now: jiff::Timestamp::now().as_millisecond(),
        };
        comparer.add_to(plan, &mut outcomes).await;
        outcomes
    }
}

/// Where each comparative metric's sample test stands, from the stored status.
fn sampled_until(canary: &Canary) -> std::collections::BTreeMap<String, i64> {
    let tests = canary.status.iter().flat_map(|status| &status.sample_tests);
    tests
        .filter_map(|(metric, test)| Some((metric.clone(), test.sampled_until?)))
        .collect()
}

/// Where each comparative metric's count test stands, from the stored status.
fn counted_until(canary: &Canary) -> std::collections::BTreeMap<String, i64> {
    let tests = canary.status.iter().flat_map(|status| &status.judge_state);
    tests
        .filter_map(|(metric, test)| Some((metric.clone(), test.counted_until?)))
        .collect()
}

/// Background hook batches (post-rollout, event) in flight at most, across all canaries.
pub const BACKGROUND_HOOKS: usize = 256;

/// One canary's effects in the cluster, as this reconcile observed it.
pub struct Cluster<'a> {
    pub canary: &'a Canary,
    pub ctx: &'a Context,
    pub world: &'a World,
    /// Events decided in this reconcile, published once its status is stored.
    pub pending: parking_lot::Mutex<Vec<Pending>>,
    /// The canary as a transition's intent was stored in this reconcile, which the final
    /// status write goes over.
    pub stored: parking_lot::Mutex<Option<Canary>>,
}

/// An Event waiting for the status that caused it to be stored, with what its alert needs.
pub struct Pending {
    pub event: Event,
    pub alert: Option<(CanaryStatus, crate::plan::Plan)>,
}

/// Publishes a reconcile's Events and alerts after its status is stored, so none describes a
/// state the API server does not hold (a status write that loses a conflict publishes nothing;
/// the next reconcile decides again).
pub async fn publish_pending(canary: &Canary, ctx: &Context, pending: Vec<Pending>) {
    for Pending { event, alert } in pending {
        ctx.events
            .publish(canary, event.severity, event.reason, &event.message)
            .await;
        if let Some((status, plan)) = alert {
            ctx.announcer.announce(canary, &plan, &status, &event);
        }
    }
}

impl Cluster<'_> {
    fn namespace(&self) -> String {
        self.canary.namespace().unwrap_or_default()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.namespace())
    }

    fn router(&self) -> &dyn super::router::Router {
        self.ctx.routers.get(self.world.plan.router)
    }

    fn target_replicas(&self) -> i32 {
        self.world.target.replicas().unwrap_or(1)
    }

    /// The primary's size: as it runs, or the target's when there is no primary yet. A
    /// DaemonSet's is only ever compared with 0: it runs on every node it may.
    fn primary_replicas(&self) -> i32 {
        self.world
            .primary
            .as_ref()
            .and_then(|p| p.replicas())
            .unwrap_or(self.target_replicas().max(1))
    }

    /// Writes the primary: `-primary` copies of the configs first (so new pods find them), then
    /// the autoscaler copy, then the Deployment or DaemonSet with the target's template.
    async fn write_primary(&self, replicas: i32) -> Result<(), ReconcileError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let namespace = self.namespace();
        let configs = Configs {
            config_maps: &self.ctx.config_maps,
            secrets: &self.ctx.secrets,
            namespace: &namespace,
        };
        let (maps, secrets) = configs.primary_copies(self.canary, &self.world.refs);
        let map_api: Api<ConfigMap> = self.api();
        for map in maps {
            map_api
                .patch(&map.name_any(), &params, &Patch::Apply(&map))
                .await?;
        }
        let secret_api: Api<Secret> = self.api();
        for secret in secrets {
            secret_api
                .patch(&secret.name_any(), &params, &Patch::Apply(&secret))
                .await?;
        }
        self.write_primary_autoscaler(&params).await?;
        let revision = self
            .world
            .observations
            .target_revision
            .clone()
            .unwrap_or_default();
        match objects::primary(self.canary, &self.world.target, replicas, &revision)? {
            objects::Primary::Deployment(desired) => {
                let api: Api<Deployment> = self.api();
                api.patch(&desired.name_any(), &params, &Patch::Apply(&desired))
                    .await?;
            }
            objects::Primary::DaemonSet(desired) => {
                let api: Api<DaemonSet> = self.api();
                api.patch(&desired.name_any(), &params, &Patch::Apply(&desired))
                    .await?;
            }
        }
        Ok(())
    }

    /// The primary's copy of `autoscalerRef`. Read only when the primary is written (bootstrap
    /// and promotion), never per interval. A reference to nothing is an error naming the field.
    async fn write_primary_autoscaler(&self, params: &PatchParams) -> Result<(), ReconcileError> {
        let (Some(reference), Some(kind)) =
            (&self.canary.spec.autoscaler_ref, self.world.plan.autoscaler)
        else {
            return Ok(());
        };
        if kind == AutoscalerKind::ScaledObject {
            let client = &self.ctx.client;
            return Ok(scaled_object::write_primary_copy(client, self.canary, reference).await?);
        }
        let hpas: Api<HorizontalPodAutoscaler> = self.api();
        let Some(source) = hpas.get_opt(&reference.name).await? else {
            let kind = "HorizontalPodAutoscaler";
            let name = reference.name.clone();
            return Err(scaled_object::AutoscalerError::NotFound { kind, name }.into());
        };
        let copy = objects::primary_autoscaler(self.canary, &source)?;
        hpas.patch(&copy.name_any(), params, &Patch::Apply(&copy))
            .await?;
        Ok(())
    }

    /// A KEDA ScaledObject would scale the idle canary back up: it is paused at zero while
    /// the canary is scaled down, and unpaused before it is scaled up.
    async fn pause_target_scaler(&self, paused: bool) -> Result<(), ReconcileError> {
        let Some(reference) = &self.canary.spec.autoscaler_ref else {
            return Ok(());
        };
        if self.world.plan.autoscaler != Some(AutoscalerKind::ScaledObject) {
            return Ok(());
        }
        scaled_object::set_paused(&self.ctx.client, self.canary, reference, paused).await?;
        Ok(())
    }

    /// A Knative Service's primary is a Revision: the one named, else the latest.
    async fn name_primary_revision(&self, promoted: bool) -> Result<(), ReconcileError> {
        let Workload::Knative(service) = &self.world.target else {
            return Ok(());
        };
        let seen = &self.world.observations;
        let (Some(revision), uid) = (&seen.target_revision, self.canary.uid().unwrap_or_default())
        else {
            return Ok(());
        };
        if !promoted && seen.primary_revision.is_some() {
            return Ok(());
        }
        let (client, namespace) = (&self.ctx.client, self.namespace());
        let primary = Some((revision.as_str(), uid.as_str()));
        super::knative::set_primary(client, &namespace, &service.name, primary).await?;
        Ok(())
    }

    async fn bootstrap_now(&self) -> Result<(), ReconcileError> {
        if self.world.plan.target.kind == crate::plan::TargetKind::KnativeService {
            return self.name_primary_revision(false).await;
        }
        if self.world.primary.is_none() {
            self.write_primary(self.target_replicas().max(1)).await?;
        }
        self.router().ensure(self.canary, &self.world.plan).await?;
        let services: Api<Service> = self.api();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for service in objects::services(self.canary, &self.world.target)? {
            services
                .patch(&service.name_any(), &params, &Patch::Apply(&service))
                .await?;
        }
        Ok(())
    }

    async fn scale_now(&self, up: bool) -> Result<(), ReconcileError> {
        let replicas = if up { self.primary_replicas() } else { 0 };
        self.pause_target_scaler(!up).await?;
        let namespace = self.namespace();
        super::workload::scale(&self.ctx.client, &namespace, &self.world.target, replicas).await?;
        Ok(())
    }

    /// The canary's and the primary's workloads as telemetry names them: the target and its
    /// `-primary` copy, a Knative Service's analysed and primary Revisions, or for Kuma the
    /// apex's `-canary` and `-primary` Services.
    fn sides(&self) -> (String, String) {
        let plan = &self.world.plan;
        let seen = &self.world.observations;
        match plan.target.kind {
            crate::plan::TargetKind::KnativeService => (
                seen.target_revision.clone().unwrap_or_default(),
                seen.primary_revision.clone().unwrap_or_default(),
            ),
            // Kuma names its clusters after the Services: the apex's `-canary` and `-primary`.
            _ if plan.router == crate::api::RouterKind::Kuma => {
                let apex = objects::service_name(self.canary);
                (naming::canary(&apex), naming::primary(&apex))
            }
            _ => (plan.target.name.clone(), naming::primary(&plan.target.name)),
        }
    }

    /// This step's metric queries, owning all they need, so they can outlast the reconcile.
    fn measurement(&self) -> Measurement {
        let plan = &self.world.plan;
        let ctx = self.ctx;
        Measurement {
            address: metrics_address(plan, &ctx.settings),
            http: ctx.prometheus_http.clone(),
            mesh: ctx.telemetry_for(plan.router),
            namespace: self.namespace(),
            sides: self.sides(),
            checks: self.world.checks.clone(),
            pool: ctx.template_pool.clone(),
            plan: plan.clone(),
            sampling: ctx.settings.sampling,
            sampled_until: sampled_until(self.canary),
            counted_until: counted_until(self.canary),
        }
    }
}

impl Adapter for Cluster<'_> {
    type Error = ReconcileError;

    fn hook_key(&self, hook: &Webhook) -> Result<Option<Vec<u8>>, String> {
        super::alerts::webhook_key(&self.ctx.secrets, &self.namespace(), hook)
    }

    /// The queries run in their own task: the reconcile waits a moment only, and their end
    /// reconciles the canary again ([`super::deferred`]).
    fn measure<'a>(
        &'a self,
        status: &'a CanaryStatus,
    ) -> BoxFuture<'a, Option<Vec<MetricOutcome>>> {
        let work = super::deferred::Work::Metrics;
        let key = super::deferred::Key::new(ObjectRef::from_obj(self.canary), work, status);
        let queries = Box::pin(self.measurement().run());
        Box::pin(self.ctx.kept.deferred_metrics.outcomes(key, queries))
    }

    /// The intent is written over the status as read, like the reconcile's final write; its
    /// Events go out once it is stored, so a controller that stops before the effects are
    /// made has still announced the transition the next one finishes.
    fn store<'a>(&'a self, intent: &'a CanaryStatus) -> BoxFuture<'a, Result<(), ReconcileError>> {
        Box::pin(async move {
            let api: Api<Canary> = self.api();
            let before = self.canary.status.clone().unwrap_or_default();
            let written = super::status_write::write(
                &api,
                self.canary,
                &before,
                intent,
                &self.ctx.kept.written,
            );
            let stored = written
                .await
                .map_err(super::reconcile::status_conflict_is_stale)?;
            *self.stored.lock() = stored;
            let announced = std::mem::take(&mut *self.pending.lock());
            publish_pending(self.canary, self.ctx, announced).await;
            Ok(())
        })
    }

    fn bootstrap(&self) -> BoxFuture<'_, Result<(), ReconcileError>> {
        Box::pin(self.bootstrap_now())
    }

    fn set_routes(&self, routes: Routes) -> BoxFuture<'_, Result<(), ReconcileError>> {
        Box::pin(async move {
            self.router()
                .apply(self.canary, &self.world.plan, routes)
                .await?;
            Ok(())
        })
    }

    fn scale_target(&self, up: bool) -> BoxFuture<'_, Result<(), ReconcileError>> {
        Box::pin(self.scale_now(up))
    }

    fn promote(&self) -> BoxFuture<'_, Result<(), ReconcileError>> {
        Box::pin(async move {
            if self.world.plan.target.kind == crate::plan::TargetKind::KnativeService {
                return self.name_primary_revision(true).await;
            }
            self.write_primary(self.primary_replicas()).await?;
            self.router().ensure(self.canary, &self.world.plan).await?;
            Ok(())
        })
    }

    /// Policies first, so primary pods never run uncovered; a failed copy is reported, and the
    /// next reconcile tries again.
    fn prepare(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let synced = super::security::sync_copies(self.canary, self.ctx, &self.world.target);
            if let Err(error) = synced.await {
                tracing::warn!(canary = %self.canary.name_any(), %error, "cannot write -primary policy copies");
            }
        })
    }

    /// A batch of hooks runs in its own task: the reconcile waits a moment only, and the
    /// batch's end reconciles the canary again ([`super::deferred`]).
    fn hooks<'a>(
        &'a self,
        kind: HookType,
        status: &'a CanaryStatus,
        calls: BoxFuture<'static, Vec<HookOutcome>>,
    ) -> BoxFuture<'a, Option<Vec<HookOutcome>>> {
        let work = super::deferred::Work::Hooks(kind);
        let key = super::deferred::Key::new(ObjectRef::from_obj(self.canary), work, status);
        Box::pin(self.ctx.kept.deferred_hooks.outcomes(key, calls))
    }

    /// Post-rollout and event hooks run on, at most [`BACKGROUND_HOOKS`] batches at once; past
    /// that a batch is dropped with a warning rather than piling up.
    fn background(&self, task: BoxFuture<'static, ()>) {
        let Ok(permit) = self.ctx.background_hooks.clone().try_acquire_owned() else {
            tracing::warn!(canary = %self.canary.name_any(), "too many background webhooks in flight; one batch dropped");
            return;
        };
        tokio::spawn(async move {
            task.await;
            drop(permit);
        });
    }

    fn publish<'a>(&'a self, event: &'a Event, status: &'a CanaryStatus) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let canary = self.canary;
            tracing::info!(canary = %canary.name_any(), namespace = %self.namespace(), reason = %event.reason, "{}", event.message);
            let alert = Some((status.clone(), self.world.plan.clone()));
            let event = event.clone();
            self.pending.lock().push(Pending { event, alert });
        })
    }
}
