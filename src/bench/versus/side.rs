//! One controller's turn: N fresh canaries, a steady window, then some canaries made to fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::identity::{self, Identity};
use super::peers::{canary_weight, status_of, Peer, THRESHOLD};
use super::telemetry::Telemetry;
use super::VersusBench;
use crate::bench::controller::{start_rollouts, wait_for};
use crate::bench::{cpu_seconds, memory_kib, percentile, resident_kinds_kib, round, BenchError};

pub struct Context {
    pub client: Client,
    pub executable: PathBuf,
    pub telemetry: Telemetry,
    pub prometheus: String,
    pub dir: PathBuf,
}

pub struct Side {
    pub peer: Peer,
    pub report: Value,
}

fn target(index: usize) -> String {
    format!("app-{index}")
}

/// N Deployments and their Canaries, 16 at a time; each target's telemetry healthy.
async fn create_targets(
    context: &Context,
    ns: &str,
    peer: Peer,
    bench: &VersusBench,
) -> Result<(), BenchError> {
    let deployments: Api<Deployment> = Api::namespaced(context.client.clone(), ns);
    let canaries: Api<DynamicObject> =
        Api::namespaced_with(context.client.clone(), ns, &peer.canaries());
    futures::stream::iter(0..bench.canaries)
        .map(|index| {
            let (deployments, canaries) = (deployments.clone(), canaries.clone());
            let name = target(index);
            context.telemetry.set(ns, &name, 0.0);
            async move {
                let deployment = crate::bench::controller::target(&name);
                deployments
                    .create(&PostParams::default(), &deployment)
                    .await?;
                let canary: DynamicObject =
                    serde_json::from_value(peer.canary(&name, bench.interval))
                        .map_err(|e| BenchError::Timeout(e.to_string()))?;
                canaries.create(&PostParams::default(), &canary).await?;
                Ok::<_, BenchError>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

async fn count(
    canaries: &Api<DynamicObject>,
    test: impl Fn(&str, u64) -> bool,
) -> Result<usize, BenchError> {
    let list = canaries.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|c| {
            let (phase, weight, _) = status_of(c);
            test(&phase, weight)
        })
        .count())
}

/// Per name, what a watch saw and when.
type Timeline<T> = Arc<Mutex<BTreeMap<String, Vec<(Instant, T)>>>>;

/// Records, for each object of `api`, every change of `read`'s value with the time seen.
fn record<T>(
    api: Api<DynamicObject>,
    read: impl Fn(&DynamicObject) -> T + Send + Sync + 'static,
) -> (Timeline<T>, tokio::task::JoinHandle<()>)
where
    T: PartialEq + Send + 'static,
{
    let timeline: Timeline<T> = Arc::default();
    let recorder = timeline.clone();
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let _ = stream
            .try_for_each(|object| {
                let value = read(&object);
                let mut timeline = recorder.lock();
                let entry = timeline
                    .entry(object.metadata.name.clone().unwrap_or_default())
                    .or_default();
                if entry.last().is_none_or(|(_, last)| *last != value) {
                    entry.push((Instant::now(), value));
                }
                futures::future::ready(Ok(()))
            })
            .await;
    });
    (timeline, task)
}

fn virtual_services(client: &Client, ns: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "VirtualService",
    ));
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// How late each step in `[from, to]` came after the one before, in seconds.
fn lateness(
    weights: &BTreeMap<String, Vec<(Instant, u64)>>,
    (from, to): (Instant, Instant),
    interval: f64,
) -> Vec<f64> {
    let mut late = Vec::new();
    for changes in weights.values() {
        let inside: Vec<Instant> = changes
            .iter()
            .map(|(at, _)| *at)
            .filter(|at| *at >= from && *at <= to)
            .collect();
        for pair in inside.windows(2) {
            late.push((pair[1].duration_since(pair[0]).as_secs_f64() - interval).max(0.0));
        }
    }
    late
}

/// What the steady window measured.
struct Window {
    seconds: f64,
    requests: identity::VerbCounts,
    cpu_seconds: f64,
    rss_kib: u64,
    /// Anonymous and file-backed resident KiB.
    rss_kinds_kib: (u64, u64),
    lateness: Vec<f64>,
}

async fn steady_window(
    pid: u32,
    user: &str,
    bench: &VersusBench,
    weights: &Timeline<u64>,
) -> Result<Window, BenchError> {
    let log = identity::audit_log()?;
    let (offset, cpu, started) = (
        identity::audit_offset(&log),
        cpu_seconds(pid),
        Instant::now(),
    );
    tokio::time::sleep(bench.interval * bench.intervals).await;
    let ended = Instant::now();
    let cpu_seconds = cpu_seconds(pid) - cpu;
    // The audit backend writes after the response: give it a moment before reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = identity::count_requests(&log, (offset, identity::audit_offset(&log)), user)?;
    Ok(Window {
        seconds: ended.duration_since(started).as_secs_f64(),
        requests,
        cpu_seconds,
        rss_kib: memory_kib(pid).0,
        rss_kinds_kib: resident_kinds_kib(pid),
        lateness: lateness(
            &weights.lock(),
            (started, ended),
            bench.interval.as_secs_f64(),
        ),
    })
}

/// Makes the first `failing` canaries fail and returns, for each that rolled back, the
/// seconds from the flip to the threshold and from the threshold to no canary weight.
async fn rollbacks(
    context: &Context,
    ns: &str,
    peer: Peer,
    bench: &VersusBench,
    weights: &Timeline<u64>,
) -> Result<Vec<(f64, f64)>, BenchError> {
    let canaries: Api<DynamicObject> =
        Api::namespaced_with(context.client.clone(), ns, &peer.canaries());
    let (checks, task) = record(canaries, |c| status_of(c).2 >= THRESHOLD);
    let failing: Vec<String> = (0..bench.failing.min(bench.canaries)).map(target).collect();
    let flipped = Instant::now();
    for name in &failing {
        context.telemetry.set(ns, name, 0.5);
    }
    let rolled_back = |name: &String| -> Option<(f64, f64)> {
        let reached = checks
            .lock()
            .get(name)?
            .iter()
            .find(|(_, reached)| *reached)
            .map(|(at, _)| *at)?;
        let zero = weights
            .lock()
            .get(name)?
            .iter()
            .find(|(at, w)| *at >= flipped && *w == 0)
            .map(|(at, _)| *at)?;
        let after = zero.checked_duration_since(reached).unwrap_or_default();
        Some((
            reached.duration_since(flipped).as_secs_f64(),
            after.as_secs_f64(),
        ))
    };
    // The checks read a one-minute rate: a failure shows within it, then THRESHOLD intervals.
    let patience = Duration::from_secs(180) + bench.interval * (THRESHOLD as u32 + 4);
    // Past the patience, the report says how many were timed rather than losing the window.
    let _ = wait_for("the failing canaries rolled back", patience, async || {
        Ok(failing.iter().all(|n| rolled_back(n).is_some()))
    })
    .await;
    task.abort();
    Ok(failing.iter().filter_map(rolled_back).collect())
}

/// One controller's turn, in a namespace of its own, deleted after.
pub async fn measure(
    context: &Context,
    peer: Peer,
    bench: &VersusBench,
) -> Result<Side, BenchError> {
    let ns = format!("bench-{}-{}", peer.name(), rand::random::<u32>() % 100_000);
    let namespaces: Api<Namespace> = Api::all(context.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": ns } }))
                .map_err(|e| BenchError::Timeout(e.to_string()))?,
        )
        .await?;
    let identity = identity::identity(&context.client, peer.name(), &context.dir).await?;
    let result = turn(context, &ns, peer, bench, &identity).await;
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    Ok(Side {
        peer,
        report: result?,
    })
}

async fn turn(
    context: &Context,
    ns: &str,
    peer: Peer,
    bench: &VersusBench,
    identity: &Identity,
) -> Result<Value, BenchError> {
    create_targets(context, ns, peer, bench).await?;
    let mut child = peer.start(&context.executable, ns, identity, &context.prometheus)?;
    let pid = child.id().unwrap_or(0);
    let outcome = drive(context, ns, peer, bench, identity, pid).await;
    let (_, peak_kib) = memory_kib(pid);
    let _ = child.kill().await;
    let (setup, window, rollbacks, weights_seen) = outcome?;
    Ok(side_report(
        bench,
        setup,
        window,
        rollbacks,
        peak_kib,
        weights_seen,
    ))
}

type Driven = (f64, Window, Vec<(f64, f64)>, usize);

async fn drive(
    context: &Context,
    ns: &str,
    peer: Peer,
    bench: &VersusBench,
    identity: &Identity,
    pid: u32,
) -> Result<Driven, BenchError> {
    let canaries: Api<DynamicObject> =
        Api::namespaced_with(context.client.clone(), ns, &peer.canaries());
    let n = bench.canaries;
    let setup_started = Instant::now();
    let patience = Duration::from_secs(1200);
    wait_for("every canary Initialized", patience, async || {
        Ok(count(&canaries, |p, _| p == "Initialized").await? == n)
    })
    .await?;
    let (weights, task) = record(virtual_services(&context.client, ns), |vs| {
        canary_weight(vs, vs.metadata.name.as_deref().unwrap_or_default())
    });
    start_rollouts(&Api::namespaced(context.client.clone(), ns), n).await?;
    wait_for(
        "every canary Progressing with traffic",
        patience,
        async || Ok(count(&canaries, |p, w| p == "Progressing" && w >= 1).await? == n),
    )
    .await?;
    let setup = setup_started.elapsed().as_secs_f64();
    let window = steady_window(pid, &identity.user, bench, &weights).await;
    let rollbacks = match &window {
        Ok(_) => rollbacks(context, ns, peer, bench, &weights).await,
        Err(_) => Ok(Vec::new()),
    };
    let weights_seen = weights.lock().values().map(Vec::len).sum();
    task.abort();
    Ok((setup, window?, rollbacks?, weights_seen))
}

fn side_report(
    bench: &VersusBench,
    setup_s: f64,
    window: Window,
    rollbacks: Vec<(f64, f64)>,
    peak_kib: u64,
    weights_seen: usize,
) -> Value {
    let per_canary_interval = bench.canaries as f64 * window.seconds / bench.interval.as_secs_f64();
    let (reads, writes) = identity::reads_and_writes(&window.requests);
    let all: u64 = window.requests.values().sum();
    let per = |count: u64| round(count as f64 / per_canary_interval);
    let mut lateness = window.lateness;
    let (mut to_threshold, mut after): (Vec<f64>, Vec<f64>) = rollbacks.into_iter().unzip();
    json!({
        "initialized_and_progressing_s": round(setup_s),
        "window_s": round(window.seconds),
        "steady_rss_mib": round(window.rss_kib as f64 / 1024.0),
        "peak_rss_mib": round(peak_kib as f64 / 1024.0),
        "steady_rss_anonymous_mib": round(window.rss_kinds_kib.0 as f64 / 1024.0),
        "steady_rss_file_backed_mib": round(window.rss_kinds_kib.1 as f64 / 1024.0),
        "cpu_cores": round(window.cpu_seconds / window.seconds),
        "api_requests_by_verb": window.requests,
        "api_reads_per_canary_per_interval": per(reads),
        "api_writes_per_canary_per_interval": per(writes),
        "api_requests_per_canary_per_interval": per(all),
        "steps_observed": lateness.len(),
        "virtual_service_weight_changes_seen": weights_seen,
        "step_lateness_p50_s": percentile(&mut lateness, 0.5).map(round),
        "step_lateness_p99_s": percentile(&mut lateness, 0.99).map(round),
        "rollbacks_timed": to_threshold.len(),
        "failure_to_threshold_p50_s": percentile(&mut to_threshold, 0.5).map(round),
        "rollback_after_threshold_p50_s": percentile(&mut after, 0.5).map(round),
        "rollback_after_threshold_p99_s": percentile(&mut after, 0.99).map(round),
    })
}
