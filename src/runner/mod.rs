//! The standalone runner: drives the pure engine against the embedded gateway, with real webhooks
//! and metrics scraped from the gateway's own telemetry. `aviary run` and `aviary demo` use it.

pub mod envoy;
pub mod standalone;
mod workloads;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::api::{CanaryPhase, CanarySpec, CanaryStatus, HookType};
use crate::engine::{self, Action, Event, MetricOutcome, Observations, Routes};
use crate::gateway::GatewayHandle;
use crate::hooks::{HookClient, HookPayload};
use crate::metrics::MetricProvider;

pub use workloads::{wait_until_listening, ExternalUpstreams, Workloads};

/// What the runner reports after every decision.
#[derive(Debug, Clone)]
pub struct Progress {
    pub status: CanaryStatus,
    pub routes: Routes,
    pub metrics: Vec<MetricOutcome>,
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("interrupted: all traffic was returned to the primary")]
    Interrupted,
    #[error("cannot apply routes: {0}")]
    Routes(String),
}

/// Where a standalone rollout steers traffic: the embedded gateway or a real Envoy.
pub trait Traffic: Send + Sync {
    fn set_routes(
        &self,
        routes: Routes,
        matches: &[crate::api::RequestMatch],
    ) -> Result<(), String>;
    fn routes(&self) -> Routes;
    /// Points the primary's share at another address (the promotion of external upstreams).
    fn set_primary_address(&self, primary: std::net::SocketAddr);
}

impl Traffic for GatewayHandle {
    fn set_routes(
        &self,
        routes: Routes,
        matches: &[crate::api::RequestMatch],
    ) -> Result<(), String> {
        GatewayHandle::set_routes(self, routes, matches).map_err(|e| e.to_string())
    }

    fn routes(&self) -> Routes {
        GatewayHandle::routes(self)
    }

    fn set_primary_address(&self, primary: std::net::SocketAddr) {
        GatewayHandle::set_primary_address(self, primary)
    }
}

/// One standalone rollout.
pub struct Runner {
    pub name: String,
    pub namespace: String,
    pub spec: CanarySpec,
    pub traffic: Arc<dyn Traffic>,
    pub workloads: Arc<dyn Workloads>,
    pub metrics: Arc<dyn MetricProvider>,
    pub hooks: HookClient,
}

impl Runner {
    /// Runs until the new revision is promoted or rolled back and returns the final status.
    /// Ctrl-C (or `stop` resolving) returns all traffic to the primary first.
    pub async fn run(
        &self,
        mut on_progress: impl FnMut(&Progress),
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<CanaryStatus, RunError> {
        let primary = self.workloads.primary_revision();
        let mut status = CanaryStatus {
            last_applied_spec: Some(primary.clone()),
            last_promoted_spec: Some(primary),
            ..CanaryStatus::default()
        };
        status.set_phase(CanaryPhase::Initialized, "Standalone run", Timestamp::now());
        let mut started = false;
        tokio::pin!(stop);
        loop {
            let (decision, metrics) = self.decide(&status).await;
            let events = self.apply(&decision.actions, &decision.status).await?;
            status = decision.status;
            on_progress(&Progress {
                status: status.clone(),
                routes: self.traffic.routes(),
                metrics,
                events,
            });
            started |= status.phase.is_active();
            if started && matches!(status.phase, CanaryPhase::Succeeded | CanaryPhase::Failed) {
                return Ok(status);
            }
            tokio::select! {
                _ = tokio::time::sleep(decision.requeue_after) => {}
                _ = tokio::signal::ctrl_c() => return self.interrupt(),
                _ = &mut stop => return self.interrupt(),
            }
        }
    }

    fn interrupt(&self) -> Result<CanaryStatus, RunError> {
        self.traffic
            .set_routes(Routes::primary_only(), &[])
            .map_err(|e| RunError::Routes(e.to_string()))?;
        tracing::warn!(canary = %self.name, "interrupted; all traffic returned to the primary");
        Err(RunError::Interrupted)
    }

    /// Calls the engine until it decides, gathering what it asks for.
    async fn decide(&self, status: &CanaryStatus) -> (engine::Decision, Vec<MetricOutcome>) {
        let now = Timestamp::now();
        let observations = Observations {
            target_revision: Some(self.workloads.canary_revision()),
            primary_revision: Some(self.workloads.primary_revision()),
            // Standalone upstreams are checked before the run; a canary that stops answering
            // shows up as connection errors in the metrics, which fail the check.
            primary_ready: true,
            canary_ready: true,
            ..Observations::default()
        };
        let label = format!("{}.{}", self.name, self.namespace);
        let gather = Gather {
            runner: self,
            status,
        };
        crate::driver::decide(&label, &self.spec, status, observations, now, &gather).await
    }

    fn payload(&self, status: &CanaryStatus) -> HookPayload {
        HookPayload {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            phase: status.phase.as_str().to_string(),
            checksum: self.workloads.canary_revision(),
            metadata: BTreeMap::new(),
        }
    }

    async fn run_hooks(&self, kind: HookType, status: &CanaryStatus) -> Vec<engine::HookOutcome> {
        let hooks = crate::driver::webhooks(&self.spec);
        self.hooks
            .run(
                hooks,
                kind,
                &self.payload(status),
                &crate::hooks::no_secrets,
            )
            .await
    }

    async fn apply(
        &self,
        actions: &[Action],
        status: &CanaryStatus,
    ) -> Result<Vec<Event>, RunError> {
        let mut events = Vec::new();
        for action in actions {
            match action {
                // The primary and canary already exist and scale on their own in standalone mode.
                Action::Bootstrap | Action::ScaleTarget { .. } => {}
                Action::SetRoutes(routes) => {
                    let matches = self
                        .spec
                        .analysis
                        .as_ref()
                        .map(|a| a.r#match.as_slice())
                        .unwrap_or_default();
                    self.traffic
                        .set_routes(*routes, matches)
                        .map_err(|e| RunError::Routes(e.to_string()))?;
                }
                Action::Promote => {
                    if let Err(reason) = self.workloads.promote(self.traffic.as_ref()).await {
                        tracing::error!(canary = %self.name, %reason, "promotion failed");
                    }
                }
                Action::RunHooks(kind) => {
                    for outcome in self.run_hooks(*kind, status).await {
                        if !outcome.ok {
                            tracing::warn!(hook = %outcome.name, message = %outcome.message, "post-rollout webhook failed");
                        }
                    }
                }
                Action::Event(event) => {
                    tracing::info!(canary = %self.name, reason = %event.reason, severity = ?event.severity, "{}", event.message);
                    self.send_event_hooks(event, status);
                    events.push(event.clone());
                }
            }
        }
        Ok(events)
    }

    /// `event` webhooks hear every event; they never hold the rollout up.
    fn send_event_hooks(&self, event: &Event, status: &CanaryStatus) {
        let Some(analysis) = &self.spec.analysis else {
            return;
        };
        if !analysis
            .webhooks
            .iter()
            .any(|h| h.r#type == HookType::Event)
        {
            return;
        }
        let payload = self.payload(status).for_event(
            event.severity.event_type(),
            &event.message,
            Timestamp::now(),
        );
        let hooks = self.hooks.clone();
        let declared = analysis.webhooks.clone();
        tokio::spawn(async move {
            hooks
                .run(
                    &declared,
                    HookType::Event,
                    &payload,
                    &crate::hooks::no_secrets,
                )
                .await;
        });
    }
}

/// Time to let a just-started upstream come up before a run refuses to start.
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(10);

/// The runner's answers to the engine: webhooks over HTTP, metrics from the gateway's telemetry.
struct Gather<'a> {
    runner: &'a Runner,
    status: &'a CanaryStatus,
}

impl crate::driver::Gatherer for Gather<'_> {
    fn hooks(&self, kind: HookType) -> futures::future::BoxFuture<'_, Vec<engine::HookOutcome>> {
        Box::pin(self.runner.run_hooks(kind, self.status))
    }

    fn metrics(&self) -> futures::future::BoxFuture<'_, Vec<MetricOutcome>> {
        Box::pin(crate::driver::measure_all(
            &self.runner.spec,
            self.runner.metrics.as_ref(),
        ))
    }
}
