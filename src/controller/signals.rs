//! The controller's own Prometheus metrics, exposed through the process's one registry: each
//! under Aviary's `aviary_` names, keyed by the Canary, and again under Flagger's `flagger_`
//! names and labels ([`super::flagger_signals`]), so Flagger's dashboards and alerts work.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::api::CanaryPhase;
use prometheus_client::encoding::DescriptorEncoder;

use super::flagger_signals::{totals_by_namespace, Durations, FlaggerSeries};
use crate::exposition::{self, Collector, Histogram, Labels, Registry};
use crate::plan::Strategy;

#[derive(Debug, Default)]
struct Series {
    status: BTreeMap<(String, String), i64>,
    weight: BTreeMap<(String, String), i64>,
    analysis: BTreeMap<(String, String, String), f64>,
    successes: BTreeMap<(String, String), u64>,
    failures: BTreeMap<(String, String), u64>,
    durations: Durations,
    reconcile_errors: BTreeMap<&'static str, u64>,
    flagger: FlaggerSeries,
}

/// What the registry's collector reads on scrape.
#[derive(Debug)]
struct State {
    version: String,
    mesh: String,
    series: Mutex<Series>,
    queue: Arc<super::queue::ReconcileQueue>,
}

/// The controller's metrics: cheap to update, rendered on scrape.
pub struct ControllerMetrics {
    state: Arc<State>,
    registry: Registry,
}

impl ControllerMetrics {
    pub fn new(mesh: &str) -> Self {
        let state = Arc::new(State {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mesh: mesh.to_string(),
            series: Mutex::default(),
            queue: Arc::new(super::queue::ReconcileQueue::new(
                super::RECONCILE_CONCURRENCY,
            )),
        });
        ControllerMetrics {
            registry: exposition::registry_of(state.clone()),
            state,
        }
    }

    /// Where every reconcile waits for its turn.
    pub fn queue(&self) -> &super::queue::ReconcileQueue {
        &self.state.queue
    }

    fn series(&self) -> parking_lot::MutexGuard<'_, Series> {
        self.state.series.lock()
    }

    /// Records the state of one canary after a reconcile.
    pub fn observe(
        &self,
        name: &str,
        namespace: &str,
        target: &str,
        phase: CanaryPhase,
        weight: i32,
    ) {
        let code = match phase {
            CanaryPhase::Succeeded | CanaryPhase::Initialized => 1,
            CanaryPhase::Failed => 2,
            _ => 0,
        };
        let mut series = self.series();
        series.status.insert((name.into(), namespace.into()), code);
        series
            .weight
            .insert((target.into(), namespace.into()), i64::from(weight));
        series.flagger.observe(target, namespace, phase, weight);
    }

    fn analysis(&self, (name, target): (&str, &str), namespace: &str, metric: &str, value: f64) {
        let mut series = self.series();
        let key = (name.into(), namespace.into(), metric.into());
        series.analysis.insert(key, value);
        series.flagger.analysis(target, namespace, metric, value);
    }

    fn outcome(
        &self,
        (name, target): (&str, &str),
        namespace: &str,
        strategy: Option<Strategy>,
        promoted: bool,
    ) {
        let mut series = self.series();
        series
            .flagger
            .outcome((target, namespace), strategy, promoted);
        let map = if promoted {
            &mut series.successes
        } else {
            &mut series.failures
        };
        *map.entry((name.into(), namespace.into())).or_default() += 1;
    }

    /// How long one reconcile of `canary` took.
    pub fn step_duration(&self, canary: &crate::api::Canary, seconds: f64) {
        let namespace = canary.metadata.namespace.as_deref().unwrap_or_default();
        let mut series = self.series();
        let target = &canary.spec.target_ref.name;
        series.flagger.duration(target, namespace, seconds);
        series.durations.observe(seconds);
    }

    /// Counts a failed reconcile by its kind of error.
    pub fn reconcile_error(&self, kind: &'static str) {
        *self.series().reconcile_errors.entry(kind).or_default() += 1;
    }

    /// Drops every series of a deleted canary, so `/metrics` holds only canaries that exist.
    pub fn forget(&self, who: &super::per_canary::Identity) {
        self.forget_target(&who.target, &who.namespace);
        let (name, namespace) = (&who.name, &who.namespace);
        let mut series = self.series();
        let key = (name.clone(), namespace.clone());
        series.status.remove(&key);
        series.successes.remove(&key);
        series.failures.remove(&key);
        series
            .analysis
            .retain(|(n, ns, _), _| !(n == name && ns == namespace));
    }

    /// Drops the series kept by a target (as Flagger's `workload` label is) that no canary
    /// names any more.
    pub fn forget_target(&self, target: &str, namespace: &str) {
        let mut series = self.series();
        series.flagger.forget(target, namespace);
        series
            .weight
            .remove(&(target.to_string(), namespace.to_string()));
    }

    pub fn render(&self) -> String {
        exposition::render(&self.registry)
    }

    /// Everything one reconcile of `canary` tells: its state, its metric values, its outcome.
    /// `strategy` is its plan's, when the reconcile got as far as a plan.
    pub fn record(
        &self,
        (canary, strategy): (&crate::api::Canary, Option<Strategy>),
        before: &crate::api::CanaryStatus,
        after: &crate::api::CanaryStatus,
        metrics: &[crate::engine::MetricOutcome],
    ) {
        use kube::ResourceExt;
        let (name, namespace) = (canary.name_any(), canary.namespace().unwrap_or_default());
        let target = canary.spec.target_ref.name.as_str();
        for metric in metrics {
            if let Ok(value) = metric.value {
                self.analysis((&name, target), &namespace, &metric.name, value);
            }
        }
        self.observe(&name, &namespace, target, after.phase, after.canary_weight);
        if after.phase != before.phase {
            let promoted = match after.phase {
                CanaryPhase::Succeeded => true,
                CanaryPhase::Failed => false,
                _ => return,
            };
            self.outcome((&name, target), &namespace, strategy, promoted);
        }
    }
}

fn pair(name: &str, namespace: &str) -> Labels {
    vec![
        ("name", name.to_string()),
        ("namespace", namespace.to_string()),
    ]
}

impl State {
    /// What the controller is, and how many canaries each namespace has.
    fn encode_totals(&self, encoder: &mut DescriptorEncoder, series: &Series) -> std::fmt::Result {
        let info = vec![
            ("version", self.version.clone()),
            ("mesh_provider", self.mesh.clone()),
        ];
        let help = "The controller's version and mesh.";
        exposition::gauges(encoder, ("aviary_info", help), [(info.clone(), 1)])?;
        series.flagger.encode(encoder, info)?;
        let totals = totals_by_namespace(series.status.keys());
        exposition::gauges(
            encoder,
            ("aviary_canary_total", "Canaries by namespace."),
            totals,
        )
    }

    /// Each canary's status, weight and last metric values.
    fn encode_canaries(encoder: &mut DescriptorEncoder, series: &Series) -> std::fmt::Result {
        let status = series
            .status
            .iter()
            .map(|((n, ns), code)| (pair(n, ns), *code));
        let help = "0 running, 1 succeeded or initialized, 2 failed.";
        exposition::gauges(encoder, ("aviary_canary_status", help), status)?;
        let weight = series.weight.iter().map(|((workload, ns), w)| {
            let labels = vec![("workload", workload.clone()), ("namespace", ns.clone())];
            (labels, *w)
        });
        let help = "The canary's traffic weight.";
        exposition::gauges(encoder, ("aviary_canary_weight", help), weight)?;
        let analysis = series.analysis.iter().map(|((n, ns, metric), value)| {
            let mut labels = pair(n, ns);
            labels.push(("metric", metric.clone()));
            (labels, *value)
        });
        let help = "The last value of each metric check.";
        exposition::gauges(encoder, ("aviary_canary_metric_analysis", help), analysis)
    }

    /// Outcomes and how long reconciles take.
    fn encode_outcomes(
        &self,
        encoder: &mut DescriptorEncoder,
        series: &Series,
    ) -> std::fmt::Result {
        for (name, help, map) in [
            (
                "aviary_canary_successes_total",
                "Promotions.",
                &series.successes,
            ),
            (
                "aviary_canary_failures_total",
                "Rollbacks.",
                &series.failures,
            ),
        ] {
            let rows = map.iter().map(|((n, ns), count)| (pair(n, ns), *count));
            exposition::counters(encoder, (name, help), rows)?;
        }
        let help = "Time one reconcile took.";
        let rows = [(Labels::new(), series.durations.histogram())];
        exposition::histograms(encoder, ("aviary_canary_duration_seconds", help), rows)?;
        let errors = series.reconcile_errors.iter();
        let rows = errors.map(|(kind, count)| (vec![("error", kind.to_string())], *count));
        let help = "Reconciles that failed, by error.";
        exposition::counters(encoder, ("aviary_reconcile_errors_total", help), rows)?;
        let (waiting, running) = self.queue.depth();
        let help = "Reconciles due and waiting for one of the controller's places.";
        exposition::gauges(
            encoder,
            ("aviary_reconcile_queue_depth", help),
            [(Labels::new(), waiting)],
        )?;
        let help = "Reconciles running now.";
        exposition::gauges(
            encoder,
            ("aviary_reconciles_running", help),
            [(Labels::new(), running)],
        )?;
        Self::encode_latencies(encoder)?;
        Self::encode_heap(encoder)
    }

    /// The heap as the allocator keeps it: the bytes live objects hold, and the pages resident
    /// for them. A leak grows the first; fragmentation and pages not yet returned, the second.
    fn encode_heap(encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The statistics are a snapshot taken when the epoch advances.
        let _ = epoch::advance();
        for (name, help, read) in [
            (
                "aviary_heap_allocated_bytes",
                "Bytes held by live allocations.",
                stats::allocated::read as fn() -> tikv_jemalloc_ctl::Result<usize>,
            ),
            (
                "aviary_heap_resident_bytes",
                "Bytes of heap pages resident in memory.",
                stats::resident::read,
            ),
        ] {
            let bytes = read().map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX));
            exposition::gauges(encoder, (name, help), [(Labels::new(), bytes)])?;
        }
        Ok(())
    }

    /// How long webhook calls and metric queries take, process-wide.
    fn encode_latencies(encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        use crate::latency::{BOUNDS, QUERIES, WEBHOOKS};
        for (name, help, latency) in [
            (
                "aviary_webhook_duration_seconds",
                "Webhook calls, each attempt.",
                &WEBHOOKS,
            ),
            ("aviary_query_duration_seconds", "Metric queries.", &QUERIES),
        ] {
            let (counts, sum) = latency.snapshot();
            let histogram = Histogram {
                bounds: &BOUNDS,
                counts,
                sum,
            };
            exposition::histograms(encoder, (name, help), [(Labels::new(), histogram)])?;
        }
        Ok(())
    }
}

impl Collector for State {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let series = self.series.lock();
        self.encode_totals(&mut encoder, &series)?;
        State::encode_canaries(&mut encoder, &series)?;
        self.encode_outcomes(&mut encoder, &series)
    }
}
