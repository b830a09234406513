//! Driving the pure engine: answering its `Need`s until it decides, then carrying out its
//! actions. The controller and the standalone runner differ only in their [`Adapter`]: where
//! metric values come from, how routes, replicas and promotions are written, where events go.
//! The webhook payload, the hook fan-out and the action interpreter exist here, once.

use std::collections::HashMap;

use futures::future::BoxFuture;
use jiff::Timestamp;

use crate::api::{CanaryStatus, HookType};
use crate::engine::{
    self, Action, Decision, Event, HookOutcome, Input, MetricOutcome, Need, Observations, Routes,
    Step, Unmeasured,
};
use crate::hooks::{HookClient, HookPayload};
use crate::metrics::{MetricError, MetricProvider, MetricQuery};
use crate::plan::{Plan, Webhook};

/// The effects the engine asks for, as one place (a cluster, a standalone run) makes them.
pub trait Adapter: Sync {
    type Error: Send;

    /// The signing key of a webhook: `Ok(None)` when it is not signed.
    fn hook_key(&self, hook: &Webhook) -> Result<Option<Vec<u8>>, String>;
    /// Every metric of the plan, measured over its window, for the step at `status`; `None`
    /// when the queries are still running and the step is decided later (the controller).
    fn measure<'a>(&'a self, status: &'a CanaryStatus)
        -> BoxFuture<'a, Option<Vec<MetricOutcome>>>;
    /// The outcomes of the hooks of `kind` the step at `status` needs, from `calls`; `None`
    /// when they are still running and the step is decided later (the controller, so that no
    /// reconcile worker waits on a tenant's webhook). By default, waited for.
    fn hooks<'a>(
        &'a self,
        _kind: HookType,
        _status: &'a CanaryStatus,
        calls: BoxFuture<'static, Vec<HookOutcome>>,
    ) -> BoxFuture<'a, Option<Vec<HookOutcome>>> {
        Box::pin(async move { Some(calls.await) })
    }
    /// Stores `status` (a transition's intent, marked `effectsPending`) ahead of the side
    /// effects that follow it, and announces the events published before it. Nothing by
    /// default: a standalone run keeps its status in memory.
    fn store<'a>(&'a self, _status: &'a CanaryStatus) -> BoxFuture<'a, Result<(), Self::Error>> {
        Box::pin(async { Ok(()) })
    }
    /// Creates the primary and the routing objects.
    fn bootstrap(&self) -> BoxFuture<'_, Result<(), Self::Error>>;
    fn set_routes(&self, routes: Routes) -> BoxFuture<'_, Result<(), Self::Error>>;
    /// Scales the target (the canary) up to the primary's size, or down to zero.
    fn scale_target(&self, up: bool) -> BoxFuture<'_, Result<(), Self::Error>>;
    /// Copies the target's revision into the primary.
    fn promote(&self) -> BoxFuture<'_, Result<(), Self::Error>>;
    /// Records an event where people look: the log, Kubernetes Events, alert providers.
    fn publish<'a>(&'a self, event: &'a Event, status: &'a CanaryStatus) -> BoxFuture<'a, ()>;
    /// Runs work the decision does not wait on (post-rollout and event hooks). The controller
    /// lets it run on; a standalone run waits for it before it ends.
    fn background(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
    /// Brings what the decision does not own up to date before its actions run (the
    /// controller's `-primary` policy copies); nothing by default.
    fn prepare(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// What one decided step returns: the decision, the metric values it used, the events it
/// published.
pub type Stepped = (Decision, Vec<MetricOutcome>, Vec<Event>);

/// One canary being driven: who it is, its plan, and the client its webhooks go through.
pub struct Session<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub plan: &'a Plan,
    pub hooks: &'a HookClient,
}

impl Session<'_> {
    /// The body every webhook of this canary receives.
    pub fn payload(&self, status: &CanaryStatus, checksum: &str) -> HookPayload {
        HookPayload {
            name: self.name.to_string(),
            namespace: self.namespace.to_string(),
            phase: status.phase.as_str().to_string(),
            checksum: checksum.to_string(),
            metadata: Default::default(),
        }
    }

    /// One step: the engine decides, then its actions are carried out. Returns the decision,
    /// the metric values it used and the events it published; `None` when the step waits on
    /// hooks still running (nothing was done; the adapter asks again later).
    pub async fn run<A: Adapter>(
        &self,
        status: &CanaryStatus,
        observations: Observations,
        now: Timestamp,
        adapter: &A,
    ) -> Result<Option<Stepped>, A::Error> {
        let Some((decision, metrics)) = self.decide(status, observations, now, adapter).await
        else {
            return Ok(None);
        };
        adapter.prepare().await;
        let events = self.apply(&decision, adapter).await?;
        Ok(Some((decision, metrics, events)))
    }

    /// Calls the engine until it decides; returns the decision and the metric values it used,
    /// or `None` when hooks it needs are still running.
    async fn decide<A: Adapter>(
        &self,
        status: &CanaryStatus,
        mut observations: Observations,
        now: Timestamp,
        adapter: &A,
    ) -> Option<(Decision, Vec<MetricOutcome>)> {
        let label = format!("{}.{}", self.name, self.namespace);
        let checksum = observations.target_revision.clone().unwrap_or_default();
        loop {
            let input = Input {
                name: &label,
                plan: self.plan,
                status,
                observations: &observations,
                now,
            };
            match engine::decide(input) {
                Step::Decided(decision) => {
                    return Some((*decision, observations.metrics.unwrap_or_default()))
                }
                Step::Need(Need::Hooks(kind)) => {
                    let payload = self.payload(status, &checksum);
                    let calls = self.calls(kind, payload, adapter);
                    let outcomes = adapter.hooks(kind, status, calls).await?;
                    observations.hooks.insert(kind, outcomes);
                }
                Step::Need(Need::Metrics) => {
                    observations.metrics = Some(adapter.measure(status).await?);
                }
            }
        }
    }

    /// Carries out the decision's actions in order; returns the events it published.
    async fn apply<A: Adapter>(
        &self,
        decision: &Decision,
        adapter: &A,
    ) -> Result<Vec<Event>, A::Error> {
        let status = &decision.status;
        let checksum = status.last_applied_spec.clone().unwrap_or_default();
        let mut events = Vec::new();
        for action in &decision.actions {
            match action {
                Action::StoreStatus => {
                    let mut intent = CanaryStatus {
                        effects_pending: true,
                        ..status.clone()
                    };
                    // In progress until carried out; stamped with the transition's own time.
                    let at = status.last_transition_time.unwrap_or_else(Timestamp::now);
                    intent.set_standing(at);
                    adapter.store(&intent).await?
                }
                Action::Bootstrap => adapter.bootstrap().await?,
                Action::SetRoutes(routes) => adapter.set_routes(*routes).await?,
                Action::ScaleTarget { up } => adapter.scale_target(*up).await?,
                Action::Promote => adapter.promote().await?,
                Action::RunHooks(kind) => {
                    self.spawn_hooks(*kind, self.payload(status, &checksum), adapter)
                }
                Action::Event(event) => {
                    adapter.publish(event, status).await;
                    let body = self.payload(status, &checksum).for_event(
                        event.severity.event_type(),
                        &event.message,
                        Timestamp::now(),
                    );
                    self.spawn_hooks(HookType::Event, body, adapter);
                    events.push(event.clone());
                }
            }
            if let Some(point) = crash_point(action) {
                crate::failpoint::reached(point, status.phase);
            }
        }
        Ok(events)
    }

    /// The calls of the hooks of `kind` with `body`, owning all they need (keys are read now),
    /// so they can run in a task of their own.
    fn calls<A: Adapter>(
        &self,
        kind: HookType,
        body: HookPayload,
        adapter: &A,
    ) -> BoxFuture<'static, Vec<HookOutcome>> {
        let hooks: Vec<Webhook> = self
            .plan
            .analysis
            .webhooks
            .iter()
            .filter(|hook| hook.kind == kind)
            .cloned()
            .collect();
        let keys: HashMap<String, Result<Option<Vec<u8>>, String>> = hooks
            .iter()
            .map(|hook| (hook.name.clone(), adapter.hook_key(hook)))
            .collect();
        let client = self.hooks.clone();
        Box::pin(async move {
            let lookup = |hook: &Webhook| keys.get(&hook.name).cloned().unwrap_or(Ok(None));
            client.run(&hooks, kind, &body, &lookup).await
        })
    }

    /// Calls the hooks of `kind` in the background, without waiting on their verdict
    /// (post-rollout and event hooks); failures are logged.
    fn spawn_hooks<A: Adapter>(&self, kind: HookType, body: HookPayload, adapter: &A) {
        let declared = self.plan.analysis.webhooks.iter();
        if !declared.clone().any(|hook| hook.kind == kind) {
            return;
        }
        let calls = self.calls(kind, body, adapter);
        adapter.background(Box::pin(async move {
            for outcome in calls.await {
                if !outcome.ok {
                    tracing::warn!(hook = %outcome.name, kind = kind.as_str(), message = %outcome.message, "webhook failed");
                }
            }
        }));
    }
}

/// The failpoint after `action`, by the effect it made.
fn crash_point(action: &Action) -> Option<&'static str> {
    match action {
        Action::StoreStatus => Some("status-stored"),
        Action::SetRoutes(_) => Some("routes-written"),
        Action::Promote => Some("primary-written"),
        Action::ScaleTarget { .. } => Some("target-scaled"),
        _ => None,
    }
}

/// Every metric of the plan measured by `provider` over its own window.
pub async fn measure_all(plan: &Plan, provider: &dyn MetricProvider) -> Vec<MetricOutcome> {
    let mut outcomes = Vec::new();
    for metric in &plan.analysis.metrics {
        let query = MetricQuery {
            name: metric.name.clone(),
            window: metric.window,
            min_samples: metric.min_samples,
        };
        let value = provider.measure(&query).await.map_err(unmeasured);
        outcomes.push(MetricOutcome {
            name: metric.name.clone(),
            value,
            comparison: None,
        });
    }
    outcomes
}

/// What a provider's error means to the judge.
fn unmeasured(error: MetricError) -> Unmeasured {
    let reason = error.to_string();
    match error {
        MetricError::NoData { .. } | MetricError::TooFewSamples { .. } => {
            Unmeasured::NoData(reason)
        }
        MetricError::Provider { .. } => Unmeasured::ProviderDown(reason),
        MetricError::Unreachable { .. } | MetricError::Unsupported(..) => {
            Unmeasured::Failed(reason)
        }
    }
}
