//! The rollout engine: a pure function of (plan, status, observations, now) to (new status, actions).
//!
//! It performs no I/O and never reads the clock. Webhooks and metric queries are I/O, so the engine
//! asks for them lazily: when a decision needs a result it has not been given, [`decide`] answers
//! [`Step::Need`] and the caller gathers that result and calls again with the same `now`. This keeps
//! the "which hook runs when" knowledge in one place instead of splitting it between a planner and
//! a decider.

mod admission;
mod analysis;
mod flow;
mod strategy;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::api::{AlertSeverity, CanaryStatus, HookType};
use crate::plan::Plan;

pub use admission::{
    already_running, blocked, mtls_preflight_due, resumed_routes, Obstacle, Unreadable,
    BLOCKED_RECHECK,
};

/// Everything the engine may know about the world at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// Revision (pod-template hash or config checksum) of the target; `None` when it is missing.
    pub target_revision: Option<String>,
    /// Revision currently running in the primary.
    pub primary_revision: Option<String>,
    /// The primary meets its ready threshold.
    pub primary_ready: bool,
    /// The canary (the scaled-up target) meets its ready threshold.
    pub canary_ready: bool,
    /// Results of webhooks the engine asked for, by type.
    pub hooks: BTreeMap<HookType, Vec<HookOutcome>>,
    /// Results of the metric checks, when the engine asked for them.
    pub metrics: Option<Vec<MetricOutcome>>,
    /// The latest operator request on the canary (acted on once, by its id), or the
    /// annotation that does not read (answered once, by an Event).
    pub request: Option<Result<crate::api::OperatorRequest, Unreadable>>,
    /// The `requireMTLS` preflight that let the rollout start: its reason and message.
    pub mtls: Option<(crate::api::Reason, String)>,
    /// The routes the mesh holds, when read back after a restart.
    pub mesh_routes: Option<Routes>,
    /// Checksums of the ConfigMaps and Secrets the target uses, by name.
    pub configs: BTreeMap<String, String>,
}

/// The answer of one webhook call.
#[derive(Debug, Clone, PartialEq)]
pub struct HookOutcome {
    pub name: String,
    /// The call succeeded (a status of 202 or lower).
    pub ok: bool,
    /// What to say about it: the status code, the response body or the transport error.
    pub message: String,
}

/// The value of one metric check over its interval.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricOutcome {
    pub name: String,
    /// The number, or why there is none.
    pub value: Result<f64, Unmeasured>,
    /// For `compare: primary`: what the judge compares, canary and primary side by side.
    pub comparison: Option<Comparison>,
}

/// The two sides of a comparative metric over the same window.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// Requests and errors (the success rate): judged by the sequential test.
    /// Each look counts the requests since the last one, up to `through` (Unix ms).
    Counts {
        canary: crate::judge::Counts,
        primary: crate::judge::Counts,
        through: i64,
    },
    /// Values of the metric over the sub-intervals up to `through` (Unix ms), paired: judged
    /// by the pooled sample test.
    Samples {
        pairs: Vec<crate::judge::Pair>,
        through: Option<i64>,
        /// Whether the values are histograms' P99s, whose medians are tested too: known from
        /// the metric, never from the data, so the tests pooled stay fixed (see
        /// [`crate::judge::judge_pairs`]).
        medians: bool,
    },
}

/// Why a metric has no value. None of these is ever a pass by accident.
#[derive(Debug, Clone, PartialEq)]
pub enum Unmeasured {
    /// The query ran and found no traffic: judged by the metric's `onNoData`.
    NoData(String),
    /// The provider could not be asked (down, timed out): the step holds.
    ProviderDown(String),
    /// The check cannot pass (an upstream refusing connections, an unsupported metric).
    Failed(String),
}

impl std::fmt::Display for Unmeasured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unmeasured::NoData(reason)
            | Unmeasured::ProviderDown(reason)
            | Unmeasured::Failed(reason) => f.write_str(reason),
        }
    }
}

/// One input to [`decide`].
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// `name.namespace` or any label the events should use.
    pub name: &'a str,
    pub plan: &'a Plan,
    pub status: &'a CanaryStatus,
    pub observations: &'a Observations,
    pub now: Timestamp,
}

/// What the caller must gather before the engine can decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Call every webhook of this type and put the outcomes in `observations.hooks`.
    Hooks(HookType),
    /// Run every metric check and put the outcomes in `observations.metrics`.
    Metrics,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Need(Need),
    Decided(Box<Decision>),
}

/// A new status and what the adapters must do to make the world match it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: CanaryStatus,
    pub actions: Vec<Action>,
    /// When the engine wants to be called again.
    pub requeue_after: Duration,
}

/// Effects for the adapters, applied in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Store the decided status now, marked as having effects pending, and announce the
    /// events before this point: the actions after it are made from the stored status again
    /// should the controller stop before they are all done.
    StoreStatus,
    /// Create the primary (a copy of the target) and the routing objects.
    Bootstrap,
    /// Route traffic.
    SetRoutes(Routes),
    /// Scale the target (the canary) up to its desired replicas, or down to zero.
    ScaleTarget { up: bool },
    /// Copy the target's template into the primary.
    Promote,
    /// Call every webhook of a type without waiting on its verdict (post-rollout).
    RunHooks(HookType),
    /// Tell people: a Kubernetes Event, alerts, event webhooks, the log.
    Event(Event),
}

/// Where requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Routes {
    pub primary_weight: i32,
    pub canary_weight: i32,
    /// Requests matching `analysis.match` go to the canary (A/B).
    pub match_to_canary: bool,
    /// Percent of requests copied to the canary, answers discarded.
    pub mirror_percent: Option<i32>,
}

impl Routes {
    /// All traffic to the primary, nothing else.
    pub fn primary_only() -> Self {
        Routes {
            primary_weight: 100,
            canary_weight: 0,
            match_to_canary: false,
            mirror_percent: None,
        }
    }

    pub fn weighted(canary_weight: i32) -> Self {
        Routes {
            primary_weight: 100 - canary_weight,
            canary_weight,
            ..Routes::primary_only()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub severity: AlertSeverity,
    /// A short CamelCase reason, as Kubernetes Events have.
    pub reason: crate::api::Reason,
    pub message: String,
}

/// Runs the engine once. See the module documentation for the `Need` protocol.
pub fn decide(input: Input<'_>) -> Step {
    match flow::Rollout::new(input).run() {
        Step::Decided(mut decision) => {
            admission::settle(&mut decision, input.status, input.observations, input.now);
            Step::Decided(decision)
        }
        need => need,
    }
}
