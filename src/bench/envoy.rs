//! Envoy as the peer of the embedded gateway: one worker thread, the same upstream as both
//! clusters, the same split, A/B match and mirroring as the gateway is given.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::{free_loopback_port, start_error, BenchError};

/// What both proxies are asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// 90 % primary, 10 % canary.
    Weighted,
    /// As Weighted, after a header match to the canary that the load does not carry.
    HeaderMatch,
    /// As Weighted, every request also copied to the canary.
    Mirrored,
}

pub const CANARY_PERCENT: i32 = 10;
pub const MATCH_HEADER: (&str, &str) = ("x-canary", "always");

impl Routing {
    pub const ALL: [Routing; 3] = [Routing::Weighted, Routing::HeaderMatch, Routing::Mirrored];

    pub fn name(self) -> &'static str {
        match self {
            Routing::Weighted => "weighted_90_10",
            Routing::HeaderMatch => "header_match_then_90_10",
            Routing::Mirrored => "weighted_90_10_mirrored",
        }
    }

    /// The gateway's flags for this routing.
    pub fn gateway_args(self) -> Vec<String> {
        let mut args = vec!["--canary-weight".to_string(), CANARY_PERCENT.to_string()];
        match self {
            Routing::Weighted => {}
            Routing::HeaderMatch => {
                args.extend([
                    "--match-header".into(),
                    format!("{}={}", MATCH_HEADER.0, MATCH_HEADER.1),
                ]);
            }
            Routing::Mirrored => args.extend(["--mirror-percent".into(), "100".into()]),
        }
        args
    }

    fn routes(self) -> Value {
        let weighted = json!({ "clusters": [
            { "name": "primary", "weight": 100 - CANARY_PERCENT },
            { "name": "canary", "weight": CANARY_PERCENT }
        ] });
        let mut route = json!({ "weighted_clusters": weighted });
        if self == Routing::Mirrored {
            route["request_mirror_policies"] = json!([{ "cluster": "canary" }]);
        }
        let split = json!({ "match": { "prefix": "/" }, "route": route });
        match self {
            Routing::HeaderMatch => json!([
                { "match": { "prefix": "/", "headers": [{ "name": MATCH_HEADER.0, "string_match": { "exact": MATCH_HEADER.1 } }] },
                  "route": { "cluster": "canary" } },
                split
            ]),
            _ => json!([split]),
        }
    }
}

fn cluster(name: &str, upstream: SocketAddr) -> Value {
    json!({
        "name": name, "connect_timeout": "1s", "type": "STATIC",
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
            "socket_address": { "address": upstream.ip().to_string(), "port_value": upstream.port() } } } }] }] }
    })
}

fn bootstrap(routing: Routing, listen: u16, admin: u16, upstream: SocketAddr) -> Value {
    let manager = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bench",
        "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routing.routes() }] },
        "http_filters": [{ "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }]
    });
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin } } },
        "static_resources": {
            "listeners": [{ "name": "bench",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": listen } },
                "filter_chains": [{ "filters": [{ "name": "envoy.filters.network.http_connection_manager", "typed_config": manager }] }] }],
            "clusters": [cluster("primary", upstream), cluster("canary", upstream)]
        }
    })
}

/// A running Envoy; killed and its config removed when dropped.
pub struct Envoy {
    pub child: tokio::process::Child,
    pub address: SocketAddr,
    config: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

impl Envoy {
    /// Starts `AVIARY_ENVOY_BIN` (or `envoy`) with one worker thread, and waits until it
    /// answers through its listener.
    pub async fn start(routing: Routing, upstream: SocketAddr) -> Result<Envoy, BenchError> {
        let (listen, admin) = (free_loopback_port("Envoy")?, free_loopback_port("Envoy")?);
        let config = std::env::temp_dir().join(format!(
            "aviary-bench-envoy-{}-{listen}.json",
            std::process::id()
        ));
        std::fs::write(
            &config,
            bootstrap(routing, listen, admin, upstream).to_string(),
        )
        .map_err(start_error("Envoy"))?;
        let binary = std::env::var("AVIARY_ENVOY_BIN").unwrap_or_else(|_| "envoy".into());
        let child = tokio::process::Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BenchError::Start {
                what: "Envoy",
                reason: format!(
                    "{binary}: {e} (set AVIARY_ENVOY_BIN, or run under tests/env/testenv)"
                ),
            })?;
        let envoy = Envoy {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], listen)),
            config,
        };
        let http = reqwest::Client::new();
        let url = format!("http://{}/", envoy.address);
        super::controller::wait_for("Envoy answering", Duration::from_secs(30), async || {
            Ok(http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()))
        })
        .await?;
        Ok(envoy)
    }
}
