//! `revertOnDeletion`: before a deleted Canary goes, the target is brought back to the primary's
//! size and, once ready, the apex Service is pointed at it; then the finalizer is released (and
//! garbage collection removes the rest). [`next_step`] decides; [`finalize`] only carries it out.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::ResourceExt;
use serde_json::json;

use super::objects;
use super::reconcile::{conflict_is_stale, ReconcileError};
use super::workload::{self, Workload};
use super::Context;
use crate::api::{AlertSeverity, Canary, Reason};
use crate::naming::{self, FINALIZER};

/// How often a revert in progress looks again.
const REVERT_POLL: Duration = Duration::from_secs(1);

/// What the target looks like while it is being restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restoring {
    /// `None` when the target is gone.
    pub target_replicas: Option<Option<i32>>,
    /// The primary's size (1 when it is gone or unset).
    pub primary_replicas: i32,
    pub target_ready: bool,
}

/// The next step of a revert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Scale the target to this many replicas, then look again.
    Scale(i32),
    /// The target is scaling up: look again.
    Wait,
    /// Point the apex Service at the target, then let the Canary go.
    RouteToTarget { replicas: i32 },
    /// Nothing to restore (the target is gone): let the Canary go.
    Release,
}

/// Pure: the revert's next step from what the stores show.
pub fn next_step(state: Restoring) -> Step {
    let Some(replicas) = state.target_replicas else {
        return Step::Release;
    };
    if replicas != Some(state.primary_replicas) {
        return Step::Scale(state.primary_replicas);
    }
    if !state.target_ready {
        return Step::Wait;
    }
    Step::RouteToTarget {
        replicas: state.primary_replicas,
    }
}

fn restoring(target: Option<&Workload>, primary: Option<&Workload>) -> Restoring {
    let primary_replicas = primary.and_then(Workload::replicas).unwrap_or(1);
    // A DaemonSet runs on every node it may once it is not scaled down: as the primary does.
    let replicas = |t: &Workload| match t {
        Workload::Deployment(_) | Workload::Knative(_) => t.replicas(),
        Workload::DaemonSet(_) => Some(if t.is_scaled_down() {
            0
        } else {
            primary_replicas
        }),
    };
    Restoring {
        target_replicas: target.map(replicas),
        primary_replicas,
        target_ready: target.is_some_and(|t| t.is_ready(100)),
    }
}

/// Carries out one step of the revert of a deleted canary.
pub async fn finalize(
    canary: &Canary,
    ctx: &Context,
    api: &Api<Canary>,
) -> Result<Requeue, ReconcileError> {
    if !canary.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Requeue::await_change());
    }
    if canary.spec.revert_on_deletion {
        if let Some(again) = revert(canary, ctx).await? {
            return Ok(again);
        }
    }
    if let Some(router) = super::reconcile::router_of(canary, ctx) {
        ctx.routers
            .on_delete(router, canary)
            .await
            .map_err(ReconcileError::Router)?;
    }
    super::finalizer::release(api, canary)
        .await
        .map_err(conflict_is_stale)?;
    ctx.kept.forget(&super::per_canary::Identity::of(canary));
    Ok(Requeue::await_change())
}

/// One step of restoring the target; `Some` when it must be looked at again before the
/// Canary may go.
async fn revert(canary: &Canary, ctx: &Context) -> Result<Option<Requeue>, ReconcileError> {
    let namespace = canary.namespace().unwrap_or_default();
    let target_name = &canary.spec.target_ref.name;
    let kind = crate::plan::target_kind(&canary.spec);
    let lookup = |name: &str| kind.and_then(|k| ctx.stores().workload(k, &namespace, name));
    // Only a canary that made the primary scaled the target down. One that never ran (its
    // target claimed by another canary, its spec refused) has nothing to restore, and must not
    // touch a target another canary manages.
    let uid = canary.uid().unwrap_or_default();
    let primary = lookup(&naming::primary(target_name)).filter(|p| p.is_controlled_by(&uid));
    let target = primary.as_ref().and_then(|_| lookup(target_name));
    match next_step(restoring(target.as_ref(), primary.as_ref())) {
        Step::Scale(replicas) => {
            resume_target_scaler(canary, ctx).await?;
            let target = target.as_ref().expect("a step that scales has a target");
            workload::scale(&ctx.client, &namespace, target, replicas).await?;
            return Ok(Some(Requeue::requeue(REVERT_POLL)));
        }
        Step::Wait => return Ok(Some(Requeue::requeue(REVERT_POLL))),
        Step::RouteToTarget { replicas } => {
            let target = target.as_ref().expect("a step that routes has a target");
            route_to_target(canary, ctx, target, replicas).await?;
        }
        Step::Release => {}
    }
    Ok(None)
}

/// The restored target scales by its own KEDA ScaledObject again; one already gone is no
/// reason to keep the Canary from going.
async fn resume_target_scaler(canary: &Canary, ctx: &Context) -> Result<(), ReconcileError> {
    let Some(reference) = canary.spec.autoscaler_ref.as_ref() else {
        return Ok(());
    };
    if crate::plan::autoscaler_kind(reference) != Some(crate::plan::AutoscalerKind::ScaledObject) {
        return Ok(());
    }
    match super::scaled_object::set_paused(&ctx.client, canary, reference, false).await {
        Ok(()) | Err(super::scaled_object::AutoscalerError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The apex Service now selects the target's pods and no longer belongs to the Canary, so
/// garbage collection leaves it serving.
async fn route_to_target(
    canary: &Canary,
    ctx: &Context,
    target: &Workload,
    replicas: i32,
) -> Result<(), ReconcileError> {
    let namespace = canary.namespace().unwrap_or_default();
    let (label, value) = objects::selector_label(target)?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let apex = objects::service_name(canary);
    let patch = Patch::Merge(json!({
        "metadata": { "ownerReferences": null },
        "spec": { "selector": { label: value } }
    }));
    services
        .patch(&apex, &PatchParams::default(), &patch)
        .await?;
    let restored = match target {
        Workload::Deployment(_) => format!("with {replicas} replicas"),
        Workload::DaemonSet(_) => "on every node it may run on".to_string(),
        Workload::Knative(_) => "as its latest Revision".to_string(),
    };
    let message = format!(
        "{} restored {restored}; the apex Service {apex} routes to it",
        target.name()
    );
    ctx.events
        .publish(canary, AlertSeverity::Info, Reason::Reverted, &message)
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revert_scales_then_waits_then_routes_then_releases() {
        let state = |target_replicas, target_ready| Restoring {
            target_replicas,
            primary_replicas: 3,
            target_ready,
        };
        assert_eq!(next_step(state(Some(Some(0)), false)), Step::Scale(3));
        assert_eq!(next_step(state(Some(None), false)), Step::Scale(3));
        assert_eq!(next_step(state(Some(Some(3)), false)), Step::Wait);
        assert_eq!(
            next_step(state(Some(Some(3)), true)),
            Step::RouteToTarget { replicas: 3 }
        );
        assert_eq!(next_step(state(None, false)), Step::Release);
    }
}
