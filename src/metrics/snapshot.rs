//! Reading proxy telemetry (Prometheus text) into per-workload counters, and the arithmetic on
//! two snapshots: request rates from counter deltas, quantiles from histogram bucket deltas.

use std::collections::BTreeMap;

use prometheus_parse::{Sample, Value};

/// Counters of one workload at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadCounts {
    pub total: f64,
    pub server_errors: f64,
    pub connect_errors: f64,
    /// Cumulative latency buckets: (upper bound in ms, count), ascending.
    pub buckets: Vec<(f64, f64)>,
}

impl WorkloadCounts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &WorkloadCounts) -> WorkloadCounts {
        let buckets = self
            .buckets
            .iter()
            .map(|(bound, count)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map(|(_, c)| *c)
                    .unwrap_or(0.0);
                (*bound, (count - before).max(0.0))
            })
            .collect();
        WorkloadCounts {
            total: (self.total - earlier.total).max(0.0),
            server_errors: (self.server_errors - earlier.server_errors).max(0.0),
            connect_errors: (self.connect_errors - earlier.connect_errors).max(0.0),
            buckets,
        }
    }
}

/// Every workload's counters at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub workloads: BTreeMap<String, WorkloadCounts>,
}

/// The telemetry dialect being read: which series and labels mean what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Aviary's embedded gateway; workloads are `primary` and `canary`.
    EmbeddedGateway,
    /// Envoy's `/stats/prometheus`; workloads are cluster names.
    Envoy,
}

impl Dialect {
    pub fn parse(self, text: &str) -> Result<Snapshot, std::io::Error> {
        let lines = text.lines().map(|line| Ok(line.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines)?;
        let mut snapshot = Snapshot::default();
        for sample in &scrape.samples {
            let shape = match self {
                Dialect::EmbeddedGateway => &GATEWAY_SHAPE,
                Dialect::Envoy => &ENVOY_SHAPE,
            };
            shape.read(&mut snapshot, sample);
        }
        for counts in snapshot.workloads.values_mut() {
            counts.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Ok(snapshot)
    }
}

fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        _ => None,
    }
}

fn histogram_into(counts: &mut WorkloadCounts, value: &Value, sample: &Sample) {
    match value {
        Value::Histogram(buckets) => {
            for bucket in buckets {
                counts.buckets.push((bucket.less_than, bucket.count));
            }
        }
        other => {
            // Series read without a TYPE line arrive one bucket per sample.
            if let (Some(count), Some(le)) = (scalar(other), sample.labels.get("le")) {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                counts.buckets.push((bound, count));
            }
        }
    }
}

/// Which series and labels of a dialect carry each counter.
struct Shape {
    workload_label: &'static str,
    requests: &'static str,
    class_label: &'static str,
    server_error_class: &'static str,
    connect_errors: &'static str,
    /// Histogram name; its `_bucket` series are read too when no TYPE line groups them.
    latency: &'static str,
}

const GATEWAY_SHAPE: Shape = Shape {
    workload_label: "upstream",
    requests: "aviary_gateway_requests_total",
    class_label: "code_class",
    server_error_class: "5xx",
    connect_errors: "aviary_gateway_upstream_connect_errors_total",
    latency: "aviary_gateway_request_duration_ms",
};

const ENVOY_SHAPE: Shape = Shape {
    workload_label: "envoy_cluster_name",
    requests: "envoy_cluster_upstream_rq_xx",
    class_label: "envoy_response_code_class",
    server_error_class: "5",
    connect_errors: "envoy_cluster_upstream_cx_connect_fail",
    latency: "envoy_cluster_upstream_rq_time",
};

impl Shape {
    fn read(&self, snapshot: &mut Snapshot, sample: &Sample) {
        let Some(workload) = sample.labels.get(self.workload_label) else {
            return;
        };
        let counts = snapshot.workloads.entry(workload.to_string()).or_default();
        let metric = sample.metric.as_str();
        if metric == self.requests {
            let value = scalar(&sample.value).unwrap_or(0.0);
            counts.total += value;
            if sample.labels.get(self.class_label) == Some(self.server_error_class) {
                counts.server_errors += value;
            }
        } else if metric == self.connect_errors {
            counts.connect_errors += scalar(&sample.value).unwrap_or(0.0);
        } else if metric.strip_suffix("_bucket").unwrap_or(metric) == self.latency {
            histogram_into(counts, &sample.value, sample);
        }
    }
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside the bucket that holds it
/// (the same estimate PromQL's `histogram_quantile` makes). `None` when there are no observations.
pub fn quantile_from_buckets(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last().map(|(_, count)| *count)?;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (bound, count) in buckets {
        if *count >= rank {
            if bound.is_infinite() {
                // Beyond the last finite bound the best honest answer is that bound.
                return Some(lower_bound);
            }
            let in_bucket = count - lower_count;
            if in_bucket <= 0.0 {
                return Some(*bound);
            }
            return Some(lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket);
        }
        lower_bound = *bound;
        lower_count = *count;
    }
    Some(lower_bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        let buckets = [(10.0, 50.0), (100.0, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile_from_buckets(0.5, &buckets), Some(10.0));
        let p99 = quantile_from_buckets(0.99, &buckets).unwrap();
        assert!((p99 - 98.2).abs() < 1e-9, "{p99}");
        assert_eq!(quantile_from_buckets(0.99, &[(10.0, 0.0)]), None);
    }

    #[test]
    fn reads_gateway_text_and_takes_deltas() {
        let telemetry = crate::gateway::Telemetry::default();
        let canary = crate::gateway::Upstream::Canary;
        telemetry.record(canary, 200, std::time::Duration::from_millis(3));
        let before = Dialect::EmbeddedGateway.parse(&telemetry.render()).unwrap();
        telemetry.record(canary, 500, std::time::Duration::from_millis(40));
        telemetry.record(canary, 200, std::time::Duration::from_millis(40));
        let after = Dialect::EmbeddedGateway.parse(&telemetry.render()).unwrap();
        let delta = after.workloads["canary"].since(&before.workloads["canary"]);
        assert_eq!(delta.total, 2.0);
        assert_eq!(delta.server_errors, 1.0);
        let p50 = quantile_from_buckets(0.5, &delta.buckets).unwrap();
        assert!(p50 > 35.0 && p50 <= 50.0, "{p50}");
    }

    #[test]
    fn reads_envoy_text() {
        let text = "# TYPE envoy_cluster_upstream_rq_xx counter\n\
            envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"canary\"} 90\n\
            envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\",envoy_cluster_name=\"canary\"} 10\n\
            # TYPE envoy_cluster_upstream_rq_time histogram\n\
            envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"canary\",le=\"5\"} 80\n\
            envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"canary\",le=\"+Inf\"} 100\n\
            envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"canary\"} 700\n\
            envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"canary\"} 100\n";
        let snapshot = Dialect::Envoy.parse(text).unwrap();
        let canary = &snapshot.workloads["canary"];
        assert_eq!((canary.total, canary.server_errors), (100.0, 10.0));
        assert_eq!(canary.buckets.len(), 2);
    }
}
