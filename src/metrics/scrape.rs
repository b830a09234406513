//! Direct scrape of proxy telemetry (the embedded gateway's or Envoy's `/metrics`): keeps a short
//! history of snapshots and answers the built-in checks from the deltas over the metric window.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use super::snapshot::{quantile_from_buckets, Dialect, Snapshot, WorkloadCounts};
use super::{MetricError, MetricProvider, MetricQuery};
use crate::api::{BUILTIN_DURATION, BUILTIN_SUCCESS_RATE};

/// How many snapshots are kept; with one scrape a second that covers well over any window used.
const HISTORY: usize = 900;

/// A workload the provider judges, with the address shown in messages.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Name in the telemetry (`canary`, or an Envoy cluster name).
    pub name: String,
    /// Where it listens, for "refused connections" messages.
    pub address: String,
}

pub struct ScrapeProvider {
    url: String,
    dialect: Dialect,
    canary: Workload,
    primary: Workload,
    client: reqwest::Client,
    history: Mutex<VecDeque<(Instant, Snapshot)>>,
}

impl ScrapeProvider {
    pub fn new(url: String, dialect: Dialect, primary: Workload, canary: Workload) -> Self {
        ScrapeProvider {
            url,
            dialect,
            canary,
            primary,
            client: crate::http_client::client(Duration::from_secs(5)),
            history: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes one snapshot now.
    pub async fn scrape(&self) -> Result<(), MetricError> {
        let failed = |reason: String| MetricError::Provider {
            provider: "scrape",
            reason: format!("{}: {reason}", self.url),
        };
        let text = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(|response| response.error_for_status())
            .map_err(|e| failed(e.to_string()))?
            .text()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let snapshot = self
            .dialect
            .parse(&text)
            .map_err(|e| failed(e.to_string()))?;
        let mut history = self.history.lock();
        history.push_back((Instant::now(), snapshot));
        while history.len() > HISTORY {
            history.pop_front();
        }
        Ok(())
    }

    /// Scrapes every `period` until the provider is dropped.
    pub fn spawn_scraper(self: &Arc<Self>, period: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(provider) = weak.upgrade() else {
                    break;
                };
                if let Err(error) = provider.scrape().await {
                    tracing::warn!(%error, "telemetry scrape failed");
                }
            }
        });
    }

    /// What `workload` did over the last `window`, from the newest snapshot and the newest one
    /// at least `window` older (or the oldest one kept).
    fn window(&self, workload: &str, window: Duration) -> Option<WorkloadCounts> {
        let history = self.history.lock();
        let (latest_at, latest) = history.back()?;
        let start = latest_at.checked_sub(window).unwrap_or(*latest_at);
        let baseline = history
            .iter()
            .rev()
            .find(|(at, _)| *at <= start)
            .or_else(|| history.front())?;
        let now = latest.workloads.get(workload).cloned().unwrap_or_default();
        let before = baseline
            .1
            .workloads
            .get(workload)
            .cloned()
            .unwrap_or_default();
        Some(now.since(&before))
    }

    fn unreachable(&self, workload: &Workload, window: Duration) -> Option<MetricError> {
        let counts = self.window(&workload.name, window)?;
        (counts.connect_errors > 0.0).then(|| MetricError::Unreachable {
            upstream: workload.name.clone(),
            address: workload.address.clone(),
            failed: counts.connect_errors as u64,
            total: counts.total as u64,
            window: window.as_secs(),
        })
    }

    async fn evaluate(&self, query: &MetricQuery) -> Result<f64, MetricError> {
        self.scrape().await?;
        // An upstream that refuses connections is never a pass, whatever the ratio says.
        for workload in [&self.canary, &self.primary] {
            if let Some(error) = self.unreachable(workload, query.window) {
                return Err(error);
            }
        }
        let no_data = || MetricError::NoData {
            workload: self.canary.name.clone(),
            window: query.window.as_secs(),
        };
        let counts = self
            .window(&self.canary.name, query.window)
            .ok_or_else(no_data)?;
        if counts.total <= 0.0 {
            return Err(no_data());
        }
        if let Some(min) = query.min_samples {
            if counts.total < min as f64 {
                return Err(MetricError::TooFewSamples {
                    workload: self.canary.name.clone(),
                    count: counts.total as u64,
                    min,
                    window: query.window.as_secs(),
                });
            }
        }
        match query.name.as_str() {
            BUILTIN_SUCCESS_RATE => {
                Ok(100.0 * (counts.total - counts.server_errors) / counts.total)
            }
            BUILTIN_DURATION => quantile_from_buckets(0.99, &counts.buckets).ok_or_else(no_data),
            other => Err(MetricError::Unsupported(other.to_string(), "scrape")),
        }
    }
}

impl MetricProvider for ScrapeProvider {
    fn measure<'a>(&'a self, query: &'a MetricQuery) -> BoxFuture<'a, Result<f64, MetricError>> {
        Box::pin(self.evaluate(query))
    }
}
