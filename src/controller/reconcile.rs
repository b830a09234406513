//! One reconcile of one Canary: read the world from the stores, ask the engine, apply its actions,
//! write the status when it changed, and come back at the interval the engine asked for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::configs::{combined_revision, referenced, ConfigKind, Configs};
use super::objects::{self, ObjectError};
use super::readiness::is_ready;
use super::{Context, ERROR_BACKOFF};
use crate::api::{
    AlertSeverity, Canary, CanaryAnalysis, CanaryPhase, CanaryStatus, ConditionStatus,
    ConditionType, HookType, Reason,
};
use crate::engine::{self, Action, Decision, MetricOutcome, Observations, Routes};
use crate::hooks::HookPayload;
use crate::metrics::prometheus::{MeshProvider, PrometheusClient, WorkloadRef};
use crate::metrics::templates::{Resolution, TemplateSource, TemplateVars, WithTemplates};
use crate::naming::{self, FIELD_MANAGER, FINALIZER, REQUEST_ANNOTATION, REVISION_ANNOTATION};
use futures::future::BoxFuture;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Router(#[from] super::router::RouterError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("the canary changed while it was reconciled; reading it again")]
    Stale,
}

/// How soon to look again at a canary whose copy was stale.
const STALE_RETRY: Duration = Duration::from_millis(300);

/// How long a reconcile waits for the watch-fed stores to be listed after start.
const STORE_PATIENCE: Duration = Duration::from_secs(30);

pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let started = Instant::now();
    let result = reconcile_inner(&canary, &ctx).await;
    ctx.metrics.step_duration(started.elapsed().as_secs_f64());
    result
}

/// A write refused because the object changed since it was read (a conflict, or a JSON patch
/// whose `test` failed) is retried soon on a fresher copy, not after the error backoff.
fn conflict_is_stale(error: kube::Error) -> ReconcileError {
    match error {
        kube::Error::Api(status) if matches!(status.code, 409 | 422) => ReconcileError::Stale,
        other => ReconcileError::Kube(other),
    }
}

pub fn error_policy(canary: Arc<Canary>, error: &ReconcileError, _: Arc<Context>) -> Requeue {
    if matches!(error, ReconcileError::Stale) {
        tracing::debug!(canary = %canary.name_any(), "stale copy; retrying");
        return Requeue::requeue(STALE_RETRY);
    }
    tracing::warn!(canary = %canary.name_any(), namespace = ?canary.namespace(), %error, "reconcile failed");
    Requeue::requeue(ERROR_BACKOFF)
}

async fn reconcile_inner(canary: &Canary, ctx: &Context) -> Result<Requeue, ReconcileError> {
    // Right after start the stores may still be filling: deciding then would report targets as
    // missing that merely have not been listed yet.
    let stores_ready = async {
        let _ = ctx.deployments.wait_until_ready().await;
        let _ = ctx.config_maps.wait_until_ready().await;
        let _ = ctx.secrets.wait_until_ready().await;
        let _ = ctx.templates.wait_until_ready().await;
    };
    if tokio::time::timeout(STORE_PATIENCE, stores_ready)
        .await
        .is_err()
    {
        return Ok(Requeue::requeue(ERROR_BACKOFF));
    }
    let namespace = canary.namespace().unwrap_or_default();
    let name = canary.name_any();
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), &namespace);
    if ctx.written.is_stale(canary) {
        // The watch has not delivered this controller's own last write yet; deciding on the
        // older copy would repeat the last step. Its arrival triggers the next reconcile.
        return Ok(Requeue::requeue(STALE_RETRY));
    }
    if canary.meta().deletion_timestamp.is_some() {
        return finalize(canary, ctx, &api).await;
    }
    if canary.spec.revert_on_deletion {
        super::finalizer::ensure(&api, canary)
            .await
            .map_err(conflict_is_stale)?;
    }
    let status = canary.status.clone().unwrap_or_default();
    let target_name = &canary.spec.target_ref.name;
    if canary.spec.interval() < ctx.min_interval {
        let message = format!(
            "spec.analysis.interval {:?} is below the minimum of {:?}",
            canary
                .spec
                .analysis
                .as_ref()
                .and_then(|a| a.interval.clone())
                .unwrap_or_default(),
            ctx.min_interval
        );
        return block(canary, ctx, &api, status, Reason::InvalidSpec, message).await;
    }

    let options = crate::validate::Options {
        // The interval's floor is the controller's own, checked above.
        allow_short_intervals: true,
        default_router: Some(ctx.default_router),
    };
    let findings = crate::validate::check_canary_spec(&canary.spec, options);
    if !findings.is_empty() {
        let message = findings
            .iter()
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        return block(canary, ctx, &api, status, Reason::InvalidSpec, message).await;
    }

    let checks = match resolve_checks(canary, ctx) {
        Ok(checks) => checks,
        Err(problems) => {
            let message = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return block(canary, ctx, &api, status, Reason::InvalidMetric, message).await;
        }
    };

    if let Some(owner) = conflicting_owner(canary, ctx) {
        let message = format!(
            "Deployment {target_name} is already managed by Canary {owner}; this one is not run"
        );
        return block(canary, ctx, &api, status, Reason::TargetClaimed, message).await;
    }
    let Some(target) = ctx
        .deployments
        .get(&ObjectRef::new(target_name).within(&namespace))
    else {
        let message = format!("target Deployment {namespace}/{target_name} not found");
        return block(canary, ctx, &api, status, Reason::TargetNotFound, message).await;
    };
    if let Err(error) = objects::selector_label(&target) {
        return block(
            canary,
            ctx,
            &api,
            status,
            Reason::TargetSelectorMissing,
            error.to_string(),
        )
        .await;
    }
    let primary = ctx
        .deployments
        .get(&ObjectRef::new(&naming::primary(target_name)).within(&namespace));
    let analysis = canary.spec.analysis.clone().unwrap_or_default();
    let configs = Configs {
        config_maps: &ctx.config_maps,
        secrets: &ctx.secrets,
        namespace: &namespace,
    };
    let refs = target
        .spec
        .as_ref()
        .map(|s| referenced(&s.template))
        .unwrap_or_default();
    let checksums = configs.checksums(&refs);
    let target_revision = target
        .spec
        .as_ref()
        .map(|s| combined_revision(&objects::revision(&s.template), &checksums));
    let observations = Observations {
        target_revision,
        primary_revision: primary
            .as_ref()
            .and_then(|p| p.annotations().get(REVISION_ANNOTATION).cloned()),
        primary_ready: primary.as_ref().is_some_and(|p| {
            is_ready(
                p,
                analysis
                    .primary_ready_threshold
                    .unwrap_or(CanaryAnalysis::DEFAULT_READY_THRESHOLD),
            )
        }),
        canary_ready: is_ready(
            &target,
            analysis
                .canary_ready_threshold
                .unwrap_or(CanaryAnalysis::DEFAULT_READY_THRESHOLD),
        ),
        request: None,
        ..Observations::default()
    };
    let (request, unreadable_request) = operator_request(canary, &status);
    let observations = Observations {
        request,
        ..observations
    };
    let mtls = if analysis.require_mtls && !status.phase.is_active() {
        let verdict = super::security::mtls_preflight(canary, ctx, &target).await?;
        if !verdict.enforced {
            return block(canary, ctx, &api, status, verdict.reason, verdict.message).await;
        }
        Some(verdict)
    } else {
        None
    };
    resume_routes(canary, ctx, &status).await?;
    let revision = observations.target_revision.clone().unwrap_or_default();
    let (decision, metrics) = decide(canary, ctx, &status, observations, &checks).await;
    let workload = Workload {
        target: &target,
        primary: primary.as_deref(),
        revision: &revision,
        configs: &configs,
        refs: &refs,
    };
    // Policies first, so primary pods never run uncovered; a failed copy is reported, and the
    // next reconcile tries again.
    if let Err(error) = super::security::sync_copies(canary, ctx, &target).await {
        tracing::warn!(canary = %name, namespace = %namespace, %error, "cannot write -primary policy copies");
    }
    apply(canary, ctx, &workload, &decision, &status).await?;
    for metric in &metrics {
        if let Ok(value) = metric.value {
            ctx.metrics.analysis(&name, &namespace, &metric.name, value);
        }
    }
    let mut next = decision.status;
    if let Some((marker, message)) = unreadable_request {
        next.handled_request = Some(marker);
        ctx.events
            .publish(
                canary,
                AlertSeverity::Warn,
                Reason::RequestIgnored,
                &message,
            )
            .await;
    }
    next.clear_condition(ConditionType::Ready);
    if let Some(verdict) = mtls {
        next.set_condition(
            ConditionType::MTLS,
            ConditionStatus::True,
            (verdict.reason, &verdict.message),
            Timestamp::now(),
        );
    }
    if next.last_applied_spec.as_deref() == Some(revision.as_str()) {
        next.tracked_configs = checksums;
    }
    write_status(&api, canary, ctx, &status, &next).await?;
    ctx.metrics.observe(
        &name,
        &namespace,
        target_name,
        next.phase,
        next.canary_weight,
    );
    if next.phase != status.phase && next.phase == CanaryPhase::Succeeded {
        ctx.metrics.outcome(&name, &namespace, true);
    } else if next.phase != status.phase && next.phase == CanaryPhase::Failed {
        ctx.metrics.outcome(&name, &namespace, false);
    }
    Ok(Requeue::requeue(decision.requeue_after))
}

/// The operator request annotated on the canary; an unreadable one is answered once, by an
/// Event, and remembered by a marker in place of its id.
fn operator_request(
    canary: &Canary,
    status: &CanaryStatus,
) -> (
    Option<crate::api::OperatorRequest>,
    Option<(String, String)>,
) {
    let Some(text) = canary.annotations().get(REQUEST_ANNOTATION) else {
        return (None, None);
    };
    match crate::api::OperatorRequest::parse(text) {
        Ok(request) => (Some(request), None),
        Err(message) => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(text.as_bytes());
            let marker = format!(
                "unreadable-{}",
                digest
                    .iter()
                    .take(6)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            if status.handled_request.as_deref() == Some(marker.as_str()) {
                (None, None)
            } else {
                (None, Some((marker, message)))
            }
        }
    }
}

/// Another Canary, created earlier, that targets the same Deployment.
fn conflicting_owner(canary: &Canary, ctx: &Context) -> Option<String> {
    let key = |c: &Canary| (c.creation_timestamp().map(|t| t.0), c.name_any());
    ctx.canaries
        .state()
        .into_iter()
        .filter(|other| {
            other.namespace() == canary.namespace() && other.name_any() != canary.name_any()
        })
        .filter(|other| other.spec.target_ref.name == canary.spec.target_ref.name)
        .filter(|other| key(other) < key(canary))
        .map(|other| other.name_any())
        .next()
}

/// Reports why a canary cannot run, in a condition and (once) an Event; touches nothing else.
async fn block(
    canary: &Canary,
    ctx: &Context,
    api: &Api<Canary>,
    status: CanaryStatus,
    reason: Reason,
    message: String,
) -> Result<Requeue, ReconcileError> {
    let mut next = status.clone();
    let changed = next.set_condition(
        ConditionType::Ready,
        ConditionStatus::False,
        (reason, &message),
        Timestamp::now(),
    );
    if changed {
        ctx.events
            .publish(canary, AlertSeverity::Warn, reason, &message)
            .await;
        tracing::warn!(canary = %canary.name_any(), %reason, %message, "canary blocked");
    }
    write_status(api, canary, ctx, &status, &next).await?;
    Ok(Requeue::requeue(canary.spec.interval()))
}

async fn write_status(
    api: &Api<Canary>,
    canary: &Canary,
    ctx: &Context,
    before: &CanaryStatus,
    after: &CanaryStatus,
) -> Result<(), ReconcileError> {
    match super::status_write::write(api, canary, before, after, &ctx.written).await {
        Err(kube::Error::Api(status)) if status.code == 409 => Err(ReconcileError::Stale),
        other => Ok(other?),
    }
}

/// After a restart, the mesh's routing is the truth about traffic: if it disagrees with the
/// status (a crash between the two writes), the status's routes are written again.
async fn resume_routes(
    canary: &Canary,
    ctx: &Context,
    status: &CanaryStatus,
) -> Result<(), ReconcileError> {
    let key = format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    );
    if ctx.resumed.lock().contains(&key) {
        return Ok(());
    }
    if status.phase.is_active() {
        if let Some(current) = ctx.router_for(canary).current(canary).await? {
            if current.canary_weight != status.canary_weight {
                tracing::warn!(canary = %key, mesh = current.canary_weight, status = status.canary_weight, "routes differ from the status after a restart; rewriting them");
                let routes = Routes {
                    canary_weight: status.canary_weight,
                    primary_weight: 100 - status.canary_weight,
                    ..current
                };
                ctx.router_for(canary).apply(canary, routes).await?;
            }
        }
    }
    ctx.resumed.lock().insert(key);
    Ok(())
}

fn payload(canary: &Canary, status: &CanaryStatus, checksum: &str) -> HookPayload {
    HookPayload {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        phase: status.phase.as_str().to_string(),
        checksum: checksum.to_string(),
        metadata: BTreeMap::new(),
    }
}

/// The controller's answers to the engine: webhooks over HTTP, metrics from Prometheus.
struct Gather<'a> {
    canary: &'a Canary,
    ctx: &'a Context,
    payload: HookPayload,
    checks: &'a [(String, Resolution)],
}

/// MetricTemplates and Secrets as the watch-fed stores hold them.
struct StoreSource<'a>(&'a Context);

impl TemplateSource for StoreSource<'_> {
    fn template(&self, namespace: &str, name: &str) -> Option<crate::api::MetricTemplateSpec> {
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

fn metrics_address(canary: &Canary, ctx: &Context) -> String {
    canary
        .spec
        .metrics_server
        .clone()
        .unwrap_or_else(|| ctx.metrics_server.clone())
}

/// Every metric resolved to a built-in or a rendered query, or the problems by field path.
fn resolve_checks(
    canary: &Canary,
    ctx: &Context,
) -> Result<Vec<(String, Resolution)>, Vec<crate::metrics::templates::TemplateProblem>> {
    let vars = TemplateVars {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        target: canary.spec.target_ref.name.clone(),
        service: objects::service_name(canary),
        ingress: canary
            .spec
            .ingress_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        ..TemplateVars::default()
    };
    crate::metrics::templates::resolve(
        &canary.spec,
        &vars,
        &metrics_address(canary, ctx),
        &StoreSource(ctx),
    )
}

impl crate::driver::Gatherer for Gather<'_> {
    fn hooks(&self, kind: HookType) -> BoxFuture<'_, Vec<engine::HookOutcome>> {
        let hooks = crate::driver::webhooks(&self.canary.spec);
        let namespace = self.canary.namespace().unwrap_or_default();
        Box::pin(async move {
            let secrets = &self.ctx.secrets;
            let keys = |hook: &crate::api::CanaryWebhook| {
                super::alerts::webhook_key(secrets, &namespace, hook)
            };
            self.ctx.hooks.run(hooks, kind, &self.payload, &keys).await
        })
    }

    fn metrics(&self) -> BoxFuture<'_, Vec<MetricOutcome>> {
        Box::pin(async move {
            let canary = self.canary;
            let address = metrics_address(canary, self.ctx);
            // A query must answer well within the interval, or the step would be late.
            let timeout =
                (canary.spec.interval() / 2).clamp(Duration::from_secs(1), Duration::from_secs(10));
            let provider = MeshProvider {
                prometheus: PrometheusClient::with_http(
                    self.ctx.prometheus_http.clone(),
                    &address,
                    timeout,
                ),
                mesh: self.ctx.telemetry_for(canary),
                workload: WorkloadRef {
                    namespace: canary.namespace().unwrap_or_default(),
                    name: canary.spec.target_ref.name.clone(),
                },
            };
            let templated = WithTemplates {
                builtins: &provider,
                resolved: self.checks,
                pool: &self.ctx.template_pool,
                workload: canary.spec.target_ref.name.clone(),
                timeout,
            };
            let mut outcomes = crate::driver::measure_all(&canary.spec, &templated).await;
            let primary = WorkloadRef {
                name: naming::primary(&provider.workload.name),
                ..provider.workload.clone()
            };
            let comparer = crate::metrics::compare::Comparer {
                prometheus: &provider.prometheus,
                mesh: provider.mesh,
                sides: crate::metrics::compare::Sides {
                    canary: &provider.workload,
                    primary: &primary,
                },
                resolved: self.checks,
                pool: &self.ctx.template_pool,
                timeout,
                analysis_interval: canary.spec.interval(),
            };
            comparer.add_to(&canary.spec, &mut outcomes).await;
            outcomes
        })
    }
}

async fn decide(
    canary: &Canary,
    ctx: &Context,
    status: &CanaryStatus,
    observations: Observations,
    checks: &[(String, Resolution)],
) -> (Decision, Vec<MetricOutcome>) {
    let label = format!(
        "{}.{}",
        canary.name_any(),
        canary.namespace().unwrap_or_default()
    );
    let checksum = observations.target_revision.clone().unwrap_or_default();
    let gather = Gather {
        canary,
        ctx,
        payload: payload(canary, status, &checksum),
        checks,
    };
    crate::driver::decide(
        &label,
        &canary.spec,
        status,
        observations,
        Timestamp::now(),
        &gather,
    )
    .await
}

/// The target as this reconcile saw it.
struct Workload<'a> {
    target: &'a Deployment,
    primary: Option<&'a Deployment>,
    revision: &'a str,
    configs: &'a Configs<'a>,
    refs: &'a std::collections::BTreeSet<(ConfigKind, String)>,
}

/// Writes the primary: `-primary` copies of the configs first (so new pods find them), then the
/// autoscaler copy, then the Deployment with the target's template.
async fn write_primary(
    canary: &Canary,
    ctx: &Context,
    workload: &Workload<'_>,
    replicas: i32,
) -> Result<(), ReconcileError> {
    let namespace = canary.namespace().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let (maps, secrets) = workload.configs.primary_copies(canary, workload.refs);
    let map_api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(ctx.client.clone(), &namespace);
    for map in maps {
        map_api
            .patch(&map.name_any(), &params, &Patch::Apply(&map))
            .await?;
    }
    let secret_api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(ctx.client.clone(), &namespace);
    for secret in secrets {
        secret_api
            .patch(&secret.name_any(), &params, &Patch::Apply(&secret))
            .await?;
    }
    if let Some(reference) = &canary.spec.autoscaler_ref {
        // Read only when the primary is written (bootstrap and promotion), never per interval.
        let hpas: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> =
            Api::namespaced(ctx.client.clone(), &namespace);
        if let Some(source) = hpas.get_opt(&reference.name).await? {
            let copy = objects::primary_autoscaler(canary, &source)?;
            hpas.patch(&copy.name_any(), &params, &Patch::Apply(&copy))
                .await?;
        }
    }
    let desired =
        objects::primary_deployment(canary, workload.target, replicas, workload.revision)?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    deployments
        .patch(&desired.name_any(), &params, &Patch::Apply(&desired))
        .await?;
    Ok(())
}

async fn apply(
    canary: &Canary,
    ctx: &Context,
    workload: &Workload<'_>,
    decision: &Decision,
    status: &CanaryStatus,
) -> Result<(), ReconcileError> {
    let (target, primary) = (workload.target, workload.primary);
    let namespace = canary.namespace().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let apply_params = PatchParams::apply(FIELD_MANAGER).force();
    let target_replicas = target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let primary_replicas = primary
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(target_replicas.max(1));
    for action in &decision.actions {
        match action {
            Action::Bootstrap => {
                if primary.is_none() {
                    write_primary(canary, ctx, workload, target_replicas.max(1)).await?;
                }
                ctx.router_for(canary).ensure(canary).await?;
                let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
                for service in objects::services(canary, target)? {
                    services
                        .patch(&service.name_any(), &apply_params, &Patch::Apply(&service))
                        .await?;
                }
            }
            Action::SetRoutes(routes) => ctx.router_for(canary).apply(canary, *routes).await?,
            Action::ScaleTarget { up } => {
                let replicas = if *up { primary_replicas } else { 0 };
                if target.spec.as_ref().and_then(|s| s.replicas) != Some(replicas) {
                    deployments
                        .patch(
                            &target.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
                        )
                        .await?;
                }
            }
            Action::Promote => {
                write_primary(canary, ctx, workload, primary_replicas).await?;
                ctx.router_for(canary).ensure(canary).await?;
            }
            Action::RunHooks(kind) => {
                let hooks = crate::driver::webhooks(&canary.spec).to_vec();
                let body = payload(
                    canary,
                    &decision.status,
                    status.last_applied_spec.as_deref().unwrap_or_default(),
                );
                ctx.announcer.spawn_hooks(&namespace, hooks, *kind, body);
            }
            Action::Event(event) => {
                tracing::info!(canary = %canary.name_any(), namespace = %namespace, reason = %event.reason, "{}", event.message);
                ctx.events
                    .publish(canary, event.severity, event.reason, &event.message)
                    .await;
                let body = payload(
                    canary,
                    &decision.status,
                    decision
                        .status
                        .last_applied_spec
                        .as_deref()
                        .unwrap_or_default(),
                );
                ctx.announcer
                    .announce(canary, &decision.status, body, event);
            }
        }
    }
    Ok(())
}

/// Revert on deletion: bring the target back to the primary's size, point the apex Service at it
/// once it is ready, then let the Canary go (garbage collection removes the rest).
async fn finalize(
    canary: &Canary,
    ctx: &Context,
    api: &Api<Canary>,
) -> Result<Requeue, ReconcileError> {
    let name = canary.name_any();
    if !canary.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Requeue::await_change());
    }
    let namespace = canary.namespace().unwrap_or_default();
    let target_name = &canary.spec.target_ref.name;
    if let Some(target) = ctx
        .deployments
        .get(&ObjectRef::new(target_name).within(&namespace))
    {
        let primary = ctx
            .deployments
            .get(&ObjectRef::new(&naming::primary(target_name)).within(&namespace));
        let replicas = primary
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
        if target.spec.as_ref().and_then(|s| s.replicas) != Some(replicas) {
            deployments
                .patch(
                    target_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
                )
                .await?;
            return Ok(Requeue::requeue(Duration::from_secs(1)));
        }
        if !is_ready(&target, 100) {
            return Ok(Requeue::requeue(Duration::from_secs(1)));
        }
        // The apex Service now selects the target's pods and no longer belongs to the Canary,
        // so garbage collection leaves it serving.
        let (label, value) = objects::selector_label(&target)?;
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
        let apex = objects::service_name(canary);
        services
            .patch(
                &apex,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "ownerReferences": null }, "spec": { "selector": { label: value } } })),
            )
            .await?;
        ctx.events.publish(canary, AlertSeverity::Info, Reason::Reverted, &format!("{target_name} restored with {replicas} replicas; the apex Service {apex} routes to it")).await;
    }
    super::finalizer::release(api, canary)
        .await
        .map_err(conflict_is_stale)?;
    ctx.metrics.forget(&name, &namespace);
    ctx.written.forget(canary);
    Ok(Requeue::await_change())
}
