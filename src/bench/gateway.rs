//! `aviary bench gateway`: the embedded gateway's added latency and memory.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::loadgen::{self, LoadPlan, LoadReport};
use crate::sample_app::{Behaviour, SampleApp};

use super::{machine, memory_kib, round, start_error, start_listening, BenchError};

async fn load(target: std::net::SocketAddr, rps: u32, duration: Duration) -> LoadReport {
    let (_keep, stop) = watch::channel(false);
    loadgen::run(LoadPlan::get(target, "/", rps, Some(duration)), stop).await
}

fn summary(report: &LoadReport) -> serde_json::Value {
    json!({
        "requests": report.ok + report.failed,
        "failed": report.failed,
        "dropped": report.dropped,
        "throughput_rps": round(report.throughput()),
        "latency_p50_ms": round(report.latency_ms(0.50)),
        "latency_p99_ms": round(report.latency_ms(0.99)),
    })
}

/// Added latency of the gateway: the same load straight to an upstream, then through a gateway
/// running as its own process (so its memory is its own), in one run.
pub async fn gateway(
    executable: &Path,
    rps: u32,
    duration: Duration,
) -> Result<serde_json::Value, BenchError> {
    let upstream = SampleApp::start(
        "127.0.0.1:0",
        Behaviour {
            version: "bench".into(),
            error_rate: 0.0,
            latency: Duration::ZERO,
        },
    )
    .await
    .map_err(start_error("the upstream"))?;
    let address = upstream.address.to_string();
    let (mut child, gateway_address) = start_listening(
        executable,
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--primary",
            &address,
            "--canary",
            &address,
        ],
        "the gateway process",
    )
    .await?;
    let pid = child.id().unwrap_or(0);
    let warmup = Duration::from_secs(1);
    load(upstream.address, rps, warmup).await;
    load(gateway_address, rps, warmup).await;
    let direct = load(upstream.address, rps, duration).await;
    let through = load(gateway_address, rps, duration).await;
    let (rss_kib, peak_kib) = memory_kib(pid);
    let _ = child.kill().await;
    Ok(json!({
        "benchmark": "gateway",
        "target_rps": rps,
        "duration_s": duration.as_secs_f64(),
        "direct": summary(&direct),
        "through_gateway": summary(&through),
        "throughput_rps": round(through.throughput()),
        "added_latency_p50_ms": round(through.latency_ms(0.50) - direct.latency_ms(0.50)),
        "added_latency_p99_ms": round(through.latency_ms(0.99) - direct.latency_ms(0.99)),
        "gateway_rss_mib": round(rss_kib as f64 / 1024.0),
        "gateway_peak_rss_mib": round(peak_kib as f64 / 1024.0),
        "targets": { "added_latency_p99_ms": 1.0, "gateway_rss_mib": 20.0 },
        "machine": machine("load generator, upstream and gateway share this machine; direct and gateway runs are measured back to back in the same run"),
    }))
}
