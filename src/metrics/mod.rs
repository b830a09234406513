//! Metric providers: where the numbers that judge a step come from.
//!
//! Every provider answers the same question — the value of one check for one workload over one
//! window — so the engine never knows whether it came from Prometheus or a direct scrape.

pub mod compare;
pub mod prometheus;
mod scrape;
mod snapshot;
pub mod templates;

use std::time::Duration;

use futures::future::BoxFuture;

pub use scrape::{ScrapeProvider, Workload};
pub use snapshot::{quantile_from_buckets, Dialect, Snapshot, WorkloadCounts};

/// What a check is asked about.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    /// The check's name: a built-in (`request-success-rate`, `request-duration`) or a template's.
    pub name: String,
    /// The window to measure over.
    pub window: Duration,
    /// Fewer requests than this over the window is no data (`minSamples`).
    pub min_samples: Option<u64>,
}

/// Why a check has no value. Never a pass.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("no traffic reached {workload} in the last {window}s")]
    NoData { workload: String, window: u64 },
    #[error("only {count} requests reached {workload} in the last {window}s; minSamples is {min}")]
    TooFewSamples {
        workload: String,
        count: u64,
        min: u64,
        window: u64,
    },
    #[error("{upstream} upstream {address} refused or dropped {failed} of {total} requests in the last {window}s")]
    Unreachable {
        upstream: String,
        address: String,
        failed: u64,
        total: u64,
        window: u64,
    },
    #[error("metric {0} is not supported by the {1} provider")]
    Unsupported(String, &'static str),
    #[error("{provider} provider failed: {reason}")]
    Provider {
        provider: &'static str,
        reason: String,
    },
}

/// A source of metric values.
pub trait MetricProvider: Send + Sync {
    fn measure<'a>(&'a self, query: &'a MetricQuery) -> BoxFuture<'a, Result<f64, MetricError>>;
}
