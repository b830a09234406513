//! The loadtester's metrics, read from its counters, runs and gates on every scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::gates::Gates;
use super::load::Runs;
use super::Counters;
use crate::exposition::{self, Collector, Labels};

pub(super) struct LoadtesterMetrics {
    pub gates: Arc<Gates>,
    pub runs: Arc<Runs>,
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for LoadtesterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadtesterMetrics")
    }
}

fn by(key: &'static str, rows: &[(&str, &AtomicU64)]) -> Vec<(Labels, u64)> {
    rows.iter()
        .map(|(value, counter)| {
            (
                vec![(key, value.to_string())],
                counter.load(Ordering::Relaxed),
            )
        })
        .collect()
}

impl Collector for LoadtesterMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.counters;
        let requests = by(
            "result",
            &[
                ("ok", &c.load_ok),
                ("failed", &c.load_failed),
                ("dropped", &c.load_dropped),
            ],
        );
        exposition::counters(
            &mut encoder,
            (
                "aviary_loadtester_requests_total",
                "Load requests sent, by result.",
            ),
            requests,
        )?;
        let loads = by(
            "outcome",
            &[
                ("started", &c.loads_started),
                ("deduplicated", &c.loads_deduplicated),
            ],
        );
        exposition::counters(
            &mut encoder,
            (
                "aviary_loadtester_loads_total",
                "Load runs asked for, by outcome.",
            ),
            loads,
        )?;
        let running = [(Labels::new(), self.runs.running() as i64)];
        exposition::gauges(
            &mut encoder,
            ("aviary_loadtester_loads_running", "Load runs in progress."),
            running,
        )?;
        let (open, closed) = self.gates.counts();
        let gates = [("open", open), ("closed", closed)]
            .map(|(state, n)| (vec![("state", state.to_string())], n as i64));
        exposition::gauges(
            &mut encoder,
            ("aviary_loadtester_gates", "Gates known, by state."),
            gates,
        )?;
        let changes = [(Labels::new(), c.changes.load(Ordering::Relaxed))];
        exposition::counters(
            &mut encoder,
            (
                "aviary_loadtester_changes_total",
                "Authorised gate and rollback changes.",
            ),
            changes,
        )?;
        let refused = by(
            "reason",
            &[
                ("unauthorized", &c.unauthorized),
                ("bad_signature", &c.bad_signatures),
            ],
        );
        exposition::counters(
            &mut encoder,
            (
                "aviary_loadtester_refused_total",
                "Calls refused, by reason.",
            ),
            refused,
        )
    }
}
