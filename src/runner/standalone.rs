//! `aviary run`: one Canary manifest with a `spec.standalone` section, rolled out for real.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::envoy::EnvoyProxy;
use super::Traffic;
use super::{wait_until_listening, ExternalUpstreams, Progress, Runner, STARTUP_PATIENCE};
use crate::api::{CanaryPhase, CanarySpec, CanaryStatus, StandaloneProxy};
use crate::gateway::{serve_admin, GatewayHandle};
use crate::hooks::HookClient;
use crate::loadgen::{self, LoadPlan};
use crate::metrics::prometheus::{MeshProvider, MeshTelemetry, PrometheusClient, WorkloadRef};
use crate::metrics::{Dialect, MetricProvider, ScrapeProvider, Workload};

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("spec.standalone is required by `aviary run`: it names the gateway's listen address and the primary and canary upstreams")]
    MissingSection,
    #[error("{field}: {value:?} is not an ip:port address")]
    Address { field: &'static str, value: String },
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error(transparent)]
    Envoy(#[from] super::envoy::EnvoyError),
    #[error("cannot pick a port for Envoy's admin listener: {0}")]
    Port(std::io::Error),
    #[error(transparent)]
    Run(#[from] super::RunError),
}

fn address(field: &'static str, value: &str) -> Result<SocketAddr, StandaloneError> {
    value.parse().map_err(|_| StandaloneError::Address {
        field,
        value: value.to_string(),
    })
}

fn free_loopback_port() -> Result<SocketAddr, StandaloneError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(StandaloneError::Port)
}

/// Runs the rollout described by `spec` and returns its final status.
/// `load_rps` sends built-in load through the gateway for the whole run.
pub async fn run(
    name: String,
    namespace: String,
    spec: CanarySpec,
    load_rps: Option<u32>,
    on_progress: impl FnMut(&Progress),
) -> Result<CanaryStatus, StandaloneError> {
    let section = spec
        .standalone
        .clone()
        .ok_or(StandaloneError::MissingSection)?;
    let primary = address("spec.standalone.primary.address", &section.primary.address)?;
    let canary = address("spec.standalone.canary.address", &section.canary.address)?;
    // Nothing is started until both upstreams answer, so a refused run leaves nothing behind.
    wait_until_listening("primary", primary, STARTUP_PATIENCE)
        .await
        .map_err(StandaloneError::Upstream)?;
    wait_until_listening("canary", canary, STARTUP_PATIENCE)
        .await
        .map_err(StandaloneError::Upstream)?;
    let proxy = section.proxy.unwrap_or(StandaloneProxy::Gateway);
    let metrics_listen = section.metrics_listen.as_deref().unwrap_or("127.0.0.1:0");
    // The embedded gateway serves its own /metrics; Envoy's admin listener serves its stats.
    let (traffic, gateway, telemetry_url, dialect): (Arc<dyn Traffic>, _, _, _) = match proxy {
        StandaloneProxy::Gateway => {
            let gateway = GatewayHandle::start(&section.listen, primary, canary).await?;
            let admin = serve_admin(gateway.clone(), metrics_listen).await?;
            tracing::info!(gateway = %gateway.address, metrics = %admin, "standalone run started");
            let url = format!("http://{admin}/metrics");
            (
                Arc::new(gateway.clone()),
                Some(gateway),
                url,
                Dialect::EmbeddedGateway,
            )
        }
        StandaloneProxy::Envoy => {
            let listen = address("spec.standalone.listen", &section.listen)?;
            let admin = match section.metrics_listen.as_deref() {
                Some(text) => address("spec.standalone.metricsListen", text)?,
                None => free_loopback_port()?,
            };
            let binary = section.envoy_binary.as_deref().unwrap_or("envoy");
            let envoy = EnvoyProxy::start(binary, listen, admin, primary, canary).await?;
            let url = format!("http://{}/stats/prometheus", envoy.admin);
            (Arc::new(envoy), None, url, Dialect::Envoy)
        }
    };
    let scrape = Arc::new(ScrapeProvider::new(
        telemetry_url,
        dialect,
        Workload {
            name: "primary".into(),
            address: primary.to_string(),
        },
        Workload {
            name: "canary".into(),
            address: canary.to_string(),
        },
    ));
    // With spec.metricsServer the built-ins query that Prometheus over the proxy's telemetry
    // (scraped from it), as in a cluster; without, they read the proxy's stats directly.
    let metrics: Arc<dyn MetricProvider> = match &spec.metrics_server {
        Some(server) => Arc::new(MeshProvider {
            prometheus: PrometheusClient::new(server, Duration::from_secs(5)),
            mesh: match proxy {
                StandaloneProxy::Gateway => MeshTelemetry::EmbeddedGateway,
                StandaloneProxy::Envoy => MeshTelemetry::Envoy,
            },
            workload: WorkloadRef {
                namespace: namespace.clone(),
                name: "canary".into(),
            },
        }),
        None => scrape.clone(),
    };
    let interval = spec.interval();
    if spec.metrics_server.is_none() {
        scrape.spawn_scraper(
            (interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)),
        );
    }
    let revision = |upstream: &crate::api::StandaloneUpstream| {
        upstream
            .revision
            .clone()
            .unwrap_or_else(|| upstream.address.clone())
    };
    let workloads = ExternalUpstreams::new(
        (primary, revision(&section.primary)),
        (canary, revision(&section.canary)),
    );
    let (stop_load, stop_signal) = watch::channel(false);
    if let Some(rps) = load_rps {
        let target = match &gateway {
            Some(gateway) => gateway.address,
            None => address("spec.standalone.listen", &section.listen)?,
        };
        let plan = LoadPlan::get(target, "/", rps, None);
        tokio::spawn(loadgen::run(plan, stop_signal));
    }
    let runner = Runner {
        name,
        namespace,
        spec,
        traffic,
        workloads: Arc::new(workloads),
        metrics,
        hooks: HookClient::default(),
    };
    let result = runner.run(on_progress, std::future::pending()).await;
    let _ = stop_load.send(true);
    if let Some(gateway) = gateway {
        gateway.shutdown();
    }
    let status = result?;
    if status.phase == CanaryPhase::Succeeded {
        tracing::info!("promoted: the gateway's primary route now points at the canary upstream");
    }
    Ok(status)
}
