//! The controllers compared: Aviary and Flagger v1.36.1, given the same Canary spec (only the
//! apiVersion differs), the same mesh provider and the same Prometheus.

use std::path::Path;
use std::time::Duration;

use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

use super::identity::Identity;
use crate::bench::BenchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Aviary,
    Flagger,
}

/// Checks failed before a rollback, for both.
pub const THRESHOLD: u64 = 2;

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Aviary => "aviary",
            Peer::Flagger => "flagger",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Peer::Aviary => "aviary.dev",
            Peer::Flagger => "flagger.app",
        }
    }

    pub fn canaries(self) -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk(self.group(), "v1beta1", "Canary"))
    }

    /// The Canary of target `name`: Istio, the two built-in checks against thresholds, small
    /// steps so every canary stays in analysis through the window.
    pub fn canary(self, name: &str, interval: Duration) -> Value {
        json!({
            "apiVersion": format!("{}/v1beta1", self.group()), "kind": "Canary",
            "metadata": { "name": name },
            "spec": {
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
                "service": { "port": 80 },
                "analysis": {
                    "interval": format!("{}s", interval.as_secs()),
                    "threshold": THRESHOLD, "stepWeight": 1, "maxWeight": 99,
                    "metrics": [
                        { "name": "request-success-rate", "thresholdRange": { "min": 99 }, "interval": "1m" },
                        { "name": "request-duration", "thresholdRange": { "max": 500 }, "interval": "1m" }
                    ]
                }
            }
        })
    }

    /// Starts the controller over `ns` as `identity`, reading `prometheus`. Its output is
    /// discarded; both log warnings and errors only.
    pub fn start(
        self,
        aviary: &Path,
        ns: &str,
        identity: &Identity,
        prometheus: &str,
    ) -> Result<tokio::process::Child, BenchError> {
        let mut command = match self {
            Peer::Aviary => {
                let mut command = tokio::process::Command::new(aviary);
                command
                    .args(["controller", "--namespace", ns, "--listen", "127.0.0.1:0"])
                    .args(["--metrics-server", prometheus, "--mesh-provider", "istio"])
                    .env("KUBECONFIG", &identity.kubeconfig)
                    .env("RUST_LOG", "warn");
                command
            }
            Peer::Flagger => {
                let binary = std::env::var("AVIARY_FLAGGER_BIN").map_err(|_| BenchError::Start {
                    what: "Flagger",
                    reason: "AVIARY_FLAGGER_BIN is not set: run under tests/env/testenv after `tests/env/testenv build`".into(),
                })?;
                let port = crate::bench::free_loopback_port("Flagger")?;
                let mut command = tokio::process::Command::new(binary);
                command
                    .arg(format!("-kubeconfig={}", identity.kubeconfig.display()))
                    .args([&format!("-namespace={ns}"), "-mesh-provider=istio"])
                    .arg(format!("-metrics-server={prometheus}"))
                    .args([&format!("-port={port}"), "-log-level=warning"]);
                command
            }
        };
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(crate::bench::start_error(self.name()))
    }
}

/// A Canary's phase, canary weight and failed checks, from either group's status.
pub fn status_of(object: &kube::core::DynamicObject) -> (String, u64, u64) {
    let status = &object.data["status"];
    (
        status["phase"].as_str().unwrap_or_default().to_string(),
        status["canaryWeight"].as_u64().unwrap_or(0),
        status["failedChecks"].as_u64().unwrap_or(0),
    )
}

/// The weight a VirtualService gives the canary of `name` (0 when it routes none there).
pub fn canary_weight(virtual_service: &kube::core::DynamicObject, name: &str) -> u64 {
    let canary_host = format!("{name}-canary");
    let routes = virtual_service.data["spec"]["http"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    routes
        .iter()
        .flat_map(|http| http["route"].as_array().cloned().unwrap_or_default())
        .filter(|route| {
            route["destination"]["host"].as_str().is_some_and(|host| {
                host == canary_host || host.starts_with(&format!("{canary_host}."))
            })
        })
        .map(|route| route["weight"].as_u64().unwrap_or(0))
        .sum()
}
