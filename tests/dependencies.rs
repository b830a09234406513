//! Slow and dead dependencies, on the real control plane: a Prometheus that takes requests and
//! never answers, one that answers in 9 s, one that flaps, and a webhook receiver that hangs.
//! In each case the canary that depends on it holds with a clear status and never promotes on
//! missing data, while a canary beside it under the same controller keeps its schedule.
//! (A notifier that hangs is tests/notify.rs: the rollout is not slowed by it.)

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use aviary::api::{CanaryPhase, MetricTemplate};
use support::faulty::{Fault, FaultyPrometheus};
use support::fixture::Fixture;
use support::receiver::Receiver;
use support::telemetry::{Health, ProxyTelemetry};

const LIMIT: Duration = Duration::from_secs(120);
const INTERVAL: Duration = Duration::from_secs(2);
/// How long the dependency stays broken while the other canary rolls out.
const BROKEN_FOR: Duration = Duration::from_secs(30);

fn analysis(metric: Value, webhooks: Value) -> Value {
    json!({
        "interval": "2s",
        "threshold": 2,
        "stepWeight": 25,
        "maxWeight": 50,
        "metrics": [metric],
        "webhooks": webhooks
    })
}

fn success_rate() -> Value {
    json!({ "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } })
}

/// A MetricTemplate whose provider is `address`.
async fn template(f: &Fixture, address: &str) {
    let api: Api<MetricTemplate> = Api::namespaced(f.client.clone(), &f.ns);
    let spec =
        json!({ "provider": { "type": "prometheus", "address": address }, "query": "vector(100)" });
    let manifest = json!({ "apiVersion": "aviary.dev/v1beta1", "kind": "MetricTemplate", "metadata": { "name": "through-fault" }, "spec": spec });
    let template: MetricTemplate = serde_json::from_value(manifest).unwrap();
    api.create(&PostParams::default(), &template).await.unwrap();
}

/// Starts `held` (with `analysis`) and `steady` (the built-in check only) from :1 to :2.
async fn start_both(f: &Fixture, held: Value) {
    for name in ["held", "steady"] {
        f.telemetry.set(&f.ns, name, Health::GOOD);
        f.create_target(name, &format!("{name}:1")).await;
    }
    let deadline = json!({ "progressDeadlineSeconds": 600 });
    f.create_canary("held", "held", held, deadline.clone())
        .await;
    let steady = analysis(success_rate(), json!([]));
    f.create_canary("steady", "steady", steady, deadline).await;
    for name in ["held", "steady"] {
        f.wait_phase(name, CanaryPhase::Initialized, LIMIT).await;
        f.set_image(name, &format!("{name}:2")).await;
    }
}

/// Polls both canaries for `BROKEN_FOR`: the steady one must succeed with every weight change
/// within an interval of the last (plus room for a loaded machine), the held one must never
/// reach Promoting (unless `may_advance`: a flapping dependency answers some of the time, and
/// the steps it answered may pass; it must still never fail). Returns the longest gap between
/// the steady canary's weight changes.
async fn steady_keeps_its_schedule_while_held_holds(f: &Fixture, may_advance: bool) -> Duration {
    let started = Instant::now();
    let (mut last_change, mut last_weight, mut longest) = (Instant::now(), None, Duration::ZERO);
    let mut steady_done = false;
    while started.elapsed() < BROKEN_FOR {
        let held = f.status("held").await;
        // Initialized until the new revision is seen, which a loaded machine can delay.
        let holding = matches!(
            held.phase,
            CanaryPhase::Initialized | CanaryPhase::Progressing | CanaryPhase::Waiting
        );
        assert!(
            holding || (may_advance && held.phase != CanaryPhase::Failed),
            "the held canary moved on without data: {held:#?}"
        );
        let steady = f.status("steady").await;
        if steady.phase == CanaryPhase::Succeeded {
            steady_done = true;
        } else if steady.phase == CanaryPhase::Progressing
            && last_weight != Some(steady.canary_weight)
        {
            if last_weight.is_some() {
                longest = longest.max(last_change.elapsed());
            }
            (last_change, last_weight) = (Instant::now(), Some(steady.canary_weight));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        steady_done,
        "the steady canary did not finish within {BROKEN_FOR:?}"
    );
    assert!(
        longest <= INTERVAL + Duration::from_secs(4),
        "a step of the steady canary came {longest:?} after the last"
    );
    longest
}

async fn events_of(f: &Fixture, reason: &str) -> Vec<String> {
    let events = f.event_reasons().await;
    events
        .into_iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, note)| note)
        .collect()
}

/// The held canary has not promoted: its primary still runs :1, and no check failed.
async fn never_promoted(f: &Fixture) {
    assert_eq!(f.image_of("held-primary").await, "held:1");
    let held = f.status("held").await;
    assert_eq!(
        held.failed_checks, 0,
        "no data is not a failed check: {held:#?}"
    );
}

async fn prometheus_fault(prefix: &str, fault: Fault) {
    let mut f = Fixture::new(prefix).await;
    let faulty = FaultyPrometheus::start(&ProxyTelemetry::shared().1);
    faulty.set(fault);
    template(&f, &faulty.url).await;
    let metric = json!({ "name": "through-fault", "interval": "10s", "templateRef": { "name": "through-fault" }, "thresholdRange": { "min": 99 } });
    start_both(&f, analysis(metric, json!([]))).await;
    let flapping = matches!(fault, Fault::Flap(_));
    let longest = steady_keeps_its_schedule_while_held_holds(&f, flapping).await;
    if !flapping {
        never_promoted(&f).await;
    }
    let held = events_of(&f, "AnalysisHeld").await;
    assert!(
        held.iter().any(|note| note.contains(&faulty.url)),
        "the event names the provider: {held:#?}"
    );
    faulty.set(Fault::None);
    let ended = f.wait_phase("held", CanaryPhase::Succeeded, LIMIT).await;
    assert_eq!(ended.failed_checks, 0);
    let running = f.controller.child.try_wait().unwrap().is_none();
    assert!(running, "the controller exited:\n{}", f.controller.logs());
    println!("| Prometheus {fault:?} | held, then Succeeded | steady: longest step {longest:?} | controller still running, restarts 0: {running} |");
}

#[tokio::test]
async fn a_prometheus_that_never_answers() {
    prometheus_fault("blackhole", Fault::Blackhole).await;
}

#[tokio::test]
async fn a_prometheus_that_answers_in_nine_seconds() {
    prometheus_fault("slowprom", Fault::Slow(Duration::from_secs(9))).await;
}

#[tokio::test]
async fn a_prometheus_that_flaps() {
    prometheus_fault("flapping", Fault::Flap(Duration::from_secs(3))).await;
}

#[tokio::test]
async fn a_webhook_receiver_that_hangs() {
    let f = Fixture::new("hanghook").await;
    let r = Receiver::start();
    let gate = json!([{ "name": "gate", "type": "confirm-rollout", "url": r.url("/hang"), "timeout": "1s" }]);
    start_both(&f, analysis(success_rate(), gate)).await;
    let longest = steady_keeps_its_schedule_while_held_holds(&f, false).await;
    never_promoted(&f).await;
    let held = f.status("held").await;
    assert_eq!(held.phase, CanaryPhase::Waiting, "{held:#?}");
    let (_, _, message) = f.condition("held", "Promoted").await.unwrap();
    assert!(
        message.contains("no answer from") && message.contains("/hang"),
        "{message}"
    );
    println!("| webhook hang | held in Waiting: {message} | steady: longest step {longest:?} |");
}
