//! Driving the pure engine: answering its `Need`s until it decides. The standalone runner and the
//! Kubernetes controller differ only in where hook outcomes and metric values come from.

use futures::future::BoxFuture;
use jiff::Timestamp;

use crate::api::{CanarySpec, CanaryStatus, CanaryWebhook, HookType};
use crate::engine::{
    self, Decision, HookOutcome, Input, MetricOutcome, Need, Observations, Step, Unmeasured,
};
use crate::metrics::{MetricError, MetricProvider, MetricQuery};

/// Where the engine's lazily requested observations come from.
pub trait Gatherer: Sync {
    fn hooks(&self, kind: HookType) -> BoxFuture<'_, Vec<HookOutcome>>;
    fn metrics(&self) -> BoxFuture<'_, Vec<MetricOutcome>>;
}

/// Calls the engine until it decides; returns the decision and the metric values it used.
pub async fn decide(
    name: &str,
    spec: &CanarySpec,
    status: &CanaryStatus,
    mut observations: Observations,
    now: Timestamp,
    gatherer: &dyn Gatherer,
) -> (Decision, Vec<MetricOutcome>) {
    loop {
        let input = Input {
            name,
            spec,
            status,
            observations: &observations,
            now,
        };
        match engine::decide(input) {
            Step::Decided(decision) => {
                return (*decision, observations.metrics.unwrap_or_default())
            }
            Step::Need(Need::Hooks(kind)) => {
                let outcomes = gatherer.hooks(kind).await;
                observations.hooks.insert(kind, outcomes);
            }
            Step::Need(Need::Metrics) => observations.metrics = Some(gatherer.metrics().await),
        }
    }
}

/// Every metric of the spec measured by `provider` over its own interval.
pub async fn measure_all(spec: &CanarySpec, provider: &dyn MetricProvider) -> Vec<MetricOutcome> {
    let mut outcomes = Vec::new();
    for metric in spec.analysis.iter().flat_map(|a| a.metrics.iter()) {
        let query = MetricQuery {
            name: metric.name.clone(),
            window: metric.interval(),
            min_samples: metric.min_samples,
        };
        let value = provider.measure(&query).await.map_err(|error| {
            let reason = error.to_string();
            match error {
                MetricError::NoData { .. } | MetricError::TooFewSamples { .. } => {
                    Unmeasured::NoData(reason)
                }
                MetricError::Provider { .. } => Unmeasured::ProviderDown(reason),
                MetricError::Unreachable { .. } | MetricError::Unsupported(..) => {
                    Unmeasured::Failed(reason)
                }
            }
        });
        outcomes.push(MetricOutcome {
            name: metric.name.clone(),
            value,
            comparison: None,
        });
    }
    outcomes
}

/// The webhooks a spec declares (empty without an analysis block).
pub fn webhooks(spec: &CanarySpec) -> &[CanaryWebhook] {
    spec.analysis
        .as_ref()
        .map(|a| a.webhooks.as_slice())
        .unwrap_or_default()
}
