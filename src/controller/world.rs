//! What one reconcile knows about a canary: the watch-fed stores' view ([`super::observe`]),
//! plus the two reads they cannot answer, the mTLS preflight before a rollout starts and the
//! mesh's routes once after a restart.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use super::configs::{self, ConfigKind};

use super::observe::{self, World};
use super::reconcile::ReconcileError;
use super::workload::{self, Workload};
use super::Context;
use crate::api::{Canary, CanaryPhase, CanaryStatus};
use crate::engine::{mtls_preflight_due, Obstacle, BLOCKED_RECHECK};
use crate::naming::{self, REVISION_ANNOTATION};
use crate::plan::{MetricSource, Plan, TargetKind};

/// What keeps a canary from running, and how soon to look again.
pub type Blocked = (Obstacle, Duration);

/// The world of `canary`, or what keeps it from running.
pub async fn gather(
    canary: &Canary,
    ctx: &Context,
    status: &CanaryStatus,
) -> Result<Result<World, Blocked>, ReconcileError> {
    let stores = ctx.stores();
    let plan = match observe::read_plan(canary, &ctx.settings) {
        Ok(plan) => plan,
        Err(obstacle) => {
            let recheck = match &obstacle {
                Obstacle::IntervalBelowFloor { floor, .. } => *floor,
                _ => BLOCKED_RECHECK,
            };
            return Ok(Err((obstacle, recheck)));
        }
    };
    let interval = plan.interval;
    hold_referenced(canary, ctx, &plan).await;
    let observed = match plan.target.kind {
        TargetKind::KnativeService => {
            let service = knative_service(canary, ctx, &plan).await?;
            observe::observe_knative(canary, plan, service, stores, &ctx.settings)
        }
        _ => observe::observe(canary, plan, stores, &ctx.settings),
    };
    let mut world = match observed {
        Ok(world) => world,
        Err(obstacle) => return Ok(Err((obstacle, interval))),
    };
    // A stored transition is finished first: a preflight that now fails must not leave a
    // rollback's traffic on its canary.
    if mtls_preflight_due(world.plan.analysis.require_mtls, status) && !status.effects_pending {
        let verdict =
            super::security::mtls_preflight(canary, ctx, &world.plan, &world.target).await?;
        if !verdict.enforced {
            let (reason, message) = (verdict.reason, verdict.message);
            return Ok(Err((
                Obstacle::MtlsNotEnforced { reason, message },
                interval,
            )));
        }
        world.observations.mtls = Some((verdict.reason, verdict.message));
    }
    if status.phase == CanaryPhase::Promoting
        && world.plan.target.kind != TargetKind::KnativeService
    {
        refresh_waiting_primary(canary, ctx, status, &mut world).await;
    }
    // Marked as resumed by the reconcile once its decision is applied, so a failed read or
    // write looks again next time.
    let resuming =
        !ctx.kept.resumed.lock().contains(&resume_key(canary)) && status.phase.is_active();
    if resuming || status.effects_pending {
        // The engine rewrites the mesh's routes when they disagree with the status, and
        // finishes a transition stored ahead of its effects.
        let router = ctx.routers.get(world.plan.router);
        world.observations.mesh_routes = router.current(canary, &world.plan).await?;
    }
    Ok(Ok(world))
}

/// The Knative Service a canary rolls out, read now: Knative Services are not watched.
async fn knative_service(
    canary: &Canary,
    ctx: &Context,
    plan: &Plan,
) -> Result<Option<super::knative::KnativeService>, ReconcileError> {
    let namespace = canary.namespace().unwrap_or_default();
    Ok(super::knative::fetch(&ctx.client, &namespace, &plan.target.name).await?)
}

/// While a promotion waits on a primary the store does not yet show as updated and ready,
/// replaces the store's view of the primary with the API server's.
async fn refresh_waiting_primary(
    canary: &Canary,
    ctx: &Context,
    status: &CanaryStatus,
    world: &mut World,
) {
    let seen = &world.observations;
    let updated = seen.primary_revision == status.last_applied_spec;
    if updated && seen.primary_ready {
        return;
    }
    if let Some(primary) = primary_now(canary, ctx, &world.plan).await {
        let threshold = world.plan.analysis.primary_ready_threshold;
        world.observations.primary_ready = primary.is_ready(threshold);
        world.observations.primary_revision =
            primary.annotations().get(REVISION_ANNOTATION).cloned();
    }
}

/// The primary as the API server has it now, rather than the store's copy. A promotion
/// that waits on the primary ends in failure at its deadline, and a watch can lag the server
/// by longer than that: after an etcd restart the API server's own watch cache was seen to
/// hold events back for 90 s while reads were current. One GET per reconcile while a promotion
/// waits; a failed read (or none found) keeps the store's answer.
async fn primary_now(canary: &Canary, ctx: &Context, plan: &Plan) -> Option<Workload> {
    let namespace = canary.namespace().unwrap_or_default();
    let name = naming::primary(&plan.target.name);
    match workload::fetch(&ctx.client, &namespace, plan.target.kind, &name).await {
        Ok(primary) => primary,
        Err(error) => {
            tracing::debug!(%error, primary = %name, "primary read failed; keeping the store's answer");
            None
        }
    }
}

/// Reads the Secrets and ConfigMaps `plan` refers to into the controller's stores, the first
/// time they are named ([`super::referenced`]): the webhooks' signing Secrets, the
/// MetricTemplates' credentials and what the target's pods use.
async fn hold_referenced(canary: &Canary, ctx: &Context, plan: &Plan) {
    let namespace = canary.namespace().unwrap_or_default();
    fn within<K: kube::Resource<DynamicType = ()>>(name: &str, namespace: &str) -> ObjectRef<K> {
        ObjectRef::new(name).within(namespace)
    }
    let mut secrets: Vec<ObjectRef<Secret>> = plan
        .analysis
        .webhooks
        .iter()
        .filter_map(|hook| {
            hook.secret
                .as_ref()
                .map(|(name, _)| within(name, &namespace))
        })
        .collect();
    for metric in &plan.analysis.metrics {
        if let MetricSource::Template {
            name,
            namespace: at,
        } = &metric.source
        {
            let at = at.clone().unwrap_or_else(|| namespace.clone());
            let template = ctx.templates.get(&ObjectRef::new(name).within(&at));
            let secret = template.and_then(|t| t.spec.provider.secret_ref.clone());
            secrets.extend(secret.map(|s| ObjectRef::new(&s.name).within(&at)));
        }
    }
    let mut maps = Vec::new();
    let stores = ctx.stores();
    let target = stores.workload(plan.target.kind, &namespace, &plan.target.name);
    let template = target.and_then(|t| t.template());
    for (kind, name) in template
        .map(|t| configs::referenced(&t))
        .unwrap_or_default()
    {
        match kind {
            ConfigKind::ConfigMap => maps.push(within(&name, &namespace)),
            ConfigKind::Secret => secrets.push(within(&name, &namespace)),
        }
    }
    ctx.held_secrets.ensure(secrets).await;
    ctx.held_maps.ensure(maps).await;
}

/// Which canary the `resumed` set names.
pub fn resume_key(canary: &Canary) -> String {
    format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    )
}
