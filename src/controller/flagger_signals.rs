//! The controller's metrics under Flagger's own names and labels, so that dashboards and alerts
//! written for Flagger read Aviary unchanged. Flagger keys its series by the target's name, not
//! the Canary's, reports the primary's weight beside the canary's, and counts outcomes by
//! deployment strategy and by whether the analysis ran; all of that is kept here.

use std::collections::BTreeMap;

use prometheus_client::encoding::DescriptorEncoder;

use crate::api::CanaryPhase;
use crate::exposition::{self, Histogram, Labels};
use crate::plan::Strategy;

/// Prometheus's default buckets, which Flagger's duration histogram uses.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// (target, namespace): Flagger's key for every per-canary series.
type Target = (String, String);

/// One duration histogram over [`DURATION_BUCKETS`] (the last count is the +Inf bucket).
#[derive(Debug, Default, Clone)]
pub struct Durations {
    counts: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
}

impl Durations {
    pub fn observe(&mut self, seconds: f64) {
        let slot = DURATION_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.counts[slot] += 1;
        self.sum += seconds;
    }

    pub fn histogram(&self) -> Histogram<'static> {
        Histogram {
            bounds: &DURATION_BUCKETS,
            counts: self.counts.to_vec(),
            sum: self.sum,
        }
    }
}

/// How many of `keys` fall in each namespace, as `canary_total` rows.
pub fn totals_by_namespace<'a>(
    keys: impl Iterator<Item = &'a (String, String)>,
) -> impl Iterator<Item = (Labels, i64)> {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for (_, namespace) in keys {
        *totals.entry(namespace.clone()).or_default() += 1;
    }
    totals
        .into_iter()
        .map(|(ns, n)| (vec![("namespace", ns)], n))
}

/// An outcome's labels beyond the target: `deployment_strategy` and `analysis_status`.
type OutcomeKey = (String, String, &'static str, &'static str);

#[derive(Debug, Default, Clone)]
pub struct FlaggerSeries {
    status: BTreeMap<Target, i64>,
    /// (workload, namespace): `<target>-primary` and `<target>`.
    weight: BTreeMap<Target, i64>,
    analysis: BTreeMap<(String, String, String), f64>,
    successes: BTreeMap<OutcomeKey, u64>,
    failures: BTreeMap<OutcomeKey, u64>,
    durations: BTreeMap<Target, Durations>,
}

/// Flagger's `deployment_strategy` and `analysis_status` values for a plan's strategy. A
/// skipped analysis is counted as a canary strategy, since the plan no longer says which
/// analysis was skipped.
pub fn outcome_labels(strategy: Option<Strategy>) -> (&'static str, &'static str) {
    match strategy {
        Some(Strategy::SkipAnalysis) => ("canary", "skipped"),
        Some(Strategy::BlueGreen) => ("blue-green", "completed"),
        Some(Strategy::AbTesting) => ("ab-testing", "completed"),
        Some(Strategy::Canary) | None => ("canary", "completed"),
    }
}

/// Flagger's status code: 0 while progressing, 2 once failed, 1 in every other phase.
fn status_code(phase: CanaryPhase) -> i64 {
    match phase {
        CanaryPhase::Progressing => 0,
        CanaryPhase::Failed => 2,
        _ => 1,
    }
}

impl FlaggerSeries {
    pub fn observe(&mut self, target: &str, namespace: &str, phase: CanaryPhase, weight: i32) {
        let key = (target.to_string(), namespace.to_string());
        self.status.insert(key.clone(), status_code(phase));
        let primary = (format!("{target}-primary"), namespace.to_string());
        self.weight.insert(primary, i64::from(100 - weight));
        self.weight.insert(key, i64::from(weight));
    }

    pub fn analysis(&mut self, target: &str, namespace: &str, metric: &str, value: f64) {
        let key = (target.into(), namespace.into(), metric.into());
        self.analysis.insert(key, value);
    }

    pub fn outcome(
        &mut self,
        (target, namespace): (&str, &str),
        strategy: Option<Strategy>,
        promoted: bool,
    ) {
        let (strategy, status) = outcome_labels(strategy);
        let map = if promoted {
            &mut self.successes
        } else {
            &mut self.failures
        };
        let key = (target.into(), namespace.into(), strategy, status);
        *map.entry(key).or_default() += 1;
    }

    pub fn duration(&mut self, target: &str, namespace: &str, seconds: f64) {
        let key = (target.to_string(), namespace.to_string());
        self.durations.entry(key).or_default().observe(seconds);
    }

    /// Drops a target's series once no canary of it remains.
    pub fn forget(&mut self, target: &str, namespace: &str) {
        let key = (target.to_string(), namespace.to_string());
        self.status.remove(&key);
        self.durations.remove(&key);
        self.weight.remove(&key);
        self.weight
            .remove(&(format!("{target}-primary"), namespace.to_string()));
        let same = |t: &String, ns: &String| t == target && ns == namespace;
        self.analysis.retain(|(t, ns, _), _| !same(t, ns));
        self.successes.retain(|(t, ns, _, _), _| !same(t, ns));
        self.failures.retain(|(t, ns, _, _), _| !same(t, ns));
    }

    pub fn encode(&self, encoder: &mut DescriptorEncoder, info: Labels) -> std::fmt::Result {
        let help = "Flagger-compatible: the controller's version and mesh provider.";
        exposition::gauges(encoder, ("flagger_info", help), [(info, 1)])?;
        let totals = totals_by_namespace(self.status.keys());
        let help = "Flagger-compatible: canaries by namespace.";
        exposition::gauges(encoder, ("flagger_canary_total", help), totals)?;
        self.encode_state(encoder)?;
        self.encode_outcomes(encoder)
    }

    fn encode_state(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        let status = self.status.iter().map(|(key, code)| (named(key), *code));
        let help = "Flagger-compatible: 0 running, 1 successful, 2 failed.";
        exposition::gauges(encoder, ("flagger_canary_status", help), status)?;
        let weight = self.weight.iter().map(|((workload, ns), w)| {
            let labels = vec![("workload", workload.clone()), ("namespace", ns.clone())];
            (labels, *w)
        });
        let help = "Flagger-compatible: the primary's and the canary's traffic weight.";
        exposition::gauges(encoder, ("flagger_canary_weight", help), weight)?;
        let analysis = self.analysis.iter().map(|((t, ns, metric), value)| {
            let mut labels = named(&(t.clone(), ns.clone()));
            labels.push(("metric", metric.clone()));
            (labels, *value)
        });
        let help = "Flagger-compatible: the last value of each metric check.";
        exposition::gauges(encoder, ("flagger_canary_metric_analysis", help), analysis)
    }

    fn encode_outcomes(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        for (name, help, map) in [
            (
                "flagger_canary_successes_total",
                "Flagger-compatible: promotions.",
                &self.successes,
            ),
            (
                "flagger_canary_failures_total",
                "Flagger-compatible: rollbacks.",
                &self.failures,
            ),
        ] {
            let rows = map.iter().map(|((t, ns, strategy, status), count)| {
                let mut labels = named(&(t.clone(), ns.clone()));
                labels.push(("deployment_strategy", strategy.to_string()));
                labels.push(("analysis_status", status.to_string()));
                (labels, *count)
            });
            exposition::counters(encoder, (name, help), rows)?;
        }
        let rows =
            (self.durations.iter()).map(|(key, durations)| (named(key), durations.histogram()));
        let help = "Flagger-compatible: seconds spent performing canary analysis.";
        exposition::histograms(encoder, ("flagger_canary_duration_seconds", help), rows)
    }
}

fn named((target, namespace): &Target) -> Labels {
    vec![("name", target.clone()), ("namespace", namespace.clone())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct One(FlaggerSeries);

    impl crate::exposition::Collector for One {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            self.0
                .encode(&mut encoder, vec![("version", "1".to_string())])
        }
    }

    fn rendered(series: &FlaggerSeries) -> String {
        exposition::render(&exposition::registry_of(One(series.clone())))
    }

    #[test]
    fn series_carry_flaggers_names_and_labels() {
        let mut series = FlaggerSeries::default();
        series.observe("podinfo", "test", CanaryPhase::Progressing, 5);
        series.analysis("podinfo", "test", "request-success-rate", 99.5);
        series.outcome(("podinfo", "test"), Some(Strategy::BlueGreen), true);
        series.duration("podinfo", "test", 0.02);
        let text = rendered(&series);
        for line in [
            "flagger_canary_total{namespace=\"test\"} 1",
            "flagger_canary_status{name=\"podinfo\",namespace=\"test\"} 0",
            "flagger_canary_weight{workload=\"podinfo-primary\",namespace=\"test\"} 95",
            "flagger_canary_weight{workload=\"podinfo\",namespace=\"test\"} 5",
            "flagger_canary_metric_analysis{name=\"podinfo\",namespace=\"test\",metric=\"request-success-rate\"} 99.5",
            "flagger_canary_successes_total{name=\"podinfo\",namespace=\"test\",deployment_strategy=\"blue-green\",analysis_status=\"completed\"} 1",
            "flagger_canary_duration_seconds_bucket{name=\"podinfo\",namespace=\"test\",le=\"0.025\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn a_forgotten_target_leaves_nothing() {
        let mut series = FlaggerSeries::default();
        series.observe("podinfo", "test", CanaryPhase::Succeeded, 0);
        series.outcome(("podinfo", "test"), None, false);
        series.duration("podinfo", "test", 3.0);
        series.forget("podinfo", "test");
        assert!(!rendered(&series).contains("podinfo"));
    }

    #[test]
    fn status_follows_flaggers_rule() {
        assert_eq!(status_code(CanaryPhase::Progressing), 0);
        assert_eq!(status_code(CanaryPhase::Failed), 2);
        assert_eq!(status_code(CanaryPhase::Promoting), 1);
        assert_eq!(status_code(CanaryPhase::Waiting), 1);
        assert_eq!(
            outcome_labels(Some(Strategy::SkipAnalysis)),
            ("canary", "skipped")
        );
    }
}
