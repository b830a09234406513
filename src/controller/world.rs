//! What one reconcile knows about a canary: the watch-fed stores' view ([`super::observe`]),
//! plus the two reads they cannot answer, the mTLS preflight before a rollout starts and the
//! mesh's routes once after a restart.

use kube::ResourceExt;

use super::observe::{self, Stores, World};
use super::reconcile::ReconcileError;
use super::Context;
use crate::api::{Canary, CanaryStatus};
use crate::engine::Obstacle;

/// The world of `canary`, or what keeps it from running.
pub async fn gather(
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
    let seen = observe::read_plan(canary, &ctx.settings)
        .and_then(|plan| observe::observe(canary, plan, stores, &ctx.settings));
    let mut world = match seen {
        Ok(world) => world,
        Err(obstacle) => return Ok(Err(obstacle)),
    };
    if world.plan.analysis.require_mtls && !status.phase.is_active() {
        let verdict =
            super::security::mtls_preflight(canary, ctx, &world.plan, &world.target).await?;
        if !verdict.enforced {
            let (reason, message) = (verdict.reason, verdict.message);
            return Ok(Err(Obstacle::MtlsNotEnforced { reason, message }));
        }
        world.observations.mtls = Some((verdict.reason, verdict.message));
    }
    let key = format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    );
    let first_look = ctx.resumed.lock().insert(key);
    if first_look && status.phase.is_active() {
        // The engine rewrites the mesh's routes when they disagree with the status.
        let router = ctx.routers.get(world.plan.router);
        world.observations.mesh_routes = router.current(canary, &world.plan).await?;
    }
    Ok(Ok(world))
}
