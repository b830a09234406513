//! `aviary bench gateway`: the embedded gateway's added latency and memory.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::loadgen::{self, LoadPlan, LoadReport};
use crate::sample_app::{Behaviour, SampleApp};

use super::envoy::{Envoy, Routing};
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

/// A gateway process in front of `upstream` (as both primary and canary), with `routing`'s
/// flags, and the address it listens on.
async fn start_gateway(
    executable: &Path,
    upstream: SocketAddr,
    routing: &[String],
) -> Result<(tokio::process::Child, SocketAddr), BenchError> {
    let address = upstream.to_string();
    let mut args = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--primary",
        &address,
        "--canary",
        &address,
    ];
    args.extend(routing.iter().map(String::as_str));
    start_listening(executable, &args, "the gateway process").await
}

/// The upstream both paths reach: answers at once, never fails.
async fn upstream() -> Result<SampleApp, BenchError> {
    let healthy = Behaviour {
        version: "bench".into(),
        error_rate: 0.0,
        latency: Duration::ZERO,
    };
    SampleApp::start("127.0.0.1:0", healthy)
        .await
        .map_err(start_error("the upstream"))
}

/// Added latency of the gateway: the same load straight to an upstream, then through a gateway
/// running as its own process (so its memory is its own), in one run.
pub async fn gateway(
    executable: &Path,
    rps: u32,
    duration: Duration,
) -> Result<serde_json::Value, BenchError> {
    let upstream = upstream().await?;
    let (mut child, gateway_address) = start_gateway(executable, upstream.address, &[]).await?;
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

/// Open-loop load at `rps`, then a closed loop of [`CONNECTIONS`] for the capacity.
async fn measure(target: SocketAddr, rps: u32, duration: Duration) -> (LoadReport, LoadReport) {
    loadgen::saturate(
        LoadPlan::get(target, "/", 1, None),
        CONNECTIONS,
        Duration::from_secs(1),
    )
    .await;
    let at_rate = load(target, rps, duration).await;
    let saturated =
        loadgen::saturate(LoadPlan::get(target, "/", 1, None), CONNECTIONS, duration).await;
    (at_rate, saturated)
}

/// Connections of the closed loop, as a one-thread `wrk -c 8` would keep.
const CONNECTIONS: usize = 8;

/// A proxy's figures against the direct path's.
fn proxy_report(
    (at_rate, saturated): &(LoadReport, LoadReport),
    direct: &(LoadReport, LoadReport),
    (rss_kib, peak_kib): (u64, u64),
) -> serde_json::Value {
    json!({
        "at_rate": summary(at_rate),
        "saturation": summary(saturated),
        "added_latency_p50_ms_at_rate": round(at_rate.latency_ms(0.50) - direct.0.latency_ms(0.50)),
        "added_latency_p99_ms_at_rate": round(at_rate.latency_ms(0.99) - direct.0.latency_ms(0.99)),
        "added_latency_p50_ms_at_saturation": round(saturated.latency_ms(0.50) - direct.1.latency_ms(0.50)),
        "added_latency_p99_ms_at_saturation": round(saturated.latency_ms(0.99) - direct.1.latency_ms(0.99)),
        "rss_mib": round(rss_kib as f64 / 1024.0),
        "peak_rss_mib": round(peak_kib as f64 / 1024.0),
    })
}

/// One routing through Envoy, then through the gateway.
async fn compare_routing(
    executable: &Path,
    routing: Routing,
    upstream: SocketAddr,
    (rps, duration): (u32, Duration),
    direct: &(LoadReport, LoadReport),
) -> Result<serde_json::Value, BenchError> {
    let mut envoy = Envoy::start(routing, upstream).await?;
    let through_envoy = measure(envoy.address, rps, duration).await;
    let envoy_memory = memory_kib(envoy.child.id().unwrap_or(0));
    let _ = envoy.child.kill().await;
    let (mut child, gateway_address) =
        start_gateway(executable, upstream, &routing.gateway_args()).await?;
    let through_gateway = measure(gateway_address, rps, duration).await;
    let gateway_memory = memory_kib(child.id().unwrap_or(0));
    let _ = child.kill().await;
    let envoy = proxy_report(&through_envoy, direct, envoy_memory);
    let gateway = proxy_report(&through_gateway, direct, gateway_memory);
    let capacity = |r: &(LoadReport, LoadReport)| r.1.throughput().max(1e-9);
    let vs_envoy = capacity(&through_gateway) / capacity(&through_envoy);
    let vs_direct = capacity(&through_gateway) / capacity(direct);
    let rss_vs_envoy = gateway_memory.0 as f64 / (envoy_memory.0.max(1)) as f64;
    let p99 = through_gateway.1.latency_ms(0.99);
    Ok(json!({
        "envoy": envoy,
        "gateway": gateway,
        "gateway_saturation_over_envoy": round(vs_envoy),
        "gateway_saturation_over_direct": round(vs_direct),
        "gateway_rss_over_envoy": round(rss_vs_envoy),
        "targets": {
            "saturation_at_least_3x_envoy": vs_envoy >= 3.0,
            "saturation_at_least_0.4x_direct": vs_direct >= 0.4,
            "gateway_p99_at_saturation_at_most_0.4ms": p99 <= 0.4,
            "rss_at_most_a_quarter_of_envoy": rss_vs_envoy <= 0.25,
        },
    }))
}

/// `aviary bench gateway --against envoy`: the direct path, then each routing through Envoy
/// and through the gateway, each proxy with one worker thread, in one run.
pub async fn against_envoy(
    executable: &Path,
    rps: u32,
    duration: Duration,
) -> Result<serde_json::Value, BenchError> {
    let upstream = upstream().await?;
    let direct = measure(upstream.address, rps, duration).await;
    let mut routings = serde_json::Map::new();
    for routing in Routing::ALL {
        let compared = compare_routing(
            executable,
            routing,
            upstream.address,
            (rps, duration),
            &direct,
        )
        .await?;
        routings.insert(routing.name().to_string(), compared);
    }
    let all_met = routings.values().all(|r| {
        r["targets"]
            .as_object()
            .is_some_and(|t| t.values().all(|v| v == true))
    });
    Ok(json!({
        "benchmark": "gateway",
        "against": "envoy",
        "target_rps": rps,
        "duration_s": duration.as_secs_f64(),
        "closed_loop_connections": CONNECTIONS,
        "direct": { "at_rate": summary(&direct.0), "saturation": summary(&direct.1) },
        "routings": routings,
        "every_target_met": all_met,
        "machine": machine("load generator and upstream (one process), Envoy and the gateway share this machine; each proxy has one worker thread; the direct path, Envoy and the gateway are measured one after the other in the same run"),
    }))
}
