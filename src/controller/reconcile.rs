//! One reconcile of one Canary: observe (the watch-fed stores, plus the two reads the stores
//! cannot answer), decide (the engine), apply (the cluster adapter), then write the status when
//! it changed and come back when the engine asked to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};

use super::effects::Cluster;
use super::objects::ObjectError;
use super::observe::{self, Stores, World};
use super::{Context, ERROR_BACKOFF};
use crate::api::{Canary, CanaryPhase, CanaryStatus};
use crate::driver::Session;
use crate::engine::{self, Action, Decision, MetricOutcome, Obstacle};

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
pub fn conflict_is_stale(error: kube::Error) -> ReconcileError {
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

/// Right after start the stores may still be filling: deciding then would report targets as
/// missing that merely have not been listed yet.
async fn stores_ready(ctx: &Context) -> bool {
    let listed = async {
        let _ = ctx.deployments.wait_until_ready().await;
        let _ = ctx.config_maps.wait_until_ready().await;
        let _ = ctx.secrets.wait_until_ready().await;
        let _ = ctx.templates.wait_until_ready().await;
    };
    tokio::time::timeout(STORE_PATIENCE, listed).await.is_ok()
}

async fn reconcile_inner(canary: &Canary, ctx: &Context) -> Result<Requeue, ReconcileError> {
    if !stores_ready(ctx).await {
        return Ok(Requeue::requeue(ERROR_BACKOFF));
    }
    if ctx.written.is_stale(canary) {
        // The watch has not delivered this controller's own last write yet; deciding on the
        // older copy would repeat the last step. Its arrival triggers the next reconcile.
        return Ok(Requeue::requeue(STALE_RETRY));
    }
    let api: Api<Canary> =
        Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    if canary.meta().deletion_timestamp.is_some() {
        return super::revert::finalize(canary, ctx, &api).await;
    }
    if canary.spec.revert_on_deletion {
        super::finalizer::ensure(&api, canary)
            .await
            .map_err(conflict_is_stale)?;
    }
    let status = canary.status.clone().unwrap_or_default();
    let world = match world(canary, ctx, &status).await? {
        Ok(world) => world,
        Err(obstacle) => {
            let decision = engine::blocked(&status, &obstacle, Timestamp::now());
            return report_blocked(canary, ctx, &api, &status, decision).await;
        }
    };
    let session = Session {
        name: &canary.name_any(),
        namespace: &canary.namespace().unwrap_or_default(),
        plan: &world.plan,
        hooks: &ctx.hooks,
    };
    let adapter = Cluster {
        canary,
        ctx,
        world: &world,
    };
    let observations = world.observations.clone();
    let (decision, metrics) = session
        .decide(&status, observations, Timestamp::now(), &adapter)
        .await;
    // Policies first, so primary pods never run uncovered; a failed copy is reported, and the
    // next reconcile tries again.
    if let Err(error) = super::security::sync_copies(canary, ctx, &world.target).await {
        tracing::warn!(canary = %canary.name_any(), %error, "cannot write -primary policy copies");
    }
    session.apply(&decision, &adapter).await?;
    write_status(&api, canary, ctx, &status, &decision.status).await?;
    record(canary, ctx, &status, &decision, &metrics);
    Ok(Requeue::requeue(decision.requeue_after))
}

/// The stores' view of the canary, plus the reads they cannot answer: the mTLS preflight
/// before a rollout starts, and the mesh's routes once after a restart.
async fn world(
    canary: &Canary,
    ctx: &Context,
    status: &CanaryStatus,
) -> Result<Result<World, Obstacle>, ReconcileError> {
    let stores = Stores {
        deployments: &ctx.deployments,
        config_maps: &ctx.config_maps,
        secrets: &ctx.secrets,
        canaries: &ctx.canaries,
        templates: &ctx.templates,
        relations: &ctx.relations,
    };
    let plan = match observe::read_plan(canary, &ctx.settings) {
        Ok(plan) => plan,
        Err(obstacle) => return Ok(Err(obstacle)),
    };
    let mut world = match observe::observe(canary, plan, stores, &ctx.settings) {
        Ok(world) => world,
        Err(obstacle) => return Ok(Err(obstacle)),
    };
    if world.plan.analysis.require_mtls && !status.phase.is_active() {
        let verdict =
            super::security::mtls_preflight(canary, ctx, &world.plan, &world.target).await?;
        if !verdict.enforced {
            return Ok(Err(Obstacle::MtlsNotEnforced {
                reason: verdict.reason,
                message: verdict.message,
            }));
        }
        world.observations.mtls = Some((verdict.reason, verdict.message));
    }
    world.observations.mesh_routes = mesh_routes_after_restart(canary, ctx, &world, status).await?;
    Ok(Ok(world))
}

/// The mesh's routes, read once per canary after this process started (the engine rewrites
/// them when they disagree with the status).
async fn mesh_routes_after_restart(
    canary: &Canary,
    ctx: &Context,
    world: &World,
    status: &CanaryStatus,
) -> Result<Option<engine::Routes>, ReconcileError> {
    let key = format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    );
    if ctx.resumed.lock().contains(&key) {
        return Ok(None);
    }
    let routes = if status.phase.is_active() {
        let router = ctx.routers.get(world.plan.router);
        router.current(canary, &world.plan).await?
    } else {
        None
    };
    ctx.resumed.lock().insert(key);
    Ok(routes)
}

/// A canary that cannot run: its Events (the Kubernetes Event only) and its status.
async fn report_blocked(
    canary: &Canary,
    ctx: &Context,
    api: &Api<Canary>,
    status: &CanaryStatus,
    decision: Decision,
) -> Result<Requeue, ReconcileError> {
    for action in &decision.actions {
        if let Action::Event(event) = action {
            tracing::warn!(canary = %canary.name_any(), reason = %event.reason, message = %event.message, "canary blocked");
            ctx.events
                .publish(canary, event.severity, event.reason, &event.message)
                .await;
        }
    }
    write_status(api, canary, ctx, status, &decision.status).await?;
    Ok(Requeue::requeue(decision.requeue_after))
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

/// The controller's own metrics of this step.
fn record(
    canary: &Canary,
    ctx: &Context,
    before: &CanaryStatus,
    decision: &Decision,
    metrics: &[MetricOutcome],
) {
    let (name, namespace) = (canary.name_any(), canary.namespace().unwrap_or_default());
    for metric in metrics {
        if let Ok(value) = metric.value {
            ctx.metrics.analysis(&name, &namespace, &metric.name, value);
        }
    }
    let next = &decision.status;
    let target = &canary.spec.target_ref.name;
    ctx.metrics
        .observe(&name, &namespace, target, next.phase, next.canary_weight);
    if next.phase != before.phase {
        match next.phase {
            CanaryPhase::Succeeded => ctx.metrics.outcome(&name, &namespace, true),
            CanaryPhase::Failed => ctx.metrics.outcome(&name, &namespace, false),
            _ => {}
        }
    }
}
