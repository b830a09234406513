//! The built-in checks as PromQL over each data plane's own proxy telemetry. Every data plane
//! answers the same three questions for a workload over a window: the percent of non-5xx
//! responses, the P99 latency in milliseconds, and how many requests there were (for
//! `minSamples`).

use crate::api::{BUILTIN_DURATION, BUILTIN_SUCCESS_RATE};
use crate::plan::TargetKind;

/// Whose proxies' telemetry the built-in checks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshTelemetry {
    /// Istio sidecars: `istio_requests_total`, `istio_request_duration_milliseconds`.
    Istio,
    /// Linkerd proxies: `response_total`, `response_latency_ms`, inbound side.
    Linkerd,
    /// Envoy (standalone, or Envoy-based Gateway API implementations): per-cluster
    /// `envoy_cluster_upstream_rq_xx` and `envoy_cluster_upstream_rq_time`; the workload is a
    /// regular expression over cluster names.
    Envoy,
    /// Aviary's embedded gateway: `aviary_gateway_requests_total` by upstream.
    EmbeddedGateway,
    /// Open Service Mesh's Envoy sidecars: `osm_request_total`, `osm_request_duration_ms`.
    Osm,
    /// No mesh: the application's own `http_request_duration_seconds` histogram, by pod name.
    Application,
    /// Kuma's Envoy sidecars: the callers' `envoy_cluster_upstream_rq` by response code and
    /// `envoy_cluster_upstream_rq_time`, per outbound cluster, which Kuma names after the
    /// destination's Kuma service (`<service>_<namespace>_svc_<port>`).
    Kuma,
    /// Knative's queue-proxy in front of every Revision's pods: the
    /// `kn_serving_invocation_duration_seconds` histogram by `kn_revision_name` and HTTP status.
    /// The workload is a Revision's name.
    Knative,
}

impl MeshTelemetry {
    pub fn parse(name: &str) -> Option<MeshTelemetry> {
        match name {
            "istio" => Some(MeshTelemetry::Istio),
            "linkerd" => Some(MeshTelemetry::Linkerd),
            "envoy" => Some(MeshTelemetry::Envoy),
            "gateway" | "embedded" => Some(MeshTelemetry::EmbeddedGateway),
            "osm" => Some(MeshTelemetry::Osm),
            "application" | "kubernetes" => Some(MeshTelemetry::Application),
            "kuma" => Some(MeshTelemetry::Kuma),
            "knative" => Some(MeshTelemetry::Knative),
            _ => None,
        }
    }
}

/// The workload a built-in check is about.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRef {
    pub namespace: String,
    /// The Deployment or DaemonSet whose pods serve the canary (the target); for Envoy a
    /// cluster-name pattern, for the embedded gateway the upstream (`primary` or `canary`).
    pub name: String,
    /// What kind of workload `name` is: Linkerd and OSM label pods by their owner's kind, and
    /// the two kinds name their pods differently.
    pub kind: TargetKind,
}

/// Where one data plane keeps its request counter, error marker and latency histogram.
struct Shape {
    requests: &'static str,
    /// Label matchers selecting the workload's requests; `{ns}`, `{name}`, `{kind}` (Linkerd's
    /// owner label), `{Kind}` (OSM's) and `{pods}` (the pod name's suffix) are filled in.
    selector: &'static str,
    /// The extra matcher that keeps only non-5xx responses.
    non_errors: &'static str,
    latency_buckets: &'static str,
    /// What a latency quantile is multiplied by to read in milliseconds.
    to_milliseconds: &'static str,
}

const ISTIO: Shape = Shape {
    requests: "istio_requests_total",
    selector: "reporter=\"destination\",destination_workload_namespace=\"{ns}\",destination_workload=~\"{name}\"",
    non_errors: "response_code!~\"5.*\"",
    latency_buckets: "istio_request_duration_milliseconds_bucket",
    to_milliseconds: "",
};

const LINKERD: Shape = Shape {
    requests: "response_total",
    selector: "namespace=\"{ns}\",{kind}=~\"{name}\",direction=\"inbound\"",
    non_errors: "classification!=\"failure\"",
    latency_buckets: "response_latency_ms_bucket",
    to_milliseconds: "",
};

const ENVOY: Shape = Shape {
    requests: "envoy_cluster_upstream_rq_xx",
    selector: "envoy_cluster_name=~\"{name}\"",
    non_errors: "envoy_response_code_class!=\"5\"",
    latency_buckets: "envoy_cluster_upstream_rq_time_bucket",
    to_milliseconds: "",
};

const EMBEDDED: Shape = Shape {
    requests: "aviary_gateway_requests_total",
    selector: "upstream=\"{name}\"",
    non_errors: "code_class!=\"5xx\"",
    latency_buckets: "aviary_gateway_request_duration_ms_bucket",
    to_milliseconds: "",
};

const OSM: Shape = Shape {
    requests: "osm_request_total",
    selector:
        "destination_namespace=\"{ns}\",destination_kind=\"{Kind}\",destination_name=~\"{name}\"",
    non_errors: "response_code!~\"5.*\"",
    latency_buckets: "osm_request_duration_ms_bucket",
    to_milliseconds: "",
};

/// The workload is the Kubernetes Service in front of it (`<svc>-primary` or `<svc>-canary`),
/// as Kuma tags their endpoints.
const KUMA: Shape = Shape {
    requests: "envoy_cluster_upstream_rq",
    selector: "envoy_cluster_name=~\"{name}_{ns}_svc_[0-9]+\"",
    non_errors: "envoy_response_code!~\"5.*\"",
    latency_buckets: "envoy_cluster_upstream_rq_time_bucket",
    to_milliseconds: "",
};

const KNATIVE: Shape = Shape {
    requests: "kn_serving_invocation_duration_seconds_count",
    selector: "k8s_namespace_name=\"{ns}\",kn_revision_name=~\"{name}\"",
    non_errors: "http_response_status_code!~\"5.*\"",
    latency_buckets: "kn_serving_invocation_duration_seconds_bucket",
    to_milliseconds: " * 1000",
};

/// The Prometheus client libraries' default HTTP histogram, scraped with the pod's name; a
/// pod of Deployment `d` is named `d-<replicaset hash>-<pod hash>`, one of DaemonSet `d`
/// `d-<five characters>` (so `d-primary-…` is never taken for `d`'s).
const APPLICATION: Shape = Shape {
    requests: "http_request_duration_seconds_count",
    selector: "kubernetes_namespace=\"{ns}\",kubernetes_pod_name=~\"({name}){pods}\"",
    non_errors: "status!~\"5.*\"",
    latency_buckets: "http_request_duration_seconds_bucket",
    to_milliseconds: " * 1000",
};

impl MeshTelemetry {
    fn shape(self) -> &'static Shape {
        match self {
            MeshTelemetry::Istio => &ISTIO,
            MeshTelemetry::Linkerd => &LINKERD,
            MeshTelemetry::Envoy => &ENVOY,
            MeshTelemetry::EmbeddedGateway => &EMBEDDED,
            MeshTelemetry::Osm => &OSM,
            MeshTelemetry::Application => &APPLICATION,
            MeshTelemetry::Kuma => &KUMA,
            MeshTelemetry::Knative => &KNATIVE,
        }
    }

    fn selector(self, workload: &WorkloadRef) -> String {
        let (kind, owner_kind, pods) = match workload.kind {
            TargetKind::Deployment => ("deployment", "Deployment", "-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"),
            TargetKind::DaemonSet => ("daemonset", "DaemonSet", "-[0-9a-z]{5}"),
            TargetKind::KnativeService => ("revision", "Revision", ""),
        };
        self.shape()
            .selector
            .replace("{ns}", &workload.namespace)
            .replace("{name}", &workload.name)
            .replace("{kind}", kind)
            .replace("{Kind}", owner_kind)
            .replace("{pods}", pods)
    }

    /// PromQL for a built-in check, or `None` when `check` is not one.
    pub fn builtin_query(
        self,
        check: &str,
        workload: &WorkloadRef,
        window: &str,
    ) -> Option<String> {
        let shape = self.shape();
        let selector = self.selector(workload);
        let query = match check {
            BUILTIN_SUCCESS_RATE => format!(
                "sum(rate({requests}{{{selector},{ok}}}[{window}])) / sum(rate({requests}{{{selector}}}[{window}])) * 100",
                requests = shape.requests,
                ok = shape.non_errors,
            ),
            BUILTIN_DURATION => self.latency_quantile(0.99, workload, window),
            _ => return None,
        };
        Some(query)
    }

    /// PromQL for a latency quantile (0.99 is the built-in `request-duration`).
    pub fn latency_quantile(self, quantile: f64, workload: &WorkloadRef, window: &str) -> String {
        format!(
            "histogram_quantile({quantile}, sum(rate({buckets}{{{selector}}}[{window}])) by (le)){scale}",
            buckets = self.shape().latency_buckets,
            selector = self.selector(workload),
            scale = self.shape().to_milliseconds,
        )
    }

    /// PromQL for the workload's latency histogram over the window, one series per bucket.
    pub fn latency_histogram(self, workload: &WorkloadRef, window: &str) -> String {
        format!(
            "sum by (le) (rate({buckets}{{{selector}}}[{window}]))",
            buckets = self.shape().latency_buckets,
            selector = self.selector(workload),
        )
    }

    /// PromQL for the number of requests the workload answered over the window.
    pub fn request_count(self, workload: &WorkloadRef, window: &str) -> String {
        format!(
            "sum(increase({requests}{{{selector}}}[{window}]))",
            requests = self.shape().requests,
            selector = self.selector(workload),
        )
    }

    /// PromQL for the number of 5xx responses over the window (for the sequential test).
    pub fn error_count(self, workload: &WorkloadRef, window: &str) -> String {
        let shape = self.shape();
        let selector = self.selector(workload);
        format!(
            "sum(increase({requests}{{{selector}}}[{window}])) - (sum(increase({requests}{{{selector},{ok}}}[{window}])) or vector(0))",
            requests = shape.requests,
            ok = shape.non_errors,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_plane_has_both_builtins() {
        let workload = WorkloadRef {
            namespace: "shop".into(),
            name: "cart".into(),
            kind: TargetKind::Deployment,
        };
        for telemetry in [
            MeshTelemetry::Istio,
            MeshTelemetry::Linkerd,
            MeshTelemetry::Envoy,
            MeshTelemetry::EmbeddedGateway,
            MeshTelemetry::Osm,
            MeshTelemetry::Application,
            MeshTelemetry::Kuma,
            MeshTelemetry::Knative,
        ] {
            for check in [BUILTIN_SUCCESS_RATE, BUILTIN_DURATION] {
                let query = telemetry.builtin_query(check, &workload, "60s").unwrap();
                assert!(query.contains("[60s]"), "{query}");
                let unfilled = ["{name}", "{ns}", "{kind}", "{Kind}", "{pods}"];
                assert!(!unfilled.iter().any(|p| query.contains(p)), "{query}");
            }
        }
        let linkerd = MeshTelemetry::Linkerd
            .builtin_query(BUILTIN_SUCCESS_RATE, &workload, "1m")
            .unwrap();
        assert!(linkerd.contains(
            "response_total{namespace=\"shop\",deployment=~\"cart\",direction=\"inbound\",classification!=\"failure\"}[1m]"
        ));
    }

    #[test]
    fn a_daemon_sets_pods_are_selected_by_their_owners_kind() {
        let agent = WorkloadRef {
            namespace: "nodes".into(),
            name: "agent".into(),
            kind: TargetKind::DaemonSet,
        };
        let query = |telemetry: MeshTelemetry| telemetry.request_count(&agent, "1m");
        assert!(query(MeshTelemetry::Linkerd).contains("daemonset=~\"agent\""));
        assert!(query(MeshTelemetry::Osm).contains("destination_kind=\"DaemonSet\""));
        let pods = query(MeshTelemetry::Application);
        assert!(
            pods.contains("kubernetes_pod_name=~\"(agent)-[0-9a-z]{5}\""),
            "{pods}"
        );
        let pattern = regex::Regex::new("^(agent)-[0-9a-z]{5}$").unwrap();
        assert!(pattern.is_match("agent-x7k2p"));
        assert!(!pattern.is_match("agent-primary-x7k2p"));
    }

    #[test]
    fn kuma_reads_the_callers_clusters_of_each_service() {
        let cart = |name: &str| WorkloadRef {
            namespace: "shop".into(),
            name: name.into(),
            kind: TargetKind::Deployment,
        };
        let canary = MeshTelemetry::Kuma.request_count(&cart("cart-canary"), "1m");
        assert!(
            canary.contains("envoy_cluster_name=~\"cart-canary_shop_svc_[0-9]+\""),
            "{canary}"
        );
        let primary = MeshTelemetry::Kuma.request_count(&cart("cart-primary"), "1m");
        assert!(
            primary.contains("\"cart-primary_shop_svc_[0-9]+\""),
            "{primary}"
        );
    }
}
