//! What the comparative judge needs from Prometheus: the same measurement of the canary and the
//! primary over the same window — request and error counts for the success rate, sub-interval
//! values for anything else.

use std::time::Duration;

use super::prometheus::{promql_window, MeshTelemetry, PrometheusClient, WorkloadRef};
use super::MetricError;
use crate::api::{BUILTIN_DURATION, BUILTIN_SUCCESS_RATE};
use crate::engine::Comparison;
use crate::judge::Counts;

/// Samples per side for the Mann–Whitney test.
pub const SUB_INTERVALS: u32 = 12;
/// The shortest sub-interval: `rate()` needs at least two scrapes inside it, so this assumes a
/// scrape interval of 15s or less (Prometheus's default is 1m; meshes usually scrape at 15s).
const MIN_SUB_INTERVAL: Duration = Duration::from_secs(30);

/// The sub-interval a metric's window is sampled at: window/12, at least 30s. The lookback is
/// twelve of them, so a short window looks further back than itself rather than sampling
/// overlapping or empty windows.
pub fn sub_interval(window: Duration) -> Duration {
    (window / SUB_INTERVALS).max(MIN_SUB_INTERVAL)
}

/// The two workloads compared.
pub struct Sides<'a> {
    pub canary: &'a WorkloadRef,
    pub primary: &'a WorkloadRef,
}

async fn counts(
    prometheus: &PrometheusClient,
    mesh: MeshTelemetry,
    workload: &WorkloadRef,
    window: &str,
    seconds: u64,
) -> Result<Counts, MetricError> {
    let zero_when_idle = |result: Result<f64, MetricError>| match result {
        Err(MetricError::NoData { .. }) => Ok(0.0),
        other => other,
    };
    let requests = zero_when_idle(
        prometheus
            .query_number(
                &mesh.request_count(workload, window),
                &workload.name,
                seconds,
            )
            .await,
    )?;
    let errors = zero_when_idle(
        prometheus
            .query_number(&mesh.error_count(workload, window), &workload.name, seconds)
            .await,
    )?;
    Ok(Counts {
        requests,
        errors: errors.max(0.0),
    })
}

/// Values of `query` at each sub-interval of the last `window`.
async fn samples(
    prometheus: &PrometheusClient,
    query: &str,
    window: Duration,
) -> Result<Vec<f64>, MetricError> {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let step = sub_interval(window);
    let start = end - (step * (SUB_INTERVALS - 1)).as_secs_f64();
    let points = prometheus.query_range(query, start, end, step).await?;
    Ok(points.into_iter().map(|(_, value)| value).collect())
}

/// The comparison of a built-in check: counts over the analysis interval for the success rate
/// (each interval adds to the sequential test, so windows must not overlap), P99 per
/// sub-interval of the metric's window for the latency.
pub async fn builtin(
    prometheus: &PrometheusClient,
    mesh: MeshTelemetry,
    check: &str,
    sides: Sides<'_>,
    analysis_interval: Duration,
    window: Duration,
) -> Result<Option<Comparison>, MetricError> {
    match check {
        BUILTIN_SUCCESS_RATE => {
            let span = promql_window(analysis_interval);
            let seconds = analysis_interval.as_secs();
            Ok(Some(Comparison::Counts {
                canary: counts(prometheus, mesh, sides.canary, &span, seconds).await?,
                primary: counts(prometheus, mesh, sides.primary, &span, seconds).await?,
            }))
        }
        BUILTIN_DURATION => {
            let step = promql_window(sub_interval(window));
            let canary = mesh.latency_quantile(0.99, sides.canary, &step);
            let primary = mesh.latency_quantile(0.99, sides.primary, &step);
            Ok(Some(Comparison::Samples {
                canary: samples(prometheus, &canary, window).await?,
                primary: samples(prometheus, &primary, window).await?,
            }))
        }
        _ => Ok(None),
    }
}

/// The comparison of a template metric: its query and the primary's rendered with
/// `{{ interval }}` as the sub-interval, so the samples do not overlap.
pub async fn templated(
    prometheus: &PrometheusClient,
    canary_query: &str,
    primary_query: &str,
    window: Duration,
) -> Result<Comparison, MetricError> {
    Ok(Comparison::Samples {
        canary: samples(prometheus, canary_query, window).await?,
        primary: samples(prometheus, primary_query, window).await?,
    })
}

/// Where comparisons are measured: the built-ins' Prometheus and telemetry, and the resolved
/// template queries.
pub struct Comparer<'a> {
    pub prometheus: &'a PrometheusClient,
    pub mesh: MeshTelemetry,
    pub sides: Sides<'a>,
    pub resolved: &'a [(String, super::templates::Resolution)],
    pub pool: &'a super::templates::PrometheusPool,
    pub timeout: Duration,
    pub analysis_interval: Duration,
}

impl Comparer<'_> {
    /// Adds both sides to every measured `compare: primary` metric; a side that cannot be
    /// measured makes the metric's value a provider failure (the step holds, never passes).
    pub async fn add_to(
        &self,
        plan: &crate::plan::Plan,
        outcomes: &mut [crate::engine::MetricOutcome],
    ) {
        let compared = plan.analysis.metrics.iter().filter(|m| m.judge.is_some());
        for metric in compared {
            let Some(outcome) = outcomes.iter_mut().find(|o| o.name == metric.name) else {
                continue;
            };
            if outcome.value.is_err() {
                continue;
            }
            let resolution = self
                .resolved
                .iter()
                .find(|(name, _)| *name == metric.name)
                .map(|(_, r)| r);
            let comparison = match resolution {
                Some(super::templates::Resolution::Query(query)) => {
                    match self.pool.client(&query.connection, self.timeout) {
                        Ok(client) => templated(
                            &client,
                            query.canary_samples.as_deref().unwrap_or_default(),
                            query.primary_samples.as_deref().unwrap_or_default(),
                            metric.window,
                        )
                        .await
                        .map(Some),
                        Err(error) => Err(error),
                    }
                }
                _ => {
                    let sides = Sides {
                        canary: self.sides.canary,
                        primary: self.sides.primary,
                    };
                    builtin(
                        self.prometheus,
                        self.mesh,
                        &metric.name,
                        sides,
                        self.analysis_interval,
                        metric.window,
                    )
                    .await
                }
            };
            match comparison {
                Ok(comparison) => outcome.comparison = comparison,
                Err(error) => {
                    outcome.value = Err(crate::engine::Unmeasured::ProviderDown(format!(
                        "comparing with the primary: {error}"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_intervals_leave_room_for_two_scrapes() {
        assert_eq!(
            sub_interval(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(
            sub_interval(Duration::from_secs(600)),
            Duration::from_secs(50)
        );
        assert_eq!(promql_window(Duration::from_millis(2500)), "2500ms");
        assert_eq!(promql_window(Duration::from_secs(30)), "30s");
    }
}
