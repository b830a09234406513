//! The controller's own Prometheus metrics (Flagger's names with our prefix) and Kubernetes Events.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::api::CanaryPhase;

const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Series {
    status: BTreeMap<(String, String), i64>,
    weight: BTreeMap<(String, String), i64>,
    analysis: BTreeMap<(String, String, String), f64>,
    successes: BTreeMap<(String, String), u64>,
    failures: BTreeMap<(String, String), u64>,
    duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
    duration_sum: f64,
}

/// Metrics registry; cheap to update, rendered on scrape.
pub struct ControllerMetrics {
    version: String,
    mesh: String,
    series: Mutex<Series>,
}

impl ControllerMetrics {
    pub fn new(mesh: &str) -> Self {
        ControllerMetrics {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mesh: mesh.to_string(),
            series: Mutex::default(),
        }
    }

    fn series(&self) -> parking_lot::MutexGuard<'_, Series> {
        self.series.lock()
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
    }

    pub fn analysis(&self, name: &str, namespace: &str, metric: &str, value: f64) {
        self.series()
            .analysis
            .insert((name.into(), namespace.into(), metric.into()), value);
    }

    pub fn outcome(&self, name: &str, namespace: &str, promoted: bool) {
        let mut series = self.series();
        let map = if promoted {
            &mut series.successes
        } else {
            &mut series.failures
        };
        *map.entry((name.into(), namespace.into())).or_default() += 1;
    }

    pub fn step_duration(&self, seconds: f64) {
        let mut series = self.series();
        let slot = DURATION_BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        series.duration_buckets[slot] += 1;
        series.duration_sum += seconds;
    }

    pub fn forget(&self, name: &str, namespace: &str) {
        let mut series = self.series();
        let key = (name.to_string(), namespace.to_string());
        series.status.remove(&key);
        series
            .analysis
            .retain(|(n, ns, _), _| !(n == name && ns == namespace));
    }

    pub fn render(&self) -> String {
        let series = self.series();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# TYPE aviary_info gauge\naviary_info{{version=\"{}\",mesh_provider=\"{}\"}} 1",
            self.version, self.mesh
        );
        let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, namespace) in series.status.keys() {
            *totals.entry(namespace.as_str()).or_default() += 1;
        }
        out.push_str("# TYPE aviary_canary_total gauge\n");
        for (namespace, count) in totals {
            let _ = writeln!(
                out,
                "aviary_canary_total{{namespace=\"{namespace}\"}} {count}"
            );
        }
        out.push_str("# TYPE aviary_canary_status gauge\n");
        for ((name, namespace), code) in &series.status {
            let _ = writeln!(
                out,
                "aviary_canary_status{{name=\"{name}\",namespace=\"{namespace}\"}} {code}"
            );
        }
        out.push_str("# TYPE aviary_canary_weight gauge\n");
        for ((workload, namespace), weight) in &series.weight {
            let _ = writeln!(out, "aviary_canary_weight{{workload=\"{workload}\",namespace=\"{namespace}\"}} {weight}");
        }
        out.push_str("# TYPE aviary_canary_metric_analysis gauge\n");
        for ((name, namespace, metric), value) in &series.analysis {
            let _ = writeln!(out, "aviary_canary_metric_analysis{{name=\"{name}\",namespace=\"{namespace}\",metric=\"{metric}\"}} {value}");
        }
        for (metric, map) in [
            ("aviary_canary_successes_total", &series.successes),
            ("aviary_canary_failures_total", &series.failures),
        ] {
            let _ = writeln!(out, "# TYPE {metric} counter");
            for ((name, namespace), count) in map {
                let _ = writeln!(
                    out,
                    "{metric}{{name=\"{name}\",namespace=\"{namespace}\"}} {count}"
                );
            }
        }
        out.push_str("# TYPE aviary_canary_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (index, count) in series.duration_buckets.iter().enumerate() {
            cumulative += count;
            let bound = DURATION_BUCKETS
                .get(index)
                .map(|b| b.to_string())
                .unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(
                out,
                "aviary_canary_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "aviary_canary_duration_seconds_sum {}",
            series.duration_sum
        );
        let _ = writeln!(out, "aviary_canary_duration_seconds_count {cumulative}");
        out
    }
}
