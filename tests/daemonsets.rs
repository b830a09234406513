//! DaemonSet targets on the real control plane: kube-controller-manager's DaemonSet controller
//! runs one pod per kwok node, and the controller rolls a DaemonSet out through Istio routes,
//! judged by Istio telemetry in a real Prometheus. The idle canary is scaled down by its node
//! selector, so it runs on no node, and a promotion or a rollback leaves it so.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use aviary::api::CanaryPhase;
use aviary::controller::workload::SCALED_DOWN_KEY;
use support::eventually;
use support::fixture::Fixture;
use support::telemetry::Health;

const LIMIT: Duration = Duration::from_secs(120);
const AGENT: &str = "agent";
/// The fake nodes `tests/env/testenv up` makes.
const NODES: i32 = 3;

fn daemon_sets(f: &Fixture) -> Api<DaemonSet> {
    Api::namespaced(f.client.clone(), &f.ns)
}

async fn create_daemon_set(f: &Fixture, name: &str, strategy: &str) {
    let daemon_set: DaemonSet = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "selector": { "matchLabels": { "app": name } },
            "updateStrategy": { "type": strategy },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "agent", "image": "agent:1" }] }
            }
        }
    }))
    .unwrap();
    daemon_sets(f)
        .create(&PostParams::default(), &daemon_set)
        .await
        .unwrap();
}

async fn set_image(f: &Fixture, name: &str, image: &str) {
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "agent", "image": image }] } } } });
    daemon_sets(f)
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
}

/// (image, scaled down, pods scheduled, pods available) of a DaemonSet.
async fn state_of(f: &Fixture, name: &str) -> (String, bool, i32, i32) {
    let daemon_set = daemon_sets(f).get(name).await.unwrap();
    let spec = daemon_set.spec.unwrap().template.spec.unwrap();
    let image = spec.containers[0].image.clone().unwrap_or_default();
    let scaled_down = spec
        .node_selector
        .is_some_and(|s| s.contains_key(SCALED_DOWN_KEY));
    let status = daemon_set.status.unwrap_or_default();
    let available = status.number_available.unwrap_or(0);
    (
        image,
        scaled_down,
        status.desired_number_scheduled,
        available,
    )
}

/// Waits until `name` runs `image` on every node (`up`) or on none.
async fn wait_for(f: &Fixture, name: &str, image: &str, up: bool) {
    let want = if up { NODES } else { 0 };
    eventually(LIMIT, || async {
        let (running, scaled_down, scheduled, available) = state_of(f, name).await;
        running == image && scaled_down != up && scheduled == want && available == want
    })
    .await;
}

async fn create_canary(f: &Fixture, name: &str, revert_on_deletion: bool) {
    let analysis = json!({
        "interval": "2s", "threshold": 2, "stepWeight": 25, "maxWeight": 50,
        "metrics": [
            { "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } },
            { "name": "request-duration", "interval": "10s", "thresholdRange": { "max": 500 } }
        ]
    });
    let extra = json!({
        "targetRef": { "apiVersion": "apps/v1", "kind": "DaemonSet", "name": name },
        "revertOnDeletion": revert_on_deletion
    });
    f.create_canary(name, name, analysis, extra).await;
}

#[tokio::test]
async fn a_daemon_set_is_promoted_on_healthy_telemetry_and_rolled_back_on_failing() {
    let f = Fixture::new("daemonset").await;
    f.telemetry.set(&f.ns, AGENT, Health::GOOD);
    create_daemon_set(&f, AGENT, "RollingUpdate").await;
    create_canary(&f, AGENT, true).await;
    f.wait_phase(AGENT, CanaryPhase::Initialized, LIMIT).await;
    wait_for(&f, "agent-primary", "agent:1", true).await;
    wait_for(&f, AGENT, "agent:1", false).await;

    set_image(&f, AGENT, "agent:2").await;
    let phases = [CanaryPhase::Succeeded, CanaryPhase::Failed];
    let (weights, status) = f.weights_until(AGENT, AGENT, &phases, LIMIT).await;
    assert_eq!(status.phase, CanaryPhase::Succeeded, "{weights:?}");
    assert_eq!(weights, [0, 25, 50, 0]);
    wait_for(&f, "agent-primary", "agent:2", true).await;
    wait_for(&f, AGENT, "agent:2", false).await;
    let reasons = f.event_reasons().await;
    let step = reasons.iter().find(|(r, _)| r == "WeightAdvanced");
    let step = step.map(|(_, m)| m.clone()).unwrap_or_default();
    assert!(step.contains("request-success-rate=100"), "{step}");

    f.telemetry.set(&f.ns, AGENT, Health::FAILING);
    set_image(&f, AGENT, "agent:3").await;
    f.wait_phase(AGENT, CanaryPhase::Progressing, LIMIT).await;
    let (weights, status) = f.weights_until(AGENT, AGENT, &phases, LIMIT).await;
    assert_eq!(status.phase, CanaryPhase::Failed, "{weights:?}");
    assert_eq!(
        f.routed_weight(AGENT).await,
        Some(0),
        "no traffic on the canary"
    );
    wait_for(&f, AGENT, "agent:3", false).await;
    assert_eq!(state_of(&f, "agent-primary").await.0, "agent:2");
    let reasons = f.event_reasons().await;
    let rolled = reasons.iter().find(|(r, _)| r == "RolledBack").unwrap();
    assert!(rolled.1.contains("request-success-rate"), "{}", rolled.1);

    // Deleted with revertOnDeletion: the DaemonSet runs everywhere again and serves the apex.
    f.canaries()
        .delete(AGENT, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(&f, AGENT, "agent:3", true).await;
    let services: Api<Service> = Api::namespaced(f.client.clone(), &f.ns);
    eventually(LIMIT, || async {
        let apex = services.get(AGENT).await.unwrap();
        let selector = apex.spec.unwrap().selector.unwrap_or_default();
        selector.get("app").map(String::as_str) == Some(AGENT)
    })
    .await;
}

#[tokio::test]
async fn a_daemon_set_that_updates_on_delete_is_refused_with_the_field() {
    let f = Fixture::new("daemonset-ondelete").await;
    create_daemon_set(&f, AGENT, "OnDelete").await;
    create_canary(&f, AGENT, false).await;
    eventually(LIMIT, || async {
        let ready = f.condition(AGENT, "Ready").await;
        ready.is_some_and(|(_, reason, _)| reason == "InvalidSpec")
    })
    .await;
    let (status, _, message) = f.condition(AGENT, "Ready").await.unwrap();
    assert_eq!(status, "False");
    assert!(message.contains("spec.targetRef"), "{message}");
    let primary = daemon_sets(&f).get_opt("agent-primary").await.unwrap();
    assert!(primary.is_none(), "no primary written");
    assert!(!state_of(&f, AGENT).await.1, "the target is left as it is");
}
