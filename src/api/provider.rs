//! `spec.provider`: which routing objects a canary is steered with, and what each can express.
//! Validation and the controller read the same table, so a canary that a router cannot serve is
//! refused before anything is written.

use std::fmt;

/// The routers Aviary can drive in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouterKind {
    /// Istio VirtualService and DestinationRules.
    Istio,
    /// Linkerd (or any SMI mesh) through an SMI TrafficSplit of the given version.
    Smi(SmiVersion),
    /// A Gateway API HTTPRoute (`gateway.networking.k8s.io/v1`), for Gateway implementations
    /// and for GAMMA meshes (Linkerd, Istio) when the parent is the Service itself.
    GatewayApi,
    /// Open Service Mesh: an SMI TrafficSplit, judged by OSM's own `osm_request_*` telemetry.
    Osm,
    /// No mesh: only the generated Services. Traffic cannot be split, so only blue/green runs;
    /// the switch happens when the primary takes the new template. Judged by the application's
    /// own `http_request_duration_seconds` histogram.
    Kubernetes,
    /// Kuma: a cluster-scoped `kuma.io/v1alpha1` TrafficRoute splitting the apex's Kuma service
    /// between the primary's and the canary's, judged by Kuma's Envoy cluster statistics.
    Kuma,
    /// Knative: the Knative Service's own `spec.traffic`, split between the primary revision
    /// and the latest one.
    Knative,
}

/// The TrafficSplit versions Flagger's SMI routers write. Each carries the root service and
/// weighted backends, the only parts Aviary writes, so one builder serves all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SmiVersion {
    V1alpha1,
    V1alpha2,
    V1alpha3,
}

impl SmiVersion {
    pub const ALL: [SmiVersion; 3] = [
        SmiVersion::V1alpha1,
        SmiVersion::V1alpha2,
        SmiVersion::V1alpha3,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SmiVersion::V1alpha1 => "v1alpha1",
            SmiVersion::V1alpha2 => "v1alpha2",
            SmiVersion::V1alpha3 => "v1alpha3",
        }
    }
}

/// The provider names accepted in `spec.provider` and `--mesh-provider`.
pub const PROVIDER_NAMES: &str = "istio, linkerd, smi:v1alpha1, smi:v1alpha2, smi:v1alpha3, osm, gatewayapi:v1, gatewayapi:v1beta1, kubernetes, kuma, knative";
/// Every spelling [`RouterKind::parse`] accepts (the CRD's enum).
pub const PROVIDERS: [&str; 13] = [
    "istio",
    "linkerd",
    "smi",
    "smi:v1alpha1",
    "smi:v1alpha2",
    "smi:v1alpha3",
    "osm",
    "gatewayapi",
    "gatewayapi:v1",
    "gatewayapi:v1beta1",
    "kubernetes",
    "kuma",
    "knative",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider {0:?} is not supported; use one of {PROVIDER_NAMES}")]
pub struct UnknownProvider(pub String);

impl RouterKind {
    pub fn parse(name: &str) -> Result<RouterKind, UnknownProvider> {
        match name {
            "istio" => Ok(RouterKind::Istio),
            "linkerd" | "smi" | "smi:v1alpha2" => Ok(RouterKind::Smi(SmiVersion::V1alpha2)),
            "smi:v1alpha1" => Ok(RouterKind::Smi(SmiVersion::V1alpha1)),
            "smi:v1alpha3" => Ok(RouterKind::Smi(SmiVersion::V1alpha3)),
            // v1beta1 HTTPRoutes are the v1 schema; every Gateway API release since v1.0
            // serves both versions, and Aviary writes v1.
            "gatewayapi" | "gatewayapi:v1" | "gatewayapi:v1beta1" => Ok(RouterKind::GatewayApi),
            "osm" => Ok(RouterKind::Osm),
            "kubernetes" => Ok(RouterKind::Kubernetes),
            "kuma" => Ok(RouterKind::Kuma),
            "knative" => Ok(RouterKind::Knative),
            other => Err(UnknownProvider(other.to_string())),
        }
    }

    /// Whether requests can be copied to the canary (`analysis.mirror`).
    pub fn can_mirror(self) -> bool {
        matches!(self, RouterKind::Istio | RouterKind::GatewayApi)
    }

    /// Whether requests can be routed by header, cookie or path (`analysis.match`).
    pub fn can_match(self) -> bool {
        matches!(self, RouterKind::Istio | RouterKind::GatewayApi)
    }

    /// Whether traffic can be split by weight (a canary strategy); without it only blue/green
    /// (or no analysis) can run.
    pub fn can_split(self) -> bool {
        !matches!(self, RouterKind::Kubernetes)
    }

    /// Whether sticky sessions by cookie can be expressed (`analysis.sessionAffinity`).
    pub fn can_pin_sessions(self) -> bool {
        matches!(self, RouterKind::Istio | RouterKind::GatewayApi)
    }

    /// Whether `analysis.requireMTLS` can be confirmed: Istio's PeerAuthentication in force
    /// (Istio, and Gateway API on an Istio data plane) or Linkerd's injection (SMI).
    pub fn can_confirm_mtls(self) -> bool {
        matches!(
            self,
            RouterKind::Istio | RouterKind::Smi(_) | RouterKind::GatewayApi
        )
    }

    /// Whether `spec.service.gatewayRefs` is required.
    pub fn needs_parent_refs(self) -> bool {
        matches!(self, RouterKind::GatewayApi)
    }
}

impl fmt::Display for RouterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouterKind::Smi(version) => return write!(f, "smi:{}", version.as_str()),
            RouterKind::Istio => "istio",
            RouterKind::GatewayApi => "gatewayapi:v1",
            RouterKind::Osm => "osm",
            RouterKind::Kubernetes => "kubernetes",
            RouterKind::Kuma => "kuma",
            RouterKind::Knative => "knative",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_enum_is_what_parse_accepts() {
        for name in PROVIDERS {
            assert!(RouterKind::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn flagger_provider_names_map_to_routers() {
        assert_eq!(
            RouterKind::parse("linkerd"),
            Ok(RouterKind::Smi(SmiVersion::V1alpha2))
        );
        assert_eq!(
            RouterKind::parse("smi:v1alpha3").unwrap().to_string(),
            "smi:v1alpha3"
        );
        assert_eq!(
            RouterKind::parse("gatewayapi:v1"),
            Ok(RouterKind::GatewayApi)
        );
        let refused = RouterKind::parse("appmesh").unwrap_err().to_string();
        assert!(refused.contains("appmesh") && refused.contains("gatewayapi:v1"));
    }
}
