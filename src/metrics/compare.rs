//! What the comparative judge needs from Prometheus: the same measurement of the canary and the
//! primary over the same window — request and error counts for the success rate, values over
//! the sub-intervals of [`crate::judge::sampling`] for anything else.

use std::collections::BTreeMap;
use std::time::Duration;

use super::prometheus::{promql_window, MeshTelemetry, PrometheusClient, WorkloadRef};
use super::MetricError;
use crate::api::{BUILTIN_DURATION, BUILTIN_SUCCESS_RATE};
use crate::engine::Comparison;
use crate::judge::histogram::merged_pairs;
use crate::judge::sampling::{Looks, SamplingModel};
use crate::judge::{Counts, Pair};

/// The two workloads compared.
pub struct Sides<'a> {
    pub canary: &'a WorkloadRef,
    pub primary: &'a WorkloadRef,
}

/// The requests and errors of `workload` since the last look (see [`SampleSpan::counting`]).
async fn counts(
    prometheus: &PrometheusClient,
    mesh: MeshTelemetry,
    workload: &WorkloadRef,
    span: &SampleSpan,
) -> Result<Counts, MetricError> {
    let (counted, range, at) = span.counting();
    let window = promql_window(range);
    let seconds = counted.as_secs();
    let at = Some(at as f64 / 1000.0);
    let zero_when_idle = |result: Result<f64, MetricError>| match result {
        Err(MetricError::NoData { .. }) => Ok(0.0),
        other => other,
    };
    let query = |promql: String| async move {
        let answer = prometheus
            .query_number_at(&promql, (&workload.name, seconds), at)
            .await;
        zero_when_idle(answer)
    };
    let requests = query(mesh.request_count(workload, &window)).await?;
    let errors = query(mesh.error_count(workload, &window)).await?;
    // increase() stretches the change between the window's first and last scrape to the
    // window's edges; the change itself is what happened over `counted`.
    let unstretch = counted.as_secs_f64() / range.as_secs_f64();
    Ok(Counts {
        requests: requests * unstretch,
        errors: errors.max(0.0) * unstretch,
    })
}

/// Values of `query` at the end of each sub-interval of `looks`, by end (Unix ms). A side
/// without traffic in a sub-interval has no value there (`NaN` from `histogram_quantile`).
async fn samples(
    prometheus: &PrometheusClient,
    query: &str,
    looks: &Looks,
) -> Result<BTreeMap<i64, f64>, MetricError> {
    let (start, end) = looks.range_seconds();
    let points = prometheus
        .query_range(query, start, end, looks.step_duration())
        .await?;
    Ok(points
        .into_iter()
        .filter(|(_, value)| value.is_finite())
        .map(|(at, value)| ((at * 1000.0).round() as i64, value))
        .collect())
}

/// The P99s of both sides from their latency histograms over the sub-intervals of `looks`,
/// merged until the canary has enough requests and read by [`merged_pairs`] (PromQL's linear
/// reading would hide most of a tail's change).
async fn histogram_pairs(
    prometheus: &PrometheusClient,
    (canary, primary): (&str, &str),
    looks: &Looks,
) -> Result<Comparison, MetricError> {
    let (range, step) = (looks.range_seconds(), looks.step_duration());
    let canary = prometheus
        .query_range_histogram(canary, range, step)
        .await?;
    let primary = prometheus
        .query_range_histogram(primary, range, step)
        .await?;
    // rate() is per second; over a sub-interval it is that many seconds' requests.
    let per = step.as_secs_f64();
    let start = looks.first_end - looks.step;
    let (pairs, through) = merged_pairs(looks.ends(), (&canary, &primary), per, start);
    Ok(Comparison::Samples {
        pairs,
        through: Some(through),
        medians: true,
    })
}

/// How the sides' values are read: a one-series query each, or their histograms' P99s.
#[derive(Clone, Copy)]
enum Read {
    Values,
    HistogramP99,
}

/// Both sides over the same sub-intervals, paired where both have a value.
async fn paired(
    prometheus: &PrometheusClient,
    (canary, primary, read): (&str, &str, Read),
    looks: Option<Looks>,
    sampled_until: Option<i64>,
) -> Result<Comparison, MetricError> {
    let Some(looks) = looks else {
        // Nothing new to sample since the last look: the test stays where it is.
        return Ok(Comparison::Samples {
            pairs: Vec::new(),
            through: sampled_until,
            medians: matches!(read, Read::HistogramP99),
        });
    };
    if let Read::HistogramP99 = read {
        return histogram_pairs(prometheus, (canary, primary), &looks).await;
    }
    let canary = samples(prometheus, canary, &looks).await?;
    let primary = samples(prometheus, primary, &looks).await?;
    // Only the grid's own instants: a server's other timestamps are no sub-interval.
    let on_grid: std::collections::BTreeSet<i64> = looks.ends().collect();
    let pairs = canary
        .iter()
        .filter(|(end, _)| on_grid.contains(end))
        .filter_map(|(end, c)| {
            primary.get(end).map(|p| Pair {
                end: *end,
                canary: *c,
                primary: *p,
                medians: Vec::new(),
            })
        })
        .collect();
    Ok(Comparison::Samples {
        pairs,
        through: Some(looks.last_end),
        medians: false,
    })
}

/// Where a metric's samples are taken this look.
#[derive(Debug, Clone, Copy)]
pub struct SampleSpan {
    pub model: SamplingModel,
    pub analysis_interval: Duration,
    /// The end of the last sub-interval the metric's test counted (from the status).
    pub sampled_until: Option<i64>,
    /// The end of the last counts the metric's test added (from the status).
    pub counted_until: Option<i64>,
    /// Unix milliseconds.
    pub now: i64,
}

impl SampleSpan {
    /// What the success rate counts this look: the time since the counts last counted (one
    /// analysis interval at the first look, at most ten), the range that covers it with the
    /// scrape on either side, and the instant (Unix ms) it ends. Consecutive looks tile time
    /// as the sub-intervals do, as long as no look comes ten intervals after the last.
    fn counting(&self) -> (Duration, Duration, i64) {
        let since = self.counted_until.map_or(self.analysis_interval, |until| {
            Duration::from_millis(self.now.saturating_sub(until).max(0).unsigned_abs())
        });
        // The window reaches one scrape before the span, so even a span shorter than a scrape
        // counts only what happened in it.
        let counted = since.clamp(Duration::from_secs(1), self.analysis_interval * 10);
        (counted, self.model.query_window(counted), self.now)
    }

    fn sub_interval(&self) -> Duration {
        self.model.sub_interval(self.analysis_interval)
    }

    /// The range window of each sample, as PromQL.
    fn window(&self) -> String {
        promql_window(self.model.query_window(self.sub_interval()))
    }

    fn looks(&self) -> Option<Looks> {
        let lookback = self.analysis_interval;
        let sub = self.sub_interval();
        self.model
            .pending(sub, self.sampled_until, self.now, lookback)
    }
}

/// The comparison of a built-in check: counts since the last look for the success rate (each
/// look adds to the sequential test, so what they count must not overlap), P99 per
/// sub-interval (from the histogram) for the latency.
pub async fn builtin(
    prometheus: &PrometheusClient,
    mesh: MeshTelemetry,
    check: &str,
    sides: Sides<'_>,
    span: SampleSpan,
) -> Result<Option<Comparison>, MetricError> {
    match check {
        BUILTIN_SUCCESS_RATE => Ok(Some(Comparison::Counts {
            canary: counts(prometheus, mesh, sides.canary, &span).await?,
            primary: counts(prometheus, mesh, sides.primary, &span).await?,
            through: span.now,
        })),
        BUILTIN_DURATION => {
            let window = span.window();
            let canary = mesh.latency_histogram(sides.canary, &window);
            let primary = mesh.latency_histogram(sides.primary, &window);
            let queries = (canary.as_str(), primary.as_str(), Read::HistogramP99);
            Ok(Some(
                paired(prometheus, queries, span.looks(), span.sampled_until).await?,
            ))
        }
        _ => Ok(None),
    }
}

/// The comparison of a template metric: its query and the primary's, rendered with
/// `{{ interval }}` as one sample's window.
pub async fn templated(
    prometheus: &PrometheusClient,
    canary_query: &str,
    primary_query: &str,
    span: SampleSpan,
) -> Result<Comparison, MetricError> {
    let queries = (canary_query, primary_query, Read::Values);
    paired(prometheus, queries, span.looks(), span.sampled_until).await
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
    pub sampling: SamplingModel,
    /// Per metric, the end of the last sub-interval (then of the counts) its test counted,
    /// from the status.
    pub sampled_until: &'a BTreeMap<String, i64>,
    pub counted_until: &'a BTreeMap<String, i64>,
    /// Unix milliseconds.
    pub now: i64,
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
            let span = SampleSpan {
                model: self.sampling,
                analysis_interval: self.analysis_interval,
                sampled_until: self.sampled_until.get(&metric.name).copied(),
                counted_until: self.counted_until.get(&metric.name).copied(),
                now: self.now,
            };
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
                            span,
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
                    builtin(self.prometheus, self.mesh, &metric.name, sides, span).await
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
    fn a_sample_window_is_its_sub_interval_and_one_scrape() {
        let span = SampleSpan {
            model: SamplingModel {
                scrape_interval: Duration::from_secs(15),
            },
            analysis_interval: Duration::from_secs(60),
            sampled_until: None,
            counted_until: Some(50_000),
            now: 120_000,
        };
        let (counted, window, at) = span.counting();
        assert_eq!((counted.as_secs(), window.as_secs(), at), (70, 85, 120_000));
        assert_eq!(span.window(), "30s");
        let looks = span.looks().unwrap();
        assert_eq!((looks.first_end, looks.last_end), (75_000, 105_000));
        assert_eq!(promql_window(Duration::from_millis(2500)), "2500ms");
    }
}
