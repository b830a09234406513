//! The Prometheus HTTP API provider, and the built-in checks written as PromQL over each mesh's
//! own proxy telemetry.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{MetricError, MetricProvider, MetricQuery};
use crate::api::{BUILTIN_DURATION, BUILTIN_SUCCESS_RATE};

/// Which proxies' telemetry the built-in checks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshTelemetry {
    Istio,
    Linkerd,
}

/// The workload a built-in check is about.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRef {
    pub namespace: String,
    /// The Deployment whose pods serve the canary (the target).
    pub name: String,
}

impl MeshTelemetry {
    /// PromQL for a built-in check, or `None` when `check` is not one.
    pub fn builtin_query(
        self,
        check: &str,
        workload: &WorkloadRef,
        window: &str,
    ) -> Option<String> {
        let WorkloadRef { namespace, name } = workload;
        let query = match (self, check) {
            (MeshTelemetry::Istio, BUILTIN_SUCCESS_RATE) => format!(
                "sum(rate(istio_requests_total{{reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_workload=~\"{name}\",response_code!~\"5.*\"}}[{window}])) \
                 / sum(rate(istio_requests_total{{reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_workload=~\"{name}\"}}[{window}])) * 100"
            ),
            (MeshTelemetry::Istio, BUILTIN_DURATION) => format!(
                "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{{reporter=\"destination\",destination_workload_namespace=\"{namespace}\",destination_workload=~\"{name}\"}}[{window}])) by (le))"
            ),
            (MeshTelemetry::Linkerd, BUILTIN_SUCCESS_RATE) => format!(
                "sum(rate(response_total{{namespace=\"{namespace}\",deployment=~\"{name}\",classification!=\"failure\",direction=\"inbound\"}}[{window}])) \
                 / sum(rate(response_total{{namespace=\"{namespace}\",deployment=~\"{name}\",direction=\"inbound\"}}[{window}])) * 100"
            ),
            (MeshTelemetry::Linkerd, BUILTIN_DURATION) => format!(
                "histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{{namespace=\"{namespace}\",deployment=~\"{name}\",direction=\"inbound\"}}[{window}])) by (le))"
            ),
            _ => return None,
        };
        Some(query)
    }
}

/// A Prometheus server reached over its HTTP API.
#[derive(Clone)]
pub struct PrometheusClient {
    address: String,
    http: reqwest::Client,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

impl PrometheusClient {
    pub fn new(address: &str, timeout: Duration) -> Self {
        Self::with_http(crate::http_client::client(timeout), address, timeout)
    }

    /// A client sharing `http`'s connection pool; cheap, so it can be made per query.
    pub fn with_http(http: reqwest::Client, address: &str, timeout: Duration) -> Self {
        PrometheusClient {
            address: address.trim_end_matches('/').to_string(),
            http,
            timeout,
        }
    }

    /// Runs an instant query that must produce one number. No series is `NoData`; several series
    /// or a non-number is an error that names the query.
    pub async fn query_number(
        &self,
        promql: &str,
        workload: &str,
        window: u64,
    ) -> Result<f64, MetricError> {
        let failed = |reason: String| MetricError::Provider {
            provider: "prometheus",
            reason: format!("{} ({reason})", self.address),
        };
        let answer: ApiAnswer = self
            .http
            .get(format!("{}/api/v1/query", self.address))
            .timeout(self.timeout)
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| failed(format!("unreachable: {e}")))?
            .json()
            .await
            .map_err(|e| failed(format!("unreadable answer: {e}")))?;
        if answer.status != "success" {
            return Err(failed(format!(
                "query {promql:?} refused: {}",
                answer.error.unwrap_or_default()
            )));
        }
        let data = answer
            .data
            .ok_or_else(|| failed("answer without data".into()))?;
        let value = match data.result_type.as_str() {
            "scalar" => data.result.get(1).cloned(),
            "vector" => {
                let samples = data.result.as_array().cloned().unwrap_or_default();
                match samples.len() {
                    0 => None,
                    1 => samples[0].get("value").and_then(|v| v.get(1)).cloned(),
                    n => {
                        return Err(failed(format!(
                            "query {promql:?} returned {n} series; it must return one number"
                        )))
                    }
                }
            }
            other => {
                return Err(failed(format!(
                    "query {promql:?} returned a {other}; it must return one number"
                )))
            }
        };
        let Some(value) = value else {
            return Err(MetricError::NoData {
                workload: workload.to_string(),
                window,
            });
        };
        let number: f64 = value
            .as_str()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| failed(format!("query {promql:?} returned {value}, not a number")))?;
        // 0/0 over an idle window is NaN: there was no traffic, which is not a pass.
        if number.is_nan() {
            return Err(MetricError::NoData {
                workload: workload.to_string(),
                window,
            });
        }
        Ok(number)
    }
}

/// Built-in checks for one workload, answered by Prometheus.
pub struct MeshProvider {
    pub prometheus: PrometheusClient,
    pub mesh: MeshTelemetry,
    pub workload: WorkloadRef,
}

/// A window as PromQL writes it (`90s`), from a duration.
pub fn promql_window(window: Duration) -> String {
    format!("{}s", window.as_secs().max(1))
}

impl MetricProvider for MeshProvider {
    fn measure<'a>(&'a self, query: &'a MetricQuery) -> BoxFuture<'a, Result<f64, MetricError>> {
        Box::pin(async move {
            let window = promql_window(query.window);
            let promql = self
                .mesh
                .builtin_query(&query.name, &self.workload, &window)
                .ok_or_else(|| MetricError::Unsupported(query.name.clone(), "prometheus"))?;
            self.prometheus
                .query_number(&promql, &self.workload.name, query.window.as_secs())
                .await
        })
    }
}
