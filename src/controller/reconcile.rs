//! One reconcile of one Canary: observe ([`super::world`]), decide (the engine) and apply (the
//! cluster adapter) through one [`Session`], then write the status when it changed and come
//! back when the engine asked to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};

use super::effects::{Cluster, Pending};
use super::objects::ObjectError;
use super::{Context, ERROR_BACKOFF};
use crate::api::{AlertSeverity, Canary, Reason};
use crate::driver::Session;
use crate::engine;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Router(#[from] super::router::RouterError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error(transparent)]
    Autoscaler(#[from] super::scaled_object::AutoscalerError),
    #[error("the canary changed while it was reconciled; reading it again")]
    Stale,
    #[error("the reconcile panicked: {0}")]
    Panicked(String),
}

impl ReconcileError {
    /// What the canary's author should read of this error, when it is theirs to fix (or a
    /// panic, which is reported on the canary it happened on).
    pub fn for_the_author(&self) -> Option<String> {
        match self {
            ReconcileError::Panicked(reason) => Some(format!(
                "the controller failed on this canary and will try again: {reason}"
            )),
            ReconcileError::Autoscaler(_) => Some(self.to_string()),
            _ => None,
        }
    }

    /// The label of this error in `aviary_reconcile_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Kube(_) => "kubernetes",
            ReconcileError::Router(_) => "router",
            ReconcileError::Objects(_) => "objects",
            ReconcileError::Autoscaler(_) => "autoscaler",
            ReconcileError::Stale => "stale",
            ReconcileError::Panicked(_) => "panicked",
        }
    }
}

/// How soon to look again at a canary whose copy was stale.
const STALE_RETRY: Duration = Duration::from_millis(300);

/// When to look again at a canary whose step waits on webhooks or queries still running.
const HOOKS_RECHECK: Duration = Duration::from_secs(5);

/// How long a reconcile waits for the watch-fed stores to be listed after start.
const STORE_PATIENCE: Duration = Duration::from_secs(30);

pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<Requeue, ReconcileError> {
    let started = Instant::now();
    if !ctx.leadership.is_leading() {
        // A standby keeps its caches and waits; becoming the leader wakes every canary.
        return Ok(Requeue::await_change());
    }
    let _slot = ctx.metrics.queue().enter().await;
    // The wait for a place can be long: decide on the store's copy as it is now, and only
    // while still leading.
    let me = kube::runtime::reflector::ObjectRef::from_obj(&*canary);
    let Some(canary) = ctx.canaries.get(&me) else {
        return Ok(Requeue::await_change());
    };
    if !ctx.leadership.is_leading() {
        return Ok(Requeue::await_change());
    }
    let result = contained(reconcile_inner(&canary, &ctx)).await;
    match &result {
        Ok(_) => ctx.kept.failures.succeeded(&failure_key(&canary)),
        Err(error) => ctx.metrics.reconcile_error(error.kind()),
    }
    if let Some(message) = result
        .as_ref()
        .err()
        .and_then(ReconcileError::for_the_author)
    {
        // Reported on that canary alone: one canary's fault must not stop the others, and its
        // author (who cannot read the controller's log) learns what to fix.
        ctx.events
            .publish(
                &canary,
                AlertSeverity::Error,
                Reason::ReconcileFailed,
                &message,
            )
            .await;
    }
    ctx.metrics
        .step_duration(&canary, started.elapsed().as_secs_f64());
    ctx.kept.reconciled(&canary, &ctx.canaries);
    result
}

/// Runs `work`; a panic inside it becomes [`ReconcileError::Panicked`] instead of unwinding
/// out of the controller's loop, which would stop every canary.
pub async fn contained<T>(
    work: impl std::future::Future<Output = Result<T, ReconcileError>>,
) -> Result<T, ReconcileError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            tracing::error!(%reason, "reconcile panicked; the canary is retried after the backoff");
            Err(ReconcileError::Panicked(reason))
        }
    }
}

/// A write refused because the object changed since it was read (a conflict, or a JSON patch
/// whose `test` failed) is retried soon on a fresher copy, not after the error backoff.
pub fn conflict_is_stale(error: kube::Error) -> ReconcileError {
    match error {
        kube::Error::Api(status) if matches!(status.code, 409 | 422) => ReconcileError::Stale,
        other => ReconcileError::Kube(other),
    }
}

/// A status write refused for a conflict was made on a stale copy.
pub(super) fn status_conflict_is_stale(error: kube::Error) -> ReconcileError {
    match error {
        kube::Error::Api(status) if status.code == 409 => ReconcileError::Stale,
        other => ReconcileError::Kube(other),
    }
}

pub fn error_policy(canary: Arc<Canary>, error: &ReconcileError, ctx: Arc<Context>) -> Requeue {
    if matches!(error, ReconcileError::Stale) {
        tracing::debug!(canary = %canary.name_any(), "stale copy; retrying");
        return Requeue::requeue(STALE_RETRY);
    }
    let wait = ctx.kept.failures.failed(&failure_key(&canary));
    // Counted after the reconcile's own check: a canary deleted meanwhile is forgotten again.
    ctx.kept.reconciled(&canary, &ctx.canaries);
    tracing::warn!(canary = %canary.name_any(), namespace = ?canary.namespace(), %error, retry_in = ?wait, "reconcile failed");
    Requeue::requeue(wait)
}

/// The same `namespace/name` key the resumed set uses, so a deleted canary is forgotten by one.
fn failure_key(canary: &Canary) -> String {
    super::world::resume_key(canary)
}

/// Every watch-fed store has been listed once: what `/readyz` waits for. Each store is asked
/// again every 100 ms rather than awaited once: a waiter registered on the canary store
/// before its first list was seen never to wake.
pub async fn caches_synced(ctx: &Context) {
    let again = Duration::from_millis(100);
    loop {
        let listed = async {
            let _ = ctx.deployments.wait_until_ready().await;
            let _ = ctx.daemon_sets.wait_until_ready().await;
            let _ = ctx.config_maps.wait_until_ready().await;
            let _ = ctx.secrets.wait_until_ready().await;
            let _ = ctx.templates.wait_until_ready().await;
            let _ = ctx.canaries.wait_until_ready().await;
        };
        if tokio::time::timeout(again, listed).await.is_ok() {
            return;
        }
    }
}

/// Right after start the stores may still be filling: deciding then would report targets as
/// missing that merely have not been listed yet.
async fn stores_ready(ctx: &Context) -> bool {
    let listed = async {
        let _ = ctx.deployments.wait_until_ready().await;
        let _ = ctx.daemon_sets.wait_until_ready().await;
        let _ = ctx.config_maps.wait_until_ready().await;
        let _ = ctx.secrets.wait_until_ready().await;
        let _ = ctx.templates.wait_until_ready().await;
    };
    tokio::time::timeout(STORE_PATIENCE, listed).await.is_ok()
}

/// The router a canary names, or the controller's default; `None` when it names none known.
pub fn router_of(canary: &Canary, ctx: &Context) -> Option<crate::api::RouterKind> {
    match &canary.spec.provider {
        Some(name) => crate::api::RouterKind::parse(name).ok(),
        None => Some(ctx.settings.default_router),
    }
}

/// A canary keeps Aviary's finalizer to be reverted on deletion, or when its routing object is
/// cluster-scoped and only the controller can remove it.
fn needs_finalizer(canary: &Canary, ctx: &Context) -> bool {
    canary.spec.revert_on_deletion || router_of(canary, ctx) == Some(crate::api::RouterKind::Kuma)
}

async fn reconcile_inner(canary: &Canary, ctx: &Context) -> Result<Requeue, ReconcileError> {
    if !stores_ready(ctx).await {
        return Ok(Requeue::requeue(ERROR_BACKOFF));
    }
    let fresher = ctx.kept.written.fresher(canary);
    let canary = fresher.as_ref().unwrap_or(canary);
    if ctx.kept.written.is_stale(canary) {
        // The watch has not delivered this controller's own last write yet; deciding on the
        // older copy would repeat the last step. Its arrival triggers the next reconcile.
        return Ok(Requeue::requeue(STALE_RETRY));
    }
    let api: Api<Canary> =
        Api::namespaced(ctx.client.clone(), &canary.namespace().unwrap_or_default());
    if canary.meta().deletion_timestamp.is_some() {
        return super::revert::finalize(canary, ctx, &api).await;
    }
    if needs_finalizer(canary, ctx) {
        super::finalizer::ensure(&api, canary)
            .await
            .map_err(conflict_is_stale)?;
    }
    let status = canary.status.clone().unwrap_or_default();
    let Decided {
        decision,
        metrics,
        strategy,
        pending,
        stored,
    } = match super::world::gather(canary, ctx, &status).await? {
        Ok(world) => match decide(canary, ctx, &status, &world).await? {
            Some(decided) => decided,
            // Its webhooks or queries are still running; their end reconciles it again
            // (and, should that wake-up be lost, this requeue does).
            None => return Ok(Requeue::requeue(HOOKS_RECHECK)),
        },
        Err((obstacle, recheck)) => {
            let decision = engine::blocked(&status, (&obstacle, recheck), Timestamp::now());
            let pending = blocked_events(canary, &decision.actions);
            Decided {
                decision,
                metrics: Vec::new(),
                strategy: None,
                pending,
                stored: None,
            }
        }
    };
    // Over the intent when one was stored in this reconcile, else over the status as read.
    let written_over = stored.as_ref().unwrap_or(canary);
    let before = written_over.status.clone().unwrap_or_default();
    super::status_write::write(
        &api,
        written_over,
        &before,
        &decision.status,
        &ctx.kept.written,
    )
    .await
    .map_err(status_conflict_is_stale)?;
    super::effects::publish_pending(canary, ctx, pending).await;
    let recorded = (canary, strategy);
    ctx.metrics
        .record(recorded, &status, &decision.status, &metrics);
    Ok(Requeue::requeue(decision.requeue_after))
}

/// What one reconcile decided, and what it leaves to do once the status is stored.
struct Decided {
    decision: engine::Decision,
    metrics: Vec<engine::MetricOutcome>,
    strategy: Option<crate::plan::Strategy>,
    /// Events to publish after the status write.
    pending: Vec<Pending>,
    /// The canary as a transition's intent was stored in this reconcile.
    stored: Option<Canary>,
}

/// The engine's decision for a canary that can run, with its effects carried out; `None` while
/// its webhooks or queries are still running.
async fn decide(
    canary: &Canary,
    ctx: &Context,
    status: &crate::api::CanaryStatus,
    world: &super::observe::World,
) -> Result<Option<Decided>, ReconcileError> {
    let session = Session {
        name: &canary.name_any(),
        namespace: &canary.namespace().unwrap_or_default(),
        plan: &world.plan,
        hooks: &ctx.hooks,
    };
    let adapter = Cluster {
        canary,
        ctx,
        world,
        pending: Default::default(),
        stored: Default::default(),
    };
    let observations = world.observations.clone();
    let stepped = session
        .run(status, observations, Timestamp::now(), &adapter)
        .await?;
    let Some((decision, metrics, _)) = stepped else {
        return Ok(None);
    };
    let me = kube::runtime::reflector::ObjectRef::from_obj(canary);
    ctx.kept.deferred_hooks.settle(&me, status);
    ctx.kept.deferred_metrics.settle(&me, status);
    ctx.kept
        .resumed
        .lock()
        .insert(super::world::resume_key(canary));
    Ok(Some(Decided {
        decision,
        metrics,
        strategy: Some(world.plan.strategy),
        pending: adapter.pending.into_inner(),
        stored: adapter.stored.into_inner(),
    }))
}

/// The Events of a blocked canary's decision (it has no others), logged now and published
/// after its status is stored.
fn blocked_events(canary: &Canary, actions: &[crate::engine::Action]) -> Vec<Pending> {
    let events = actions.iter().filter_map(|action| match action {
        crate::engine::Action::Event(event) => Some(event.clone()),
        _ => None,
    });
    events
        .map(|event| {
            tracing::warn!(canary = %canary.name_any(), reason = %event.reason, message = %event.message, "canary blocked");
            Pending { event, alert: None }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_one_reconcile_is_an_error_not_an_unwind() {
        let panicking = async {
            let values: Vec<u32> = Vec::new();
            // An out-of-bounds index, as a bug would do it.
            let index = values.len() + 3;
            Ok::<u32, ReconcileError>(values[index])
        };
        let error = contained(panicking).await.unwrap_err();
        assert!(
            matches!(&error, ReconcileError::Panicked(reason) if reason.contains("index out of bounds")),
            "{error}"
        );
        assert_eq!(
            contained(async { Ok::<_, ReconcileError>(7) })
                .await
                .unwrap(),
            7
        );
    }
}
