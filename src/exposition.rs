//! Prometheus exposition through the `prometheus-client` crate. Each serving process (the
//! controller, the embedded gateway, the loadtester) keeps one [`Registry`]; its collectors read
//! the process's own counters on every scrape, and the crate writes the text format, label
//! values escaped. Recording stays where it is cheap: plain atomics or one short lock.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub use prometheus_client::registry::Registry;

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// A registry holding one collector.
pub fn registry_of(collector: impl Collector) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector));
    registry
}

/// The registry in the Prometheus text format (version 0.0.4).
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail; a collector's error would only truncate the output.
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::warn!(%error, "metrics exposition incomplete");
    }
    out
}

/// One counter family: a series per label set. `name` is the exposed name, `_total` included
/// (the crate appends that suffix itself).
pub fn counters(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help): (&str, &str),
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let base = name.strip_suffix("_total").unwrap_or(name);
    let mut metric = encoder.encode_descriptor(base, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One gauge family: whole numbers (`i64`) or measured values (`f64`).
pub fn gauges<N>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help): (&str, &str),
    series: impl IntoIterator<Item = (Labels, N)>,
) -> fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The counts of one histogram: per-bucket (not cumulative) counts by upper bound, the last
/// bound being +Inf.
pub struct Histogram<'a> {
    pub bounds: &'a [f64],
    /// One more than `bounds`: the last is the +Inf bucket.
    pub counts: Vec<u64>,
    pub sum: f64,
}

/// One histogram family.
pub fn histograms<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help): (&str, &str),
    series: impl IntoIterator<Item = (Labels, Histogram<'a>)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, histogram) in series {
        let buckets: Vec<(f64, u64)> = histogram
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(histogram.counts.iter().copied())
            .collect();
        let count = histogram.counts.iter().sum();
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(histogram.sum, count, &buckets, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Hostile;

    impl Collector for Hostile {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            let labels = vec![("name", "evil\"}\nfake_metric 1\\".to_string())];
            gauges(&mut encoder, ("x_status", "A status."), [(labels, 1)])
        }
    }

    /// A tenant-chosen name cannot forge a series: quotes, newlines and backslashes in label
    /// values are escaped.
    #[test]
    fn label_values_are_escaped() {
        let text = render(&registry_of(Hostile));
        assert!(
            text.contains(r#"x_status{name="evil\"}\nfake_metric 1\\"} 1"#),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("fake_metric")),
            "{text}"
        );
    }
}
