//! What one reconcile knows about a canary: the watch-fed stores' view ([`super::observe`]),
//! plus the two reads they cannot answer, the mTLS preflight before a rollout starts and the
//! mesh's routes once after a restart.

use std::time::Duration;

use kube::ResourceExt;

use super::observe::{self, Stores, World};
use super::reconcile::ReconcileError;
use super::Context;
use crate::api::{Canary, CanaryStatus};
use crate::engine::{mtls_preflight_due, Obstacle, BLOCKED_RECHECK};

/// What keeps a canary from running, and how soon to look again.
pub type Blocked = (Obstacle, Duration);

/// The world of `canary`, or what keeps it from running.
pub async fn gather(
    canary: &Canary,
    ctx: &Context,
    status: &CanaryStatus,
) -> Result<Result<World, Blocked>, ReconcileError> {
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
        Err(obstacle) => {
            let recheck = match &obstacle {
                Obstacle::IntervalBelowFloor { floor, .. } => *floor,
                _ => BLOCKED_RECHECK,
            };
            return Ok(Err((obstacle, recheck)));
        }
    };
    let interval = plan.interval;
    let mut world = match observe::observe(canary, plan, stores, &ctx.settings) {
        Ok(world) => world,
        Err(obstacle) => return Ok(Err((obstacle, interval))),
    };
    if mtls_preflight_due(world.plan.analysis.require_mtls, status) {
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
    // Marked as resumed by the reconcile once its decision is applied, so a failed read or
    // write looks again next time.
    if !ctx.resumed.lock().contains(&resume_key(canary)) && status.phase.is_active() {
        // The engine rewrites the mesh's routes when they disagree with the status.
        let router = ctx.routers.get(world.plan.router);
        world.observations.mesh_routes = router.current(canary, &world.plan).await?;
    }
    Ok(Ok(world))
}

/// Which canary the `resumed` set names.
pub fn resume_key(canary: &Canary) -> String {
    format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    )
}
