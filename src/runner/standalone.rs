//! `aviary run`: one Canary manifest with a `spec.standalone` section, rolled out for real.

use std::sync::Arc;
use std::time::Duration;

use super::STARTUP_PATIENCE;
use super::{wait_until_listening, ExternalUpstreams, Progress, Proxy, Runner, StandaloneError};
use crate::api::{CanaryPhase, CanaryStatus, StandaloneProxy};
use crate::hooks::HookClient;
use crate::metrics::prometheus::{MeshProvider, MeshTelemetry, PrometheusClient, WorkloadRef};
use crate::metrics::MetricProvider;
use crate::plan::Plan;

/// Runs the rollout `plan` describes and returns its final status.
/// `load_rps` sends built-in load through the proxy for the whole run.
pub async fn run(
    name: String,
    namespace: String,
    plan: Plan,
    load_rps: Option<u32>,
    on_progress: impl FnMut(&Progress),
) -> Result<CanaryStatus, StandaloneError> {
    let section = plan
        .standalone
        .clone()
        .ok_or(StandaloneError::MissingSection)?;
    // Nothing is started until both upstreams answer, so a refused run leaves nothing behind.
    for (side, upstream) in [("primary", &section.primary), ("canary", &section.canary)] {
        wait_until_listening(side, upstream.address, STARTUP_PATIENCE)
            .await
            .map_err(StandaloneError::Upstream)?;
    }
    let proxy = Proxy::start(&section).await?;
    // With spec.metricsServer the built-ins query that Prometheus over the proxy's telemetry
    // (scraped from it), as in a cluster; without, they read the proxy's stats directly.
    let metrics: Arc<dyn MetricProvider> = match plan.metrics_server.clone() {
        Some(server) => Arc::new(MeshProvider {
            prometheus: PrometheusClient::new(&server, Duration::from_secs(5)),
            mesh: match proxy.kind {
                StandaloneProxy::Gateway => MeshTelemetry::EmbeddedGateway,
                StandaloneProxy::Envoy => MeshTelemetry::Envoy,
            },
            workload: WorkloadRef {
                namespace: namespace.clone(),
                name: "canary".into(),
                kind: crate::plan::TargetKind::Deployment,
            },
        }),
        None => {
            let period =
                (plan.interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
            proxy.scrape_every(period);
            proxy.telemetry.clone()
        }
    };
    let revision = |upstream: &crate::plan::standalone::Upstream| {
        (upstream.address, upstream.revision.clone())
    };
    let workloads = ExternalUpstreams::new(revision(&section.primary), revision(&section.canary));
    let load = load_rps.map(|rps| proxy.send_load(rps));
    let runner = Runner {
        name,
        namespace,
        plan,
        traffic: proxy.traffic.clone(),
        workloads: Arc::new(workloads),
        metrics,
        hooks: HookClient::default(),
        background: Default::default(),
    };
    let result = runner.run(on_progress, std::future::pending()).await;
    if let Some((stop, _)) = load {
        let _ = stop.send(true);
    }
    proxy.shutdown();
    let status = result?;
    if status.phase == CanaryPhase::Succeeded {
        tracing::info!("promoted: the proxy's primary route now points at the canary upstream");
    }
    Ok(status)
}
