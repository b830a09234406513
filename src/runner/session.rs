//! The proxy of a standalone rollout, started the same way for `aviary run` and `aviary demo`:
//! the embedded gateway (with its `/metrics`) or a real Envoy (with its admin stats), and the
//! telemetry scraped from it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::envoy::EnvoyProxy;
use super::Traffic;
use crate::api::StandaloneProxy;
use crate::gateway::{serve_admin, GatewayHandle};
use crate::loadgen::{self, LoadPlan, LoadReport};
use crate::metrics::{Dialect, ScrapeProvider, Workload};
use crate::plan::StandalonePlan;

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("spec.standalone is required by `aviary run`: it names the gateway's listen address and the primary and canary upstreams")]
    MissingSection,
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

/// A started proxy in front of the two upstreams.
pub struct Proxy {
    pub traffic: Arc<dyn Traffic>,
    /// Where clients send requests.
    pub address: SocketAddr,
    /// The proxy's own telemetry, scraped.
    pub telemetry: Arc<ScrapeProvider>,
    pub kind: StandaloneProxy,
    gateway: Option<GatewayHandle>,
}

fn free_loopback_port() -> Result<SocketAddr, StandaloneError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(StandaloneError::Port)
}

impl Proxy {
    /// Starts the proxy `section` names; its telemetry is not scraped until [`Proxy::scrape_every`].
    pub async fn start(section: &StandalonePlan) -> Result<Proxy, StandaloneError> {
        let (primary, canary) = (section.primary.address, section.canary.address);
        let (traffic, address, gateway, url, dialect): (Arc<dyn Traffic>, _, _, _, _) =
            match section.proxy {
                StandaloneProxy::Gateway => {
                    let gateway =
                        GatewayHandle::start(&section.listen.to_string(), primary, canary).await?;
                    let metrics = section
                        .metrics_listen
                        .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
                    let admin = serve_admin(gateway.clone(), &metrics).await?;
                    tracing::info!(gateway = %gateway.address, metrics = %admin, "standalone proxy started");
                    let url = format!("http://{admin}/metrics");
                    let address = gateway.address;
                    (
                        Arc::new(gateway.clone()),
                        address,
                        Some(gateway),
                        url,
                        Dialect::EmbeddedGateway,
                    )
                }
                StandaloneProxy::Envoy => {
                    let admin = match section.metrics_listen {
                        Some(address) => address,
                        None => free_loopback_port()?,
                    };
                    let envoy = EnvoyProxy::start(
                        &section.envoy_binary,
                        section.listen,
                        admin,
                        primary,
                        canary,
                    )
                    .await?;
                    let url = format!("http://{}/stats/prometheus", envoy.admin);
                    (Arc::new(envoy), section.listen, None, url, Dialect::Envoy)
                }
            };
        let side = |name: &str, address: SocketAddr| Workload {
            name: name.into(),
            address: address.to_string(),
        };
        let telemetry = Arc::new(ScrapeProvider::new(
            url,
            dialect,
            side("primary", primary),
            side("canary", canary),
        ));
        Ok(Proxy {
            traffic,
            address,
            telemetry,
            kind: section.proxy,
            gateway,
        })
    }

    /// Scrapes the proxy's telemetry every `period` for as long as the provider lives.
    pub fn scrape_every(&self, period: Duration) {
        self.telemetry.spawn_scraper(period);
    }

    /// Sends `rps` requests per second through the proxy until the sender says stop.
    pub fn send_load(&self, rps: u32) -> (watch::Sender<bool>, JoinHandle<LoadReport>) {
        let (stop, signal) = watch::channel(false);
        let plan = LoadPlan::get(self.address, "/", rps, None);
        (stop, tokio::spawn(loadgen::run(plan, signal)))
    }

    pub fn shutdown(&self) {
        if let Some(gateway) = &self.gateway {
            gateway.shutdown();
        }
    }
}
