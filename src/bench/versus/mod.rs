//! `aviary bench controller --against flagger`: Aviary and Flagger v1.36.1 side by side, in one
//! run, on the same API server and the same Prometheus, one after the other, each over N fresh
//! canaries with the same spec, each under its own ServiceAccount.
//!
//! For each controller it measures, from outside the process:
//! - peak and steady RSS and CPU, from /proc;
//! - API reads and writes per canary per interval, from the API server's audit log by the
//!   controller's own identity;
//! - step lateness, from the canary weights of the VirtualServices the controller writes;
//! - the time from the failed check that reaches the threshold (the Canary's
//!   `status.failedChecks`) to all traffic on the primary, for canaries made to fail.

mod identity;
mod peers;
mod side;
mod telemetry;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

pub use peers::Peer;

use super::{machine, round, BenchError};

#[derive(Debug, Clone)]
pub struct VersusBench {
    pub canaries: usize,
    pub interval: Duration,
    /// Steady-state window, in intervals.
    pub intervals: u32,
    /// Canaries made to fail after the window, to time rollbacks.
    pub failing: usize,
}

/// Server-side applies Flagger's CRDs from its module (`AVIARY_FLAGGER_SOURCE`).
async fn install_flagger_crds(client: &Client) -> Result<(), BenchError> {
    let source = std::env::var("AVIARY_FLAGGER_SOURCE").map_err(|_| BenchError::Start {
        what: "Flagger's CRDs",
        reason: "AVIARY_FLAGGER_SOURCE is not set: run under tests/env/testenv".into(),
    })?;
    let path = Path::new(&source).join("artifacts/flagger/crd.yaml");
    let text = std::fs::read_to_string(&path).map_err(super::start_error("Flagger's CRDs"))?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("aviary-bench").force();
    for document in serde_norway::Deserializer::from_str(&text) {
        let Ok(value) = <Value as serde::Deserialize>::deserialize(document) else {
            continue;
        };
        if value["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        api.patch(&name, &params, &Patch::Apply(&value)).await?;
        controller_wait(&format!("CRD {name} Established"), async || {
            let crd = api.get(&name).await?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            Ok(conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await?;
    }
    Ok(())
}

async fn controller_wait<F>(what: &str, check: F) -> Result<(), BenchError>
where
    F: AsyncFnMut() -> Result<bool, BenchError>,
{
    super::controller::wait_for(what, Duration::from_secs(60), check).await
}

/// Runs `peers` in turn and reports each and their ratios, the first against the others.
pub async fn run(
    executable: &Path,
    bench: VersusBench,
    peers: &[Peer],
) -> Result<Value, BenchError> {
    crate::http_client::install_crypto_provider();
    let client = Client::try_default().await?;
    if peers.contains(&Peer::Flagger) {
        install_flagger_crds(&client).await?;
    }
    let telemetry = telemetry::Telemetry::default();
    let exporter = telemetry.serve().await?;
    let prometheus = telemetry::Prometheus::start(exporter, Duration::from_secs(5)).await?;
    let dir = std::env::temp_dir().join(format!("aviary-bench-versus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(super::start_error("a temporary directory"))?;
    let context = side::Context {
        client,
        executable: executable.to_path_buf(),
        telemetry,
        prometheus: prometheus.url.clone(),
        dir: dir.clone(),
    };
    let mut sides = Vec::new();
    for peer in peers {
        sides.push(side::measure(&context, *peer, &bench).await);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let sides: Vec<side::Side> = sides.into_iter().collect::<Result<_, _>>()?;
    Ok(report(&bench, &sides))
}

fn report(bench: &VersusBench, sides: &[side::Side]) -> Value {
    let by_name: serde_json::Map<String, Value> = sides
        .iter()
        .map(|s| (s.peer.name().to_string(), s.report.clone()))
        .collect();
    let aviary = sides.iter().find(|s| s.peer == Peer::Aviary);
    let flagger = sides.iter().find(|s| s.peer == Peer::Flagger);
    let ratios = aviary.zip(flagger).map(|(a, f)| ratios(bench, a, f));
    json!({
        "benchmark": "controller",
        "against": sides.iter().filter(|s| s.peer != Peer::Aviary).map(|s| s.peer.name()).collect::<Vec<_>>(),
        "canaries": bench.canaries,
        "interval_s": bench.interval.as_secs_f64(),
        "window_intervals": bench.intervals,
        "failing_canaries": bench.failing,
        "controllers": by_name,
        "aviary_over_flagger": ratios,
        "machine": machine("both controllers, kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok and Prometheus share this machine; the controllers run one after the other over fresh namespaces"),
    })
}

fn ratios(bench: &VersusBench, aviary: &side::Side, flagger: &side::Side) -> Value {
    let ratio = |key: &str| {
        let (a, f) = (aviary.report[key].as_f64(), flagger.report[key].as_f64());
        a.zip(f).map(|(a, f)| round(a / f.max(1e-9)))
    };
    let rss = ratio("steady_rss_mib");
    let requests = ratio("api_requests_per_canary_per_interval");
    let lateness = aviary.report["step_lateness_p99_s"].as_f64();
    let at_scale = bench.canaries >= 1000;
    json!({
        "steady_rss": rss,
        "peak_rss": ratio("peak_rss_mib"),
        "cpu": ratio("cpu_cores"),
        "api_reads_per_canary_per_interval": ratio("api_reads_per_canary_per_interval"),
        "api_writes_per_canary_per_interval": ratio("api_writes_per_canary_per_interval"),
        "api_requests_per_canary_per_interval": requests,
        "rollback_after_threshold_p50": ratio("rollback_after_threshold_p50_s"),
        "targets": {
            "applies_at": "1,000 canaries",
            "rss_at_most_a_quarter": rss.map(|r| r <= 0.25),
            "api_requests_at_most_a_tenth": requests.map(|r| r <= 0.1),
            "aviary_step_lateness_p99_at_most_1s": lateness.map(|l| l <= 1.0),
            "checked_at_this_size": at_scale,
        },
    })
}
