//! The Prometheus HTTP API provider, and the built-in checks written as PromQL over each mesh's
//! own proxy telemetry.

mod answer;
mod builtins;
mod connection;

use std::time::Duration;

use futures::future::BoxFuture;

use super::{MetricError, MetricProvider, MetricQuery};

pub use answer::{instant_number, range_histogram, range_values};
pub use builtins::{MeshTelemetry, WorkloadRef};
pub use connection::{template_headers, Auth, Connection, ConnectionError};

/// Attempts per query when the transport fails (connection refused or reset); an answer from
/// Prometheus, even an error, is not retried.
const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// A Prometheus server reached over its HTTP API.
#[derive(Clone)]
pub struct PrometheusClient {
    address: String,
    http: reqwest::Client,
    timeout: Duration,
    auth: Auth,
    headers: Vec<(String, String)>,
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
            auth: Auth::None,
            headers: Vec::new(),
        }
    }

    /// Sends these headers with every query (a MetricTemplate's `provider.headers`).
    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers = headers;
        self
    }

    /// Sends these credentials with every query.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    fn failed(&self, reason: String) -> MetricError {
        MetricError::Provider {
            provider: "prometheus",
            reason: format!("{} ({reason})", self.address),
        }
    }

    /// One API call, retried on transport errors within the timeout.
    async fn call(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<u8>, MetricError> {
        let started = std::time::Instant::now();
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let mut request = self
                .http
                .get(format!("{}{path}", self.address))
                .timeout(
                    self.timeout
                        .saturating_sub(started.elapsed())
                        .max(Duration::from_millis(100)),
                )
                .query(params);
            request = match &self.auth {
                Auth::None => request,
                Auth::Bearer(token) => request.bearer_auth(token),
                Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
            };
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            let sent = std::time::Instant::now();
            let answer = request.send().await;
            crate::latency::QUERIES.observe(sent.elapsed());
            match answer {
                Ok(response) => break response,
                Err(error)
                    if attempt < ATTEMPTS
                        && !error.is_timeout()
                        && started.elapsed() + RETRY_PAUSE < self.timeout =>
                {
                    tracing::debug!(address = %self.address, attempt, %error, "Prometheus unreachable; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) => {
                    return Err(
                        self.failed(format!("unreachable after {attempt} attempts: {error}"))
                    )
                }
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(self.failed(format!("refused the credentials: HTTP {status}")));
        }
        let body = crate::http_client::read_limited(response, crate::http_client::MAX_BODY)
            .await
            .map_err(|e| self.failed(format!("unreadable answer (HTTP {status}): {e}")))?;
        Ok(body)
    }

    /// A range query of a histogram by `le`: its buckets at each `step` between `start` and
    /// `end` (Unix seconds), by timestamp in Unix milliseconds.
    pub async fn query_range_histogram(
        &self,
        promql: &str,
        (start, end): (f64, f64),
        step: Duration,
    ) -> Result<std::collections::BTreeMap<i64, Vec<(f64, f64)>>, MetricError> {
        let body = self.range_body(promql, (start, end), step).await?;
        range_histogram(&body, promql).map_err(|reason| self.failed(reason))
    }

    async fn range_body(
        &self,
        promql: &str,
        (start, end): (f64, f64),
        step: Duration,
    ) -> Result<Vec<u8>, MetricError> {
        let params = [
            ("query", promql.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            // A bare number of seconds: Prometheus refuses fractional durations such as 2.5s.
            ("step", format!("{:.3}", step.as_secs_f64().max(0.001))),
        ];
        self.call("/api/v1/query_range", &params).await
    }

    /// A range query: the values of a one-series expression at each `step` between `start` and
    /// `end` (Unix seconds). No series is an empty list.
    pub async fn query_range(
        &self,
        promql: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<(f64, f64)>, MetricError> {
        let body = self.range_body(promql, (start, end), step).await?;
        range_values(&body, promql).map_err(|reason| self.failed(reason))
    }

    /// Runs an instant query that must produce one number. No series is `NoData`; several series
    /// or a non-number is an error that names the query.
    pub async fn query_number(
        &self,
        promql: &str,
        workload: &str,
        window: u64,
    ) -> Result<f64, MetricError> {
        self.query_number_at(promql, (workload, window), None).await
    }

    /// [`Self::query_number`] evaluated at `at` (Unix seconds), or now.
    pub async fn query_number_at(
        &self,
        promql: &str,
        (workload, window): (&str, u64),
        at: Option<f64>,
    ) -> Result<f64, MetricError> {
        let mut params = vec![("query", promql.to_string())];
        if let Some(at) = at {
            params.push(("time", format!("{at:.3}")));
        }
        let body = self.call("/api/v1/query", &params).await?;
        match instant_number(&body, promql) {
            Ok(Some(number)) => Ok(number),
            Ok(None) => Err(MetricError::NoData {
                workload: workload.to_string(),
                window,
            }),
            Err(reason) => Err(self.failed(reason)),
        }
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
    if window.subsec_millis() == 0 {
        format!("{}s", window.as_secs().max(1))
    } else {
        format!("{}ms", window.as_millis().max(1))
    }
}

impl MetricProvider for MeshProvider {
    fn measure<'a>(&'a self, query: &'a MetricQuery) -> BoxFuture<'a, Result<f64, MetricError>> {
        Box::pin(async move {
            let window = promql_window(query.window);
            let promql = self
                .mesh
                .builtin_query(&query.name, &self.workload, &window)
                .ok_or_else(|| MetricError::Unsupported(query.name.clone(), "prometheus"))?;
            let value = self
                .prometheus
                .query_number(&promql, &self.workload.name, query.window.as_secs())
                .await?;
            if let Some(min) = query.min_samples {
                let count = self
                    .prometheus
                    .query_number(
                        &self.mesh.request_count(&self.workload, &window),
                        &self.workload.name,
                        query.window.as_secs(),
                    )
                    .await?;
                if count < min as f64 {
                    return Err(MetricError::TooFewSamples {
                        workload: self.workload.name.clone(),
                        count: count.round() as u64,
                        min,
                        window: query.window.as_secs(),
                    });
                }
            }
            Ok(value)
        })
    }
}
