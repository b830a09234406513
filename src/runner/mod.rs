//! The standalone runner: drives the pure engine against the embedded gateway, with real webhooks
//! and metrics scraped from the gateway's own telemetry. `aviary run` and `aviary demo` use it.

pub mod envoy;
mod session;
pub mod standalone;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;

use crate::api::{CanaryPhase, CanaryStatus};
use crate::driver::{Adapter, Session};
use crate::engine::{self, Event, MetricOutcome, Observations, Routes};
use crate::gateway::GatewayHandle;
use crate::hooks::HookClient;
use crate::metrics::MetricProvider;
use crate::plan::{Plan, RouteMatch, Webhook};

pub use session::{Proxy, StandaloneError};
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
    fn set_routes(&self, routes: Routes, matches: &[RouteMatch]) -> Result<(), String>;
    fn routes(&self) -> Routes;
    /// Points the primary's share at another address (the promotion of external upstreams).
    fn set_primary_address(&self, primary: std::net::SocketAddr);
}

impl Traffic for GatewayHandle {
    fn set_routes(&self, routes: Routes, matches: &[RouteMatch]) -> Result<(), String> {
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
    pub plan: Plan,
    pub traffic: Arc<dyn Traffic>,
    pub workloads: Arc<dyn Workloads>,
    pub metrics: Arc<dyn MetricProvider>,
    pub hooks: HookClient,
    /// Hooks still being called; the run ends after them.
    pub background: Background,
}

/// Tasks a standalone run waits for before it ends.
#[derive(Default)]
pub struct Background(parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>);

impl Background {
    /// Waits for every task started so far.
    async fn finish(&self) {
        let tasks = std::mem::take(&mut *self.0.lock());
        for task in tasks {
            let _ = task.await;
        }
    }
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
        let mut status = engine::already_running(&primary, Timestamp::now());
        let mut started = false;
        tokio::pin!(stop);
        loop {
            let session = self.session();
            let stepped = session.run(&status, self.observations(), Timestamp::now(), self);
            // The runner's adapter waits for hooks, so every step is decided.
            let Some((decision, metrics, events)) = stepped.await? else {
                continue;
            };
            status = decision.status;
            on_progress(&Progress {
                status: status.clone(),
                routes: self.traffic.routes(),
                metrics,
                events,
            });
            started |= status.phase.is_active();
            if started && matches!(status.phase, CanaryPhase::Succeeded | CanaryPhase::Failed) {
                // Post-rollout and event hooks are heard before the run says it is done.
                self.background.finish().await;
                return Ok(status);
            }
            tokio::select! {
                _ = tokio::time::sleep(decision.requeue_after) => {}
                _ = tokio::signal::ctrl_c() => return self.interrupt(),
                _ = &mut stop => return self.interrupt(),
            }
        }
    }

    fn session(&self) -> Session<'_> {
        Session {
            name: &self.name,
            namespace: &self.namespace,
            plan: &self.plan,
            hooks: &self.hooks,
        }
    }

    fn observations(&self) -> Observations {
        Observations {
            target_revision: Some(self.workloads.canary_revision()),
            primary_revision: Some(self.workloads.primary_revision()),
            // Standalone upstreams are checked before the run; a canary that stops answering
            // shows up as connection errors in the metrics, which fail the check.
            primary_ready: true,
            canary_ready: true,
            ..Observations::default()
        }
    }

    fn interrupt(&self) -> Result<CanaryStatus, RunError> {
        self.traffic
            .set_routes(Routes::primary_only(), &[])
            .map_err(RunError::Routes)?;
        tracing::warn!(canary = %self.name, "interrupted; all traffic returned to the primary");
        Err(RunError::Interrupted)
    }
}

/// The standalone side of the adapter protocol: the gateway (or Envoy) steers traffic, the
/// upstreams already run, metrics come from the proxy's telemetry.
impl Adapter for Runner {
    type Error = RunError;

    fn hook_key(&self, hook: &Webhook) -> Result<Option<Vec<u8>>, String> {
        crate::hooks::no_secrets(hook)
    }

    fn measure<'a>(
        &'a self,
        _status: &'a CanaryStatus,
    ) -> BoxFuture<'a, Option<Vec<MetricOutcome>>> {
        Box::pin(async move {
            Some(crate::driver::measure_all(&self.plan, self.metrics.as_ref()).await)
        })
    }

    // The primary and canary already exist and scale on their own in standalone mode.
    fn bootstrap(&self) -> BoxFuture<'_, Result<(), RunError>> {
        Box::pin(async { Ok(()) })
    }

    fn set_routes(&self, routes: Routes) -> BoxFuture<'_, Result<(), RunError>> {
        let result = self
            .traffic
            .set_routes(routes, &self.plan.analysis.matches)
            .map_err(RunError::Routes);
        Box::pin(async move { result })
    }

    fn scale_target(&self, _: bool) -> BoxFuture<'_, Result<(), RunError>> {
        Box::pin(async { Ok(()) })
    }

    fn promote(&self) -> BoxFuture<'_, Result<(), RunError>> {
        Box::pin(async move {
            if let Err(reason) = self.workloads.promote(self.traffic.as_ref()).await {
                tracing::error!(canary = %self.name, %reason, "promotion failed");
            }
            Ok(())
        })
    }

    fn background(&self, task: BoxFuture<'static, ()>) {
        self.background.0.lock().push(tokio::spawn(task));
    }

    fn publish<'a>(&'a self, event: &'a Event, _: &'a CanaryStatus) -> BoxFuture<'a, ()> {
        tracing::info!(canary = %self.name, reason = %event.reason, severity = ?event.severity, "{}", event.message);
        Box::pin(async {})
    }
}

/// Time to let a just-started upstream come up before a run refuses to start.
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(10);
