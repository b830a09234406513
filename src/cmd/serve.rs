//! Subcommands that serve until stopped: the controller, the loadtester, the embedded gateway
//! and the sample app. Each prints `listening <address>` first, so a caller that asked for
//! port 0 learns the port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use aviary::api::{AlertSeverity, CrossNamespaceRef};
use aviary::controller::policies::PolicyMesh;

/// Serve a sample app with a chosen version, error rate and latency.
#[derive(Args)]
pub struct SampleApp {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    #[arg(long, default_value = "v1")]
    version: String,
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

impl SampleApp {
    pub async fn run(self) -> Result<ExitCode> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            bail!("--error-rate {} must be between 0 and 1", self.error_rate);
        }
        let behaviour = aviary::sample_app::Behaviour {
            version: self.version,
            error_rate: self.error_rate,
            latency: Duration::from_millis(self.latency_ms),
        };
        let listen = format!("127.0.0.1:{}", self.port);
        let app = aviary::sample_app::SampleApp::start(&listen, behaviour)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        println!("listening {}", app.address);
        tokio::signal::ctrl_c().await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Run the embedded gateway on its own.
#[derive(Args)]
pub struct Gateway {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    #[arg(long)]
    primary: SocketAddr,
    #[arg(long)]
    canary: SocketAddr,
    /// Percent of traffic for the canary.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=100))]
    canary_weight: i32,
    /// A/B: requests with this header (`name=value`, exact) go to the canary.
    #[arg(long, value_parser = header_match)]
    match_header: Option<(String, String)>,
    /// Percent of requests copied to the canary, its answers discarded.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100))]
    mirror_percent: Option<i32>,
    #[arg(long)]
    metrics_listen: Option<String>,
}

/// `name=value` of `--match-header`.
fn header_match(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => {
            Ok((name.to_ascii_lowercase(), value.to_string()))
        }
        _ => Err(format!("{text:?}: expected name=value")),
    }
}

impl Gateway {
    pub async fn run(self) -> Result<ExitCode> {
        let gateway =
            aviary::gateway::GatewayHandle::start(&self.listen, self.primary, self.canary).await?;
        let mut routes = aviary::engine::Routes::weighted(self.canary_weight);
        routes.mirror_percent = self.mirror_percent;
        let matches: Vec<aviary::plan::RouteMatch> = self
            .match_header
            .into_iter()
            .map(|(name, value)| aviary::plan::RouteMatch {
                headers: [(name, aviary::plan::Condition::Exact(value))].into(),
                ..Default::default()
            })
            .collect();
        routes.match_to_canary = !matches.is_empty();
        gateway.set_routes(routes, &matches)?;
        println!("listening {}", gateway.address);
        if let Some(metrics) = self.metrics_listen {
            let admin = aviary::gateway::serve_admin(gateway.clone(), &metrics).await?;
            println!("metrics http://{admin}/metrics");
        }
        tokio::signal::ctrl_c().await?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Run the Kubernetes controller (uses the in-cluster config or KUBECONFIG).
#[derive(Args)]
pub struct Controller {
    /// Prometheus for Canaries that set no metricsServer.
    #[arg(
        long,
        env = "AVIARY_METRICS_SERVER",
        default_value = "http://prometheus:9090"
    )]
    metrics_server: String,
    /// Router of Canaries without spec.provider: istio, linkerd (SMI) or gatewayapi:v1.
    #[arg(long, env = "AVIARY_MESH_PROVIDER", default_value = "istio")]
    mesh_provider: String,
    /// Telemetry for the built-in checks of Gateway API canaries: istio or linkerd
    /// (default: linkerd with --mesh-provider linkerd, else istio).
    #[arg(long)]
    telemetry: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
    /// Watch only this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Elect a leader on this Lease (namespace/name) before acting.
    #[arg(long, value_parser = super::namespaced)]
    leader_lease: Option<(String, String)>,
    #[arg(long, default_value = "15s", value_parser = super::duration)]
    lease_duration: Duration,
    /// Shortest analysis interval accepted; below 10s only for tests.
    #[arg(long, default_value = "10s", hide = true, value_parser = super::duration)]
    min_interval: Duration,
    /// AlertProvider (namespace/name) for Canaries that declare no analysis.alerts.
    #[arg(long, value_parser = super::namespaced)]
    alert_provider: Option<(String, String)>,
    /// Lowest severity sent to --alert-provider.
    #[arg(long, value_enum, default_value = "info")]
    alert_severity: AlertSeverity,
    /// How often Prometheus scrapes the proxies: `compare: primary` samples sub-intervals of
    /// at least this, each over one scrape more.
    #[arg(long, default_value = "15s", value_parser = super::duration)]
    scrape_interval: Duration,
    /// Meshes whose security policies get -primary copies (and are watched, so need RBAC).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "istio,linkerd"
    )]
    policy_copies: Vec<PolicyMesh>,
}

impl Controller {
    pub async fn run(self) -> Result<ExitCode> {
        let default_alert =
            self.alert_provider
                .map(|(namespace, name)| aviary::controller::DefaultAlert {
                    provider: CrossNamespaceRef {
                        name,
                        namespace: Some(namespace),
                    },
                    severity: self.alert_severity,
                });
        let lease = self
            .leader_lease
            .map(|(namespace, name)| aviary::controller::LeaseSettings {
                namespace,
                name,
                identity: format!("{}-{}", hostname(), std::process::id()),
                duration: self.lease_duration,
            });
        aviary::controller::run(aviary::controller::ControllerConfig {
            metrics_server: self.metrics_server,
            mesh: self.mesh_provider,
            telemetry: self.telemetry,
            listen: self.listen,
            namespace: self.namespace,
            lease,
            min_interval: self.min_interval,
            default_alert,
            scrape_interval: self.scrape_interval,
            policy_meshes: self.policy_copies,
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|| "aviary".to_string())
}

/// Serve load generation for rollout webhooks and token-protected manual gates.
#[derive(Args)]
pub struct Loadtester {
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
    /// Lines of `identity token`: who may open and close gates.
    #[arg(long, env = "AVIARY_LOADTESTER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// When set, webhook calls must be signed with the secret in this file.
    #[arg(long)]
    webhook_secret_file: Option<PathBuf>,
    /// Record gate changes as Events on the Canary (in-cluster config or KUBECONFIG).
    #[arg(long)]
    record_events: bool,
    /// Loads may go to loopback (standalone runs and tests).
    #[arg(long)]
    allow_loopback: bool,
    /// A host (exact name or address, or `.example.com` for a domain) loads may go to, beyond
    /// cluster Service names. Repeatable.
    #[arg(long = "allow-target")]
    allow_targets: Vec<String>,
    /// Serve `POST /` without a signature or token: anyone who reaches the loadtester can then
    /// start loads.
    #[arg(long)]
    insecure_allow_unsigned_load: bool,
}

impl Loadtester {
    pub async fn run(self) -> Result<ExitCode> {
        let tokens = match &self.token_file {
            Some(path) => read_tokens(path)?,
            None => Vec::new(),
        };
        if tokens.is_empty() {
            tracing::warn!("no tokens: every gate change will be refused with 401");
        }
        let webhook_secret = match &self.webhook_secret_file {
            Some(path) => Some(read_secret(path)?),
            None => {
                tracing::warn!(
                    "no --webhook-secret-file: webhook calls are not authenticated, and POST / needs a token"
                );
                None
            }
        };
        let client = if self.record_events {
            let client = kube::Client::try_default()
                .await
                .context("--record-events needs a cluster (in-cluster config or KUBECONFIG)")?;
            Some(client)
        } else {
            None
        };
        let handle = aviary::loadtester::serve(aviary::loadtester::LoadtesterConfig {
            listen: self.listen,
            tokens,
            webhook_secret,
            targets: aviary::loadtester::Targets {
                loopback: self.allow_loopback,
                extra: self.allow_targets.clone(),
                api_server: api_server_addresses().await,
            },
            allow_unsigned_load: self.insecure_allow_unsigned_load,
            audit: aviary::loadtester::Audit { client },
        })
        .await?;
        println!("listening {}", handle.address);
        super::shutdown_signal().await;
        Ok(ExitCode::SUCCESS)
    }
}

/// Where the API server is: in a cluster its Service address (every port); from a kubeconfig,
/// its server's addresses and port. Loads never go there.
async fn api_server_addresses() -> Vec<std::net::SocketAddr> {
    let mut addresses = Vec::new();
    if let Some(ip) = std::env::var("KUBERNETES_SERVICE_HOST")
        .ok()
        .and_then(|host| host.parse::<std::net::IpAddr>().ok())
    {
        addresses.push(std::net::SocketAddr::new(ip, 0));
    }
    if let Ok(config) = kube::Config::infer().await {
        let url = &config.cluster_url;
        if let (Some(host), Some(port)) = (url.host(), url.port_u16().or(Some(443))) {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(resolved) = tokio::net::lookup_host((host, port)).await {
                addresses.extend(resolved);
            }
        }
    }
    addresses
}

fn read_tokens(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--token-file {}", path.display()))?;
    aviary::loadtester::parse_tokens(&text)
        .with_context(|| format!("--token-file {}", path.display()))
}

fn read_secret(path: &Path) -> Result<Vec<u8>> {
    let secret = std::fs::read(path)
        .with_context(|| format!("--webhook-secret-file {}", path.display()))?
        .trim_ascii()
        .to_vec();
    if secret.is_empty() {
        bail!("--webhook-secret-file {} is empty", path.display());
    }
    Ok(secret)
}
