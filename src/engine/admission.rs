//! What every decision carries besides the rollout step: whether the canary may run at all,
//! the Ready and MTLS conditions, the routes after a restart, the configs tracked, and
//! operator requests that cannot be read. All of it pure, like the rest of the engine.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{
    AlertSeverity, CanaryPhase, CanaryStatus, ConditionStatus, ConditionType, Reason,
};

use super::{Action, Decision, Event, Observations, Routes};

/// How soon a canary whose spec does not read is looked at again (a change of it triggers a
/// reconcile sooner); one that reads is looked at again after its own interval.
pub const BLOCKED_RECHECK: Duration = Duration::from_secs(60);

/// Why a canary cannot run, as the adapters observed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Obstacle {
    /// The spec does not read: every error with its field path.
    InvalidSpec(String),
    /// The interval is below the controller's `--min-interval`.
    IntervalBelowFloor { interval: Duration, floor: Duration },
    /// A metric's template or query cannot be resolved.
    InvalidMetric(String),
    /// An older Canary already manages the same target.
    TargetClaimed { target: String, owner: String },
    /// `Kind namespace/name` of the missing target.
    TargetNotFound(String),
    /// The target has no selector label to split Services by.
    TargetSelectorMissing(String),
    /// `requireMTLS` is set and the mesh does not enforce it.
    MtlsNotEnforced { reason: Reason, message: String },
}

impl Obstacle {
    pub fn reason(&self) -> Reason {
        match self {
            Obstacle::InvalidSpec(_) | Obstacle::IntervalBelowFloor { .. } => Reason::InvalidSpec,
            Obstacle::InvalidMetric(_) => Reason::InvalidMetric,
            Obstacle::TargetClaimed { .. } => Reason::TargetClaimed,
            Obstacle::TargetNotFound(_) => Reason::TargetNotFound,
            Obstacle::TargetSelectorMissing(_) => Reason::TargetSelectorMissing,
            Obstacle::MtlsNotEnforced { reason, .. } => *reason,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Obstacle::InvalidSpec(text)
            | Obstacle::InvalidMetric(text)
            | Obstacle::TargetSelectorMissing(text) => text.clone(),
            Obstacle::IntervalBelowFloor { interval, floor } => {
                format!("spec.analysis.interval {interval:?} is below the minimum of {floor:?}")
            }
            Obstacle::TargetClaimed { target, owner } => {
                format!("target {target} is already managed by Canary {owner}; this one is not run")
            }
            Obstacle::TargetNotFound(target) => format!("target {target} not found"),
            Obstacle::MtlsNotEnforced { message, .. } => message.clone(),
        }
    }
}

/// The decision for a canary that cannot run: the Ready condition says why, an Event says it
/// once (when the reason or message changes), and nothing else is touched.
pub fn blocked(
    status: &CanaryStatus,
    (obstacle, recheck): (&Obstacle, Duration),
    now: Timestamp,
) -> Decision {
    let mut next = status.clone();
    let (reason, message) = (obstacle.reason(), obstacle.message());
    let changed = next.set_condition(
        ConditionType::Ready,
        ConditionStatus::False,
        (reason, &message),
        now,
    );
    // A target may be applied just after its Canary; every other obstacle needs a fix.
    let stalled = !matches!(obstacle, Obstacle::TargetNotFound(_));
    next.set_blocked_standing((reason.as_str(), &message), stalled, now);
    let actions = if changed {
        vec![Action::Event(Event {
            severity: AlertSeverity::Warn,
            reason,
            message,
        })]
    } else {
        Vec::new()
    };
    Decision {
        status: next,
        actions,
        requeue_after: recheck,
    }
}

/// Whether the `requireMTLS` preflight must pass now: only before a rollout starts, so a
/// policy change mid-rollout never strands traffic half-way.
pub fn mtls_preflight_due(require_mtls: bool, status: &CanaryStatus) -> bool {
    require_mtls && !status.phase.is_active()
}

/// The status of a rollout whose primary already runs `revision` (a standalone run, whose two
/// upstreams exist before it starts): Initialized, with nothing to bootstrap.
pub fn already_running(revision: &str, now: Timestamp) -> CanaryStatus {
    let mut status = CanaryStatus {
        last_applied_spec: Some(revision.to_string()),
        last_promoted_spec: Some(revision.to_string()),
        ..CanaryStatus::default()
    };
    status.set_phase(crate::api::CanaryPhase::Initialized, "Standalone run", now);
    status
}

/// The routes to write again after a restart, when the mesh disagrees with the status (a crash
/// between the route write and the status write, or after a transition was stored and before
/// its routes were written). Under analysis: the status's weights, the mesh's other settings
/// (its A/B match, its mirror). Otherwise nothing but the primary.
pub fn resumed_routes(status: &CanaryStatus, mesh: Option<Routes>) -> Option<Routes> {
    let mesh = mesh.filter(|_| status.phase.is_active() || status.effects_pending)?;
    let analysed = matches!(
        status.phase,
        CanaryPhase::Progressing | CanaryPhase::WaitingPromotion | CanaryPhase::Promoting
    );
    if !analysed {
        return (mesh != Routes::primary_only()).then_some(Routes::primary_only());
    }
    (mesh.canary_weight != status.canary_weight).then_some(Routes {
        canary_weight: status.canary_weight,
        primary_weight: 100 - status.canary_weight,
        ..mesh
    })
}

/// What a stored transition still needs beside its routes, made again from the status: a
/// rollback's target at zero. (A promotion's primary is written again by the promotion step,
/// a switch to the primary scales the target down in its next step.)
fn unfinished_effects(status: &CanaryStatus) -> Vec<Action> {
    match status.phase {
        CanaryPhase::Failed if status.effects_pending => vec![Action::ScaleTarget { up: false }],
        _ => Vec::new(),
    }
}

/// An operator request annotation that does not read, identified by a digest of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub marker: String,
    pub message: String,
}

/// The bookkeeping of a canary that runs, after the rollout step decided.
pub(super) fn settle(
    decision: &mut Decision,
    before: &CanaryStatus,
    observations: &Observations,
    now: Timestamp,
) {
    let status = &mut decision.status;
    if let Some((reason, message)) = &observations.mtls {
        status.set_condition(
            ConditionType::MTLS,
            ConditionStatus::True,
            (*reason, message),
            now,
        );
    }
    if status.last_applied_spec.is_some()
        && status.last_applied_spec == observations.target_revision
    {
        status.tracked_configs = observations.configs.clone();
    }
    if let Some(Err(unreadable)) = &observations.request {
        if status.handled_request.as_deref() != Some(unreadable.marker.as_str()) {
            status.handled_request = Some(unreadable.marker.clone());
            decision.actions.push(Action::Event(Event {
                severity: AlertSeverity::Warn,
                reason: Reason::RequestIgnored,
                message: unreadable.message.clone(),
            }));
        }
    }
    // The decision is stored with its effects made; a `StoreStatus` marks the stored copy.
    decision.status.effects_pending = false;
    decision.status.set_standing(now);
    let mut repairs = Vec::new();
    if let Some(routes) = resumed_routes(before, observations.mesh_routes) {
        let mesh = observations.mesh_routes.unwrap_or_default().canary_weight;
        repairs.push(Action::SetRoutes(routes));
        repairs.push(Action::Event(Event {
            severity: AlertSeverity::Warn,
            reason: Reason::RoutesResumed,
            message: format!(
                "the mesh routed {mesh}% to the canary after a restart; the status's {}% is written again",
                routes.canary_weight
            ),
        }));
    }
    // A decision that scales the target itself (a new rollout) has the last word on it.
    let scales = |action: &Action| matches!(action, Action::ScaleTarget { .. });
    if !decision.actions.iter().any(scales) {
        repairs.extend(unfinished_effects(before));
    }
    // Before the decision's own actions: they follow from the stored status being true.
    decision.actions.splice(0..0, repairs);
}
