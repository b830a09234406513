//! `aviary bench loadtest`: does `aviary loadtester` hold the rate it is asked for? The loadtester
//! runs as its own process (as it would in a cluster) against an upstream in this one; the load
//! is asked for over HTTP exactly as a `rollout` webhook asks for it.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{cpu_seconds, machine, memory_kib, round, start_error, start_listening, BenchError};
use crate::loadtester::RunRecord;
use crate::sample_app::{Behaviour, SampleApp};

/// Within this fraction of the requested rate counts as sustained.
const TOLERANCE: f64 = 0.05;

/// Asks the loadtester at `address` for the load, as a `rollout` webhook would.
async fn ask_for_load(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    (rps, duration): (u32, Duration),
) -> Result<(), BenchError> {
    let payload = json!({
        "name": "bench",
        "namespace": "bench",
        "phase": "Progressing",
        "checksum": "",
        "metadata": {
            "type": "load",
            "url": format!("http://{upstream}/"),
            "rps": rps.to_string(),
            "duration": format!("{}ms", duration.as_millis()),
        }
    });
    let failed = |reason: String| BenchError::Start {
        what: "the load",
        reason,
    };
    let answer = http
        .post(format!("http://{address}/"))
        .json(&payload)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !answer.status().is_success() {
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        return Err(failed(format!("status {status}: {body}")));
    }
    Ok(())
}

/// The finished run, as the loadtester's `/runs` reports it.
async fn finished_run(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    patience: Duration,
) -> Result<RunRecord, BenchError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let runs: Vec<RunRecord> = match http.get(format!("http://{address}/runs")).send().await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if let Some(run) = runs.into_iter().find(|r| !r.running) {
            return Ok(run);
        }
        if tokio::time::Instant::now() > deadline {
            let message = format!("the load did not finish within {patience:?}");
            return Err(BenchError::Timeout(message));
        }
    }
}

pub async fn loadtest(
    executable: &Path,
    rps: u32,
    duration: Duration,
) -> Result<serde_json::Value, BenchError> {
    let upstream = SampleApp::start("127.0.0.1:0", Behaviour::healthy("bench"))
        .await
        .map_err(start_error("the upstream"))?;
    let (mut child, address) = start_listening(
        executable,
        &["loadtester", "--listen", "127.0.0.1:0"],
        "the loadtester process",
    )
    .await?;
    let pid = child.id().unwrap_or(0);
    let http = crate::http_client::client(Duration::from_secs(10));
    let cpu_before = cpu_seconds(pid);
    ask_for_load(&http, address, upstream.address, (rps, duration)).await?;
    let run = finished_run(&http, address, duration + Duration::from_secs(30)).await?;
    let cpu = cpu_seconds(pid) - cpu_before;
    let (rss_kib, peak_kib) = memory_kib(pid);
    let _ = child.kill().await;
    let ratio = run.achieved_rps / f64::from(rps.max(1));
    Ok(json!({
        "benchmark": "loadtest",
        "requested_rps": rps,
        "duration_s": duration.as_secs_f64(),
        "achieved_rps": round(run.achieved_rps),
        "ratio": round(ratio),
        "within_5_percent": (ratio - 1.0).abs() <= TOLERANCE,
        "sent": run.sent,
        "ok": run.ok,
        "failed": run.failed,
        "dropped": run.dropped,
        "latency_p50_ms": round(run.p50_ms),
        "latency_p99_ms": round(run.p99_ms),
        "loadtester_cpu_seconds": round(cpu),
        "loadtester_rss_mib": round(rss_kib as f64 / 1024.0),
        "loadtester_peak_rss_mib": round(peak_kib as f64 / 1024.0),
        "targets": { "ratio": [1.0 - TOLERANCE, 1.0 + TOLERANCE] },
        "machine": machine("the loadtester process, this bench and the upstream (2 ms per answer) share this machine"),
    }))
}
