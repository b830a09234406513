//! `aviary bench soak --canaries N`: memory under churn on the cluster in KUBECONFIG. Canaries
//! go through their whole life in batches: created, initialized, rolled out (half promoted,
//! half rolled back by a pre-rollout webhook that cannot be reached), and deleted with their
//! targets. The controller's RSS once everything is gone is compared with its RSS after the
//! warm-up batches, when its allocator and pools have reached their working size. Every
//! reading is taken after the controller has idled, after every batch, so the trace shows
//! whether memory climbs with churn (a leak) or stays at its working size.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use super::controller::{counted, wait_for};
use super::{machine, memory_kib, round, BenchError};
use crate::api::{Canary, CanaryPhase};

#[derive(Debug, Clone)]
pub struct SoakBench {
    pub canaries: usize,
    /// Canaries alive at once.
    pub batch: usize,
    /// Batches before the "before" reading.
    pub warmup: usize,
}

/// How long one batch may take at any stage.
const PATIENCE: Duration = Duration::from_secs(600);
/// How long the controller idles before each RSS reading.
const SETTLE: Duration = Duration::from_secs(20);

pub async fn run(executable: &Path, bench: SoakBench) -> Result<Value, BenchError> {
    crate::http_client::install_crypto_provider();
    let client = Client::try_default().await?;
    let ns = format!("aviary-soak-{}", rand::random::<u32>() % 100_000);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({ "metadata": { "name": ns } }));
    namespaces
        .create(
            &PostParams::default(),
            &namespace.map_err(|e| BenchError::Timeout(e.to_string()))?,
        )
        .await?;
    let result = soak(executable, &client, &ns, &bench).await;
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    result
}

fn target(name: &str, batch: usize) -> Value {
    json!({
        "metadata": { "name": name, "labels": { "soak-batch": batch.to_string() } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } },
                          "spec": { "containers": [{ "name": "app", "image": "soak:1" }] } }
        }
    })
}

/// Even canaries promote (no metrics); odd ones have a pre-rollout webhook nobody answers, so
/// their first check fails and they roll back.
fn canary(name: &str, batch: usize, index: usize) -> Value {
    let webhooks = if index % 2 == 1 {
        json!([{ "name": "unreachable", "type": "pre-rollout", "url": "http://127.0.0.1:9/", "timeout": "1s" }])
    } else {
        json!([])
    };
    json!({
        "apiVersion": "aviary.dev/v1beta1", "kind": "Canary",
        "metadata": { "name": name, "labels": { "soak-batch": batch.to_string() } },
        "spec": {
            "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
            "service": { "port": 80 },
            "analysis": { "interval": "1s", "threshold": 1, "stepWeight": 50, "maxWeight": 50, "webhooks": webhooks }
        }
    })
}

fn parsed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, BenchError> {
    serde_json::from_value(value).map_err(|e| BenchError::Timeout(e.to_string()))
}

struct Apis {
    deployments: Api<Deployment>,
    canaries: Api<Canary>,
}

async fn create_batch(apis: &Apis, batch: usize, size: usize) -> Result<(), BenchError> {
    futures::stream::iter(0..size)
        .map(|index| async move {
            let name = format!("soak-{batch}-{index}");
            let deployment: Deployment = parsed(target(&name, batch))?;
            apis.deployments
                .create(&PostParams::default(), &deployment)
                .await?;
            let canary: Canary = parsed(canary(&name, batch, index))?;
            apis.canaries
                .create(&PostParams::default(), &canary)
                .await?;
            Ok::<_, BenchError>(())
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn roll_batch(apis: &Apis, batch: usize, size: usize) -> Result<(), BenchError> {
    futures::stream::iter(0..size)
        .map(|index| async move {
            let patch = json!({ "spec": { "template": { "metadata": { "annotations": { "soak/revision": "2" } } } } });
            let name = format!("soak-{batch}-{index}");
            apis.deployments.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// One batch's whole life; returns (promoted, rolled back).
async fn one_batch(apis: &Apis, batch: usize, size: usize) -> Result<(usize, usize), BenchError> {
    create_batch(apis, batch, size).await?;
    wait_for("a batch Initialized", PATIENCE, async || {
        Ok(counted(&apis.canaries, |s| s.phase == CanaryPhase::Initialized).await? == size)
    })
    .await?;
    roll_batch(apis, batch, size).await?;
    let settled = |s: &crate::api::CanaryStatus| {
        matches!(s.phase, CanaryPhase::Succeeded | CanaryPhase::Failed)
            && s.last_promoted_spec.is_some()
    };
    wait_for("a batch promoted or rolled back", PATIENCE, async || {
        Ok(counted(&apis.canaries, settled).await? == size)
    })
    .await?;
    let promoted = counted(&apis.canaries, |s| s.phase == CanaryPhase::Succeeded).await?;
    let labels = ListParams::default().labels(&format!("soak-batch={batch}"));
    apis.canaries
        .delete_collection(&DeleteParams::background(), &labels)
        .await?;
    apis.deployments
        .delete_collection(&DeleteParams::background(), &labels)
        .await?;
    wait_for("a batch deleted", PATIENCE, async || {
        Ok(apis
            .canaries
            .list(&ListParams::default())
            .await?
            .items
            .is_empty())
    })
    .await?;
    Ok((promoted, size - promoted))
}

async fn soak(
    executable: &Path,
    client: &Client,
    ns: &str,
    bench: &SoakBench,
) -> Result<Value, BenchError> {
    let apis = Apis {
        deployments: Api::namespaced(client.clone(), ns),
        canaries: Api::namespaced(client.clone(), ns),
    };
    let (mut controller, metrics) = super::controller::start_controller(executable, ns).await?;
    let pid = controller.id().unwrap_or(0);
    let heap = Heap {
        http: reqwest::Client::new(),
        url: format!("http://{metrics}/metrics"),
    };
    let outcome = churn(&apis, (pid, &heap), bench).await;
    let _ = controller.kill().await;
    outcome
}

/// Threads and open file descriptors (sockets included) of the process.
fn held(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).map_or(0, Iterator::count);
    (
        count(format!("/proc/{pid}/task")),
        count(format!("/proc/{pid}/fd")),
    )
}

/// The controller's heap as its /metrics reports it.
struct Heap {
    http: reqwest::Client,
    url: String,
}

impl Heap {
    /// MiB (allocated, resident), or zeros when the scrape fails.
    async fn read(&self) -> (f64, f64) {
        let text = match self.http.get(&self.url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let gauge = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(name));
            let value = line.and_then(|l| l.split_whitespace().nth(1));
            round(value.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1_048_576.0)
        };
        (
            gauge("aviary_heap_allocated_bytes "),
            gauge("aviary_heap_resident_bytes "),
        )
    }
}

async fn churn(
    apis: &Apis,
    (pid, heap): (u32, &Heap),
    bench: &SoakBench,
) -> Result<Value, BenchError> {
    tokio::time::sleep(SETTLE).await;
    let idle_kib = memory_kib(pid).0;
    let size = bench.batch.min(bench.canaries).max(1);
    let batches = bench.canaries.div_ceil(size);
    let mut warmup_kib = Vec::with_capacity(bench.warmup);
    for batch in 0..bench.warmup {
        one_batch(apis, batch, size).await?;
        tokio::time::sleep(SETTLE).await;
        warmup_kib.push(memory_kib(pid).0);
    }
    let before_kib = memory_kib(pid).0;
    let heap_before = heap.read().await;
    let held_before = held(pid);
    let started = Instant::now();
    let (mut promoted, mut rolled_back) = (0, 0);
    // RSS once each batch is gone and the controller has idled: a leak climbs with every
    // batch, a working size stays.
    let mut trace_kib = Vec::with_capacity(batches);
    let mut heap_trace = Vec::with_capacity(batches);
    let mut idled = Duration::ZERO;
    for batch in bench.warmup..bench.warmup + batches {
        let (p, r) = one_batch(apis, batch, size).await?;
        (promoted, rolled_back) = (promoted + p, rolled_back + r);
        tokio::time::sleep(SETTLE).await;
        idled += SETTLE;
        trace_kib.push(memory_kib(pid).0);
        heap_trace.push(heap.read().await.0);
    }
    let churn_s = (started.elapsed() - idled).as_secs_f64();
    let (after_kib, peak_kib) = memory_kib(pid);
    let heap_after = heap.read().await;
    let held_after = held(pid);
    let mib = |kib: u64| round(kib as f64 / 1024.0);
    let per_1000 = growth_per_1000(&trace_kib, size);
    Ok(json!({
        "benchmark": "soak",
        "canaries": batches * size,
        "batch": size,
        "promoted": promoted,
        "rolled_back": rolled_back,
        "churn_s": round(churn_s),
        "rollouts_per_minute": round((promoted + rolled_back) as f64 / churn_s * 60.0),
        "controller_rss_idle_mib": mib(idle_kib),
        "warmup_batches": bench.warmup,
        "controller_rss_after_each_warmup_batch_mib": warmup_kib.iter().map(|kib| mib(*kib)).collect::<Vec<_>>(),
        "controller_rss_before_mib": mib(before_kib),
        "controller_rss_after_mib": mib(after_kib),
        "controller_peak_rss_mib": mib(peak_kib),
        "rss_after_over_before": round(after_kib as f64 / before_kib.max(1) as f64),
        "controller_rss_after_each_batch_mib": trace_kib.iter().map(|kib| mib(*kib)).collect::<Vec<_>>(),
        "rss_growth_mib_per_1000_canaries": round(per_1000),
        "heap_allocated_before_after_mib": [heap_before.0, heap_after.0],
        "heap_allocated_after_each_batch_mib": heap_trace,
        "heap_resident_before_after_mib": [heap_before.1, heap_after.1],
        "controller_threads_before_after": [held_before.0, held_after.0],
        "controller_open_files_before_after": [held_before.1, held_after.1],
        "target": { "rss_after_over_before_at_most": 1.1 },
        "machine": machine("controller, kube-apiserver, etcd, kube-controller-manager, kube-scheduler and kwok share this machine; before = after the warm-up batches, after = everything deleted; every RSS reading after 20 s idle; churn_s leaves the idle time out"),
    }))
}

/// The least-squares slope of the RSS trace, in MiB per 1,000 canaries churned.
fn growth_per_1000(trace_kib: &[u64], batch: usize) -> f64 {
    let n = trace_kib.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let xs = (0..trace_kib.len()).map(|i| (i * batch) as f64 / 1000.0);
    let ys = trace_kib.iter().map(|kib| *kib as f64 / 1024.0);
    let (mean_x, mean_y) = (xs.clone().sum::<f64>() / n, ys.clone().sum::<f64>() / n);
    let covariance: f64 = xs
        .clone()
        .zip(ys)
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = xs.map(|x| (x - mean_x).powi(2)).sum();
    covariance / variance
}

#[cfg(test)]
mod tests {
    #[test]
    fn growth_is_the_slope_of_the_trace() {
        let flat = [40_960, 40_960, 40_960];
        assert_eq!(super::growth_per_1000(&flat, 200), 0.0);
        // 1 MiB more after every batch of 500 canaries: 2 MiB per 1,000.
        let climbing = [10_240, 11_264, 12_288];
        assert!((super::growth_per_1000(&climbing, 500) - 2.0).abs() < 1e-9);
    }
}
