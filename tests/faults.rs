//! Faults the controller survives, on the real control plane: its API server crashes and etcd
//! restarts in the middle of a step. Each test has its own namespace and controller process; the
//! restarts are made by `tests/env/testenv restart`, so tests here must not run beside others
//! (cargo runs one test binary at a time; keep one test here, or serialise them).

mod support;

use std::time::Duration;

use serde_json::{json, Value};

use aviary::api::CanaryPhase;
use support::fixture::Fixture;
use support::telemetry::Health;

const LIMIT: Duration = Duration::from_secs(120);

fn stepped() -> Value {
    json!({
        "interval": "3s",
        "threshold": 2,
        "stepWeight": 10,
        "maxWeight": 50,
        "metrics": [
            { "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } }
        ]
    })
}

/// The weight the VirtualService routes to the canary; None while it cannot be read (the API
/// server is down).
async fn routed(f: &Fixture, service: &str) -> Option<i64> {
    let vs = f.virtual_services().get_opt(service).await.ok()??;
    let http = vs.data["spec"]["http"].as_array()?.clone();
    let main = http.iter().find(|r| r["name"] == "primary")?;
    let canary = format!("{service}-canary");
    let route = main["route"].as_array()?;
    route
        .iter()
        .find(|d| d["destination"]["host"] == json!(canary))?["weight"]
        .as_i64()
}

/// Stops a component of the test environment (`how`: `--kill` for a crash, `--term` to
/// let it shut down), keeps it down for `down_seconds` and starts it again, without blocking
/// the runtime.
async fn restart(component: &'static str, how: &'static str, down_seconds: &'static str) {
    tokio::task::spawn_blocking(move || {
        let mut args = vec!["restart", component, "--down", down_seconds];
        args.extend((how == "--kill").then_some(how));
        support::testenv_cmd(&args)
    })
    .await
    .unwrap();
}

/// Every distinct routed weight, and the phases seen, until `until` resolves.
async fn watch_weights(
    f: &Fixture,
    name: &str,
    until: impl std::future::Future<Output = ()>,
) -> Vec<i64> {
    let mut weights = Vec::new();
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return weights,
            () = tokio::time::sleep(Duration::from_millis(150)) => {}
        }
        if let Some(weight) = routed(f, name).await {
            if weights.last() != Some(&weight) {
                weights.push(weight);
            }
        }
    }
}

/// Steps go up by the step weight, one at a time, then straight back to 0 at the end: no step
/// repeated, none skipped.
fn assert_steps(weights: &[i64], step: i64) {
    for pair in weights.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        assert!(
            to == from + step || to == 0,
            "a weight jump {from} -> {to} in {weights:?}"
        );
    }
}

#[tokio::test]
async fn a_rollout_goes_on_across_an_api_server_crash_and_an_etcd_restart() {
    let mut f = Fixture::new("restarts").await;
    f.telemetry.set(&f.ns, "web", Health::GOOD);
    f.create_target("web", "web:1").await;
    f.create_canary("web", "web", stepped(), json!({})).await;
    f.wait_phase("web", CanaryPhase::Initialized, LIMIT).await;
    f.set_image("web", "web:2").await;
    f.wait_phase("web", CanaryPhase::Progressing, LIMIT).await;
    let faults_then_success = async {
        restart("apiserver", "--kill", "3").await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        // Stopped, not killed: this etcd runs without fsync, so a SIGKILL loses its last
        // writes, which is an etcd restore rather than a restart (and confuses the
        // controller-manager that rolls the primary out, not only Aviary).
        restart("etcd", "--term", "3").await;
        f.wait_phase("web", CanaryPhase::Succeeded, LIMIT).await;
    };
    let weights = watch_weights(&f, "web", faults_then_success).await;
    println!("weights across the restarts: {weights:?}");
    assert_eq!(f.status("web").await.canary_weight, 0);
    assert_steps(&weights, 10);
    assert_eq!(weights.last(), Some(&0), "{weights:?}");
    assert!(
        f.controller.child.try_wait().unwrap().is_none(),
        "the controller kept running:\n{}",
        f.controller.logs()
    );
}
