//! `spec.standalone`: the addresses of an `aviary run`.

use std::net::SocketAddr;

use crate::api::{Standalone, StandaloneProxy, StandaloneUpstream};

use super::Findings;

/// The Envoy executable when `aviary run` names none.
pub const DEFAULT_ENVOY: &str = "envoy";

/// The standalone section with every address read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandalonePlan {
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub primary: Upstream,
    pub canary: Upstream,
    pub proxy: StandaloneProxy,
    /// The Envoy executable: `envoy` on PATH, or what `aviary run --envoy-binary` names. Never
    /// read from a manifest, so a manifest cannot choose what runs on the operator's machine.
    pub envoy_binary: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub address: SocketAddr,
    /// Shown in status and events: the declared revision, or the address.
    pub revision: String,
}

fn address(path: &str, text: &str, findings: &mut Findings) -> Option<SocketAddr> {
    let parsed = text.parse::<SocketAddr>().ok();
    if parsed.is_none() {
        findings.error(
            path,
            format!("{text:?} is not an ip:port address, for example 127.0.0.1:8080"),
        );
    }
    parsed
}

fn upstream(path: &str, wire: &StandaloneUpstream, findings: &mut Findings) -> Option<Upstream> {
    Some(Upstream {
        address: address(path, &wire.address, findings)?,
        revision: wire
            .revision
            .clone()
            .unwrap_or_else(|| wire.address.clone()),
    })
}

pub(super) fn section(section: &Standalone, findings: &mut Findings) -> Option<StandalonePlan> {
    let listen = address("spec.standalone.listen", &section.listen, findings);
    let metrics_listen = match &section.metrics_listen {
        Some(text) => Some(address("spec.standalone.metricsListen", text, findings)?),
        None => None,
    };
    let primary = upstream(
        "spec.standalone.primary.address",
        &section.primary,
        findings,
    );
    let canary = upstream("spec.standalone.canary.address", &section.canary, findings);
    if section.envoy_binary.is_some() {
        findings.error(
            "spec.standalone.envoyBinary",
            "a manifest may not name the program to run; pass --envoy-binary to aviary run",
        );
    }
    if section.primary.address == section.canary.address {
        findings.error(
            "spec.standalone.canary.address",
            "primary and canary must listen on different addresses",
        );
    }
    Some(StandalonePlan {
        listen: listen?,
        metrics_listen,
        primary: primary?,
        canary: canary?,
        proxy: section.proxy.unwrap_or(StandaloneProxy::Gateway),
        envoy_binary: DEFAULT_ENVOY.to_string(),
    })
}
