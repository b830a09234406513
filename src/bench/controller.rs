//! `aviary bench controller --canaries N`: the controller at scale on the cluster in KUBECONFIG.
//! It creates N Deployments and N Canaries in a fresh namespace, starts a controller process,
//! puts every canary in analysis, and measures over a steady-state window: the controller's RSS
//! and CPU, API read and write requests per canary per interval (from the API server's own
//! `apiserver_request_total`), and how late analysis steps run against their schedule.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;

use super::{cpu_seconds, machine, memory_kib, percentile, round, BenchError};
use crate::api::{Canary, CanaryPhase, CanaryStatus};

/// Resources only the controller reads in this benchmark (the kube-controller-manager, the
/// scheduler and kwok watch Deployments and Pods through informers and do not GET them).
const CONTROLLER_RESOURCES: [&str; 5] = [
    "canaries",
    "virtualservices",
    "destinationrules",
    "services",
    "deployments",
];

#[derive(Debug, Clone)]
pub struct ControllerBench {
    pub canaries: usize,
    pub interval: Duration,
    /// Steady-state window, in intervals.
    pub intervals: u32,
}

#[derive(Default, Debug, Clone, Copy)]
struct RequestCounts {
    reads: f64,
    writes: f64,
}

async fn request_counts(client: &Client) -> Result<RequestCounts, BenchError> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .map_err(|e| BenchError::Timeout(e.to_string()))?;
    let text = client.request_text(request).await?;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| BenchError::Timeout(e.to_string()))?;
    let mut counts = RequestCounts::default();
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric == "apiserver_request_total")
    {
        let resource = sample.labels.get("resource").unwrap_or_default();
        if !CONTROLLER_RESOURCES.contains(&resource) {
            continue;
        }
        let value = match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        };
        match sample.labels.get("verb").unwrap_or_default() {
            "GET" | "LIST" => counts.reads += value,
            "PATCH" | "POST" | "PUT" | "APPLY" | "DELETE" => counts.writes += value,
            _ => {}
        }
    }
    Ok(counts)
}

pub(super) async fn wait_for<F>(what: &str, limit: Duration, mut check: F) -> Result<(), BenchError>
where
    F: AsyncFnMut() -> Result<bool, BenchError>,
{
    let deadline = Instant::now() + limit;
    while !check().await? {
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(format!(
                "{what} not reached within {limit:?}"
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

pub async fn run(
    executable: &Path,
    bench: ControllerBench,
) -> Result<serde_json::Value, BenchError> {
    crate::http_client::install_crypto_provider();
    let client = Client::try_default().await?;
    let ns = format!("aviary-bench-{}", rand::random::<u32>() % 100_000);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap(),
        )
        .await?;
    let result = measure(executable, &client, &ns, &bench).await;
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    result
}

/// A benchmark's target: one replica that kwok runs.
pub(super) fn target(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } },
                          "spec": { "containers": [{ "name": "app", "image": "bench:1" }] } }
        }
    }))
    .expect("a fixed Deployment")
}

/// N targets and their canaries, created 16 at a time.
async fn create_canaries(
    deployments: &Api<Deployment>,
    canaries: &Api<Canary>,
    bench: &ControllerBench,
) -> Result<(), BenchError> {
    let interval = format!("{}s", bench.interval.as_secs());
    futures::stream::iter(0..bench.canaries)
        .map(|index| {
            let (deployments, canaries, interval) = (deployments.clone(), canaries.clone(), interval.clone());
            async move {
                let name = format!("app-{index}");
                deployments.create(&PostParams::default(), &target(&name)).await?;
                // Many small steps and no metrics keep every canary in analysis for the window.
                let canary: Canary = serde_json::from_value(json!({
                    "apiVersion": "aviary.dev/v1beta1", "kind": "Canary",
                    "metadata": { "name": name },
                    "spec": {
                        "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
                        "service": { "port": 80 },
                        "analysis": { "interval": interval, "threshold": 1, "stepWeight": 1, "maxWeight": 99 }
                    }
                }))
                .unwrap();
                canaries.create(&PostParams::default(), &canary).await?;
                Ok::<_, BenchError>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// A new revision for every target: every canary starts a rollout.
pub(super) async fn start_rollouts(
    deployments: &Api<Deployment>,
    n: usize,
) -> Result<(), BenchError> {
    futures::stream::iter(0..n)
        .map(|index| {
            let deployments = deployments.clone();
            async move {
                let patch = json!({ "spec": { "template": { "metadata": { "annotations": { "bench/revision": "2" } } } } });
                deployments.patch(&format!("app-{index}"), &PatchParams::default(), &Patch::Merge(patch)).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// How many canaries satisfy `test` now.
pub(super) async fn counted(
    canaries: &Api<Canary>,
    test: impl Fn(&CanaryStatus) -> bool,
) -> Result<usize, BenchError> {
    let list = canaries.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|c| c.status.as_ref().is_some_and(&test))
        .count())
}

/// Each canary's step times, as the watch saw them.
type StepTimes = Arc<Mutex<BTreeMap<String, Vec<jiff::Timestamp>>>>;

/// Watches every canary's step times until aborted.
fn record_steps(
    canaries: &Api<Canary>,
) -> (
    StepTimes,
    tokio::task::JoinHandle<Result<(), watcher::Error>>,
) {
    let step_times: StepTimes = Arc::default();
    let recorder = step_times.clone();
    let watch = tokio::spawn(
        watcher(canaries.clone(), watcher::Config::default())
            .applied_objects()
            .try_for_each(move |canary| {
                let recorder = recorder.clone();
                async move {
                    if let Some(at) = canary.status.as_ref().and_then(|s| s.last_step_time) {
                        let mut times = recorder.lock();
                        let entry = times
                            .entry(canary.metadata.name.clone().unwrap_or_default())
                            .or_default();
                        if entry.last() != Some(&at) {
                            entry.push(at);
                        }
                    }
                    Ok(())
                }
            }),
    );
    (step_times, watch)
}

/// How late each observed step was against the interval, in seconds.
fn lateness(step_times: &BTreeMap<String, Vec<jiff::Timestamp>>, interval_s: f64) -> Vec<f64> {
    let mut late = Vec::new();
    for times in step_times.values() {
        for pair in times.windows(2) {
            let gap = (pair[1].as_millisecond() - pair[0].as_millisecond()) as f64 / 1000.0;
            late.push((gap - interval_s).max(0.0));
        }
    }
    late
}

/// What the steady window measured.
struct Window {
    elapsed_s: f64,
    reads: f64,
    writes: f64,
    cpu_s: f64,
    rss_kib: u64,
    peak_kib: u64,
    lateness: Vec<f64>,
}

/// Steady state: step times, API requests and the controller's CPU over the window.
async fn steady_window(
    client: &Client,
    canaries: &Api<Canary>,
    pid: u32,
    bench: &ControllerBench,
) -> Result<Window, BenchError> {
    let (step_times, watch) = record_steps(canaries);
    let before = request_counts(client).await?;
    let cpu_before = cpu_seconds(pid);
    let window_started = Instant::now();
    tokio::time::sleep(bench.interval * bench.intervals).await;
    let elapsed_s = window_started.elapsed().as_secs_f64();
    let after = request_counts(client).await?;
    let cpu_s = cpu_seconds(pid) - cpu_before;
    let (rss_kib, peak_kib) = memory_kib(pid);
    watch.abort();
    let lateness = lateness(&step_times.lock(), bench.interval.as_secs_f64());
    Ok(Window {
        elapsed_s,
        reads: after.reads - before.reads,
        writes: after.writes - before.writes,
        cpu_s,
        rss_kib,
        peak_kib,
        lateness,
    })
}

/// A controller process for `ns` with no reachable Prometheus. It picks its own port; its
/// first line names it, and the rest of its stdout is drained, so the report stays the only
/// thing printed.
/// The controller over `ns`, and the address of its /metrics.
pub(super) async fn start_controller(
    executable: &Path,
    ns: &str,
) -> Result<(tokio::process::Child, std::net::SocketAddr), BenchError> {
    let args = [
        "controller",
        "--namespace",
        ns,
        "--listen",
        "127.0.0.1:0",
        "--metrics-server",
        "http://127.0.0.1:9",
        "--min-interval",
        "1s",
    ];
    super::start_listening(executable, &args, "the controller").await
}

async fn measure(
    executable: &Path,
    client: &Client,
    ns: &str,
    bench: &ControllerBench,
) -> Result<serde_json::Value, BenchError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let canaries: Api<Canary> = Api::namespaced(client.clone(), ns);
    let create_started = Instant::now();
    create_canaries(&deployments, &canaries, bench).await?;
    let created_in = create_started.elapsed();
    let (mut controller, _) = start_controller(executable, ns).await?;
    let pid = controller.id().unwrap_or(0);
    let n = bench.canaries;
    let init_started = Instant::now();
    let patience = Duration::from_secs(900);
    wait_for("every canary Initialized", patience, async || {
        Ok(counted(&canaries, |s| s.phase == CanaryPhase::Initialized).await? == n)
    })
    .await?;
    let initialized_in = init_started.elapsed();
    start_rollouts(&deployments, n).await?;
    wait_for(
        "every canary Progressing with traffic",
        patience,
        async || {
            let moving =
                |s: &CanaryStatus| s.phase == CanaryPhase::Progressing && s.canary_weight >= 1;
            Ok(counted(&canaries, moving).await? == n)
        },
    )
    .await?;
    let window = steady_window(client, &canaries, pid, bench).await;
    let _ = controller.kill().await;
    let window = window?;
    let setup = (created_in.as_secs_f64(), initialized_in.as_secs_f64());
    Ok(report(bench, setup, window))
}

fn report(
    bench: &ControllerBench,
    (created_s, initialized_s): (f64, f64),
    window: Window,
) -> serde_json::Value {
    let n = bench.canaries;
    let interval_s = bench.interval.as_secs_f64();
    let elapsed = window.elapsed_s;
    let intervals_observed = elapsed / interval_s;
    let per_canary_interval = |count: f64| round(count / (n as f64 * intervals_observed));
    let mut lateness = window.lateness;
    json!({
        "benchmark": "controller",
        "canaries": n,
        "interval_s": interval_s,
        "window_s": round(elapsed),
        "setup": { "created_s": round(created_s), "initialized_s": round(initialized_s) },
        "controller_rss_mib": round(window.rss_kib as f64 / 1024.0),
        "controller_peak_rss_mib": round(window.peak_kib as f64 / 1024.0),
        "controller_cpu_cores": round(window.cpu_s / elapsed),
        "api_reads_per_canary_per_interval": per_canary_interval(window.reads),
        "api_writes_per_canary_per_interval": per_canary_interval(window.writes),
        "steps_observed": lateness.len(),
        "step_lateness_p50_s": round(percentile(&mut lateness.clone(), 0.5).unwrap_or(0.0)),
        "step_lateness_p99_s": round(percentile(&mut lateness, 0.99).unwrap_or(0.0)),
        "targets": { "controller_rss_mib_at_1000": 64, "api_reads_per_canary_per_interval": 0.05, "step_lateness_p99_s": 1.0 },
        "machine": machine("controller, kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kwok share this machine; reads count GET/LIST on canaries, deployments, services, virtualservices and destinationrules"),
    })
}
