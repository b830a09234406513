//! `spec.standalone`: the Aviary extension `aviary run` reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Aviary extension for `aviary run`: where the two versions listen and where the gateway serves.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Standalone {
    /// Address the embedded gateway listens on, for example `127.0.0.1:8080`.
    pub listen: String,
    /// Address of the gateway's `/metrics` (default: an ephemeral loopback port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    pub primary: StandaloneUpstream,
    pub canary: StandaloneUpstream,
    /// Which proxy steers traffic: the embedded `gateway` (default) or a real `envoy`, started
    /// by Aviary with `listen` as its listener and `metricsListen` as its admin address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<StandaloneProxy>,
    /// Refused: the Envoy executable is named only on `aviary run`'s command line
    /// (`--envoy-binary`). Kept in the schema so the refusal can say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_binary: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StandaloneProxy {
    Gateway,
    Envoy,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandaloneUpstream {
    /// `host:port` of the upstream (HTTP).
    pub address: String,
    /// Revision label shown in status and events (default: the address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}
