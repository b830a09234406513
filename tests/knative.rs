//! Knative Service targets on the real control plane, with Knative Serving's own Service CRD
//! (from the `knative.dev/serving` module) and the queue-proxy's request telemetry in a real
//! Prometheus. No Knative controller runs here (it needs real pods and networking, as kwok's
//! nodes have none), so the test does its part, as kwok does the kubelet's: it makes a new
//! Revision name for each template change and publishes what Knative would in the Service's
//! status (latest created and ready Revisions, the Revisions routed). Everything the Canary
//! controller reads and writes goes through the API server as it would with Knative.

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use aviary::api::{Canary, CanaryPhase};
use support::eventually;
use support::fixture::Fixture;
use support::telemetry::Health;

const LIMIT: Duration = Duration::from_secs(120);
const SERVICE: &str = "web";
const PRIMARY_ANNOTATION: &str = "aviary.dev/primary-revision";

fn services(f: &Fixture) -> Api<DynamicObject> {
    f.dynamic("serving.knative.dev", "v1", "Service")
}

fn revision(n: u32) -> String {
    format!("{SERVICE}-{n:05}")
}

/// What Knative's controller would publish once Revision `latest` is made and ready, with
/// `routed` receiving traffic.
async fn publish(f: &Fixture, latest: u32, routed: &[u32]) {
    let traffic: Vec<Value> = routed
        .iter()
        .map(|n| json!({ "revisionName": revision(*n), "percent": 100 / routed.len() }))
        .collect();
    let status = json!({
        "status": {
            "observedGeneration": 1,
            "latestCreatedRevisionName": revision(latest),
            "latestReadyRevisionName": revision(latest),
            "traffic": traffic,
            "conditions": [{ "type": "Ready", "status": "True" }]
        }
    });
    services(f)
        .patch_status(SERVICE, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// A new template: Knative makes Revision `n` from it.
async fn release(f: &Fixture, n: u32, routed: &[u32]) {
    let template = json!({ "spec": { "template": { "spec": { "containers": [{ "image": format!("web:{n}") }] } } } });
    services(f)
        .patch(SERVICE, &PatchParams::default(), &Patch::Merge(&template))
        .await
        .unwrap();
    publish(f, n, routed).await;
}

async fn create_service(f: &Fixture) {
    let service: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": { "name": SERVICE },
        "spec": { "template": { "spec": { "containers": [{ "image": "web:1" }] } } }
    }))
    .unwrap();
    services(f)
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    publish(f, 1, &[1]).await;
}

async fn create_canary(f: &Fixture, extra: Value) {
    let mut manifest = json!({
        "apiVersion": "aviary.dev/v1beta1",
        "kind": "Canary",
        "metadata": { "name": SERVICE },
        "spec": {
            "provider": "knative",
            "targetRef": { "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": SERVICE },
            "progressDeadlineSeconds": 60,
            "analysis": {
                "interval": "2s", "threshold": 2, "stepWeight": 25, "maxWeight": 50,
                "metrics": [
                    { "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } },
                    { "name": "request-duration", "interval": "10s", "thresholdRange": { "max": 500 } }
                ]
            }
        }
    });
    let spec = manifest["spec"].as_object_mut().unwrap();
    spec.extend(extra.as_object().cloned().unwrap_or_default());
    let canary: Canary = serde_json::from_value(manifest).unwrap();
    f.canaries()
        .create(&PostParams::default(), &canary)
        .await
        .unwrap();
}

/// The primary Revision the annotation names, and the other Revision's share of `spec.traffic`
/// (0 when the primary is the one Revision named).
async fn routing(f: &Fixture) -> (Option<String>, Option<i64>) {
    let service = services(f).get(SERVICE).await.unwrap();
    let annotations = service.metadata.annotations.unwrap_or_default();
    let primary = annotations.get(PRIMARY_ANNOTATION).cloned();
    let Some(traffic) = service.data["spec"]["traffic"].as_array().cloned() else {
        return (primary, None);
    };
    let mut others = traffic.iter().filter(|t| {
        assert_ne!(
            t["latestRevision"],
            json!(true),
            "every Revision by name: {traffic:?}"
        );
        t["revisionName"].as_str() != primary.as_deref()
    });
    let share = others.next().map_or(Some(0), |t| t["percent"].as_i64());
    (primary, share)
}

/// Every distinct share of the canary Revision until the canary ends in `phase`.
async fn weights_until(f: &Fixture, phase: CanaryPhase) -> Vec<i64> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let status = f.status(SERVICE).await;
        if let (_, Some(weight)) = routing(f).await {
            if seen.last() != Some(&weight) {
                seen.push(weight);
            }
        }
        if status.phase == phase && !status.effects_pending {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {phase:?} within {LIMIT:?}; weights {seen:?}; status {status:#?}\n{}",
            f.controller.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_knative_service_is_promoted_on_healthy_telemetry_and_rolled_back_on_failing() {
    let f = Fixture::new("knative").await;
    for n in 1..=3 {
        f.telemetry.set(&f.ns, &revision(n), Health::GOOD);
    }
    create_service(&f).await;
    create_canary(&f, json!({})).await;
    f.wait_phase(SERVICE, CanaryPhase::Initialized, LIMIT).await;
    let (primary, weight) = routing(&f).await;
    assert_eq!(primary, Some(revision(1)), "bootstrap names the primary");
    assert_eq!(weight, Some(0), "all traffic on the primary Revision");

    release(&f, 2, &[1, 2]).await;
    f.wait_phase(SERVICE, CanaryPhase::Progressing, LIMIT).await;
    let weights = weights_until(&f, CanaryPhase::Succeeded).await;
    assert_eq!(weights, vec![0, 25, 50, 0]);
    assert_eq!(routing(&f).await.0, Some(revision(2)), "promoted");
    let service = services(&f).get(SERVICE).await.unwrap();
    assert_eq!(
        service.data["spec"]["traffic"][0],
        json!({ "revisionName": revision(2), "percent": 100 }),
        "the promoted Revision by name"
    );
    let reasons = f.event_reasons().await;
    let advanced = reasons.iter().find(|(r, _)| r == "WeightAdvanced").unwrap();
    assert!(
        advanced.1.contains("request-success-rate=100"),
        "{}",
        advanced.1
    );

    f.telemetry.set(&f.ns, &revision(3), Health::FAILING);
    release(&f, 3, &[2, 3]).await;
    f.wait_phase(SERVICE, CanaryPhase::Progressing, LIMIT).await;
    let weights = weights_until(&f, CanaryPhase::Failed).await;
    assert_eq!(weights.last(), Some(&0), "{weights:?}");
    assert!(weights.iter().all(|w| *w <= 25), "{weights:?}");
    assert_eq!(routing(&f).await.0, Some(revision(2)), "the primary stays");
    let reasons = f.event_reasons().await;
    let rolled = reasons.iter().find(|(r, _)| r == "RolledBack").unwrap();
    assert!(rolled.1.contains("request-success-rate"), "{}", rolled.1);
}

/// With revertOnDeletion, deleting the Canary gives the latest Revision all traffic again and
/// takes the annotation away.
#[tokio::test]
async fn deleting_a_knative_canary_gives_traffic_back_to_the_latest_revision() {
    let f = Fixture::new("knative-revert").await;
    create_service(&f).await;
    create_canary(&f, json!({ "revertOnDeletion": true })).await;
    f.wait_phase(SERVICE, CanaryPhase::Initialized, LIMIT).await;
    f.canaries()
        .delete(SERVICE, &DeleteParams::default())
        .await
        .unwrap();
    eventually(LIMIT, || async {
        f.canaries().get_opt(SERVICE).await.unwrap().is_none()
    })
    .await;
    let service = services(&f).get(SERVICE).await.unwrap();
    assert_eq!(
        service.data["spec"]["traffic"],
        json!([{ "latestRevision": true, "percent": 100 }])
    );
    let annotations = service.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations.contains_key(PRIMARY_ANNOTATION),
        "{annotations:?}"
    );
}

/// A Knative target with another provider, and a Deployment with provider knative, are refused
/// with the field; nothing is written.
#[tokio::test]
async fn a_knative_target_needs_the_knative_provider() {
    let f = Fixture::new("knative-refused").await;
    create_service(&f).await;
    create_canary(&f, json!({ "provider": "istio" })).await;
    eventually(LIMIT, || async {
        f.condition(SERVICE, "Ready")
            .await
            .is_some_and(|(_, reason, _)| reason == "InvalidSpec")
    })
    .await;
    let (_, _, message) = f.condition(SERVICE, "Ready").await.unwrap();
    assert!(message.contains("spec.provider"), "{message}");
    assert_eq!(routing(&f).await, (None, None), "the Service is untouched");
}

/// A primary named by an earlier Canary (deleted without revertOnDeletion) is not this one's:
/// bootstrap names the current Revision primary, as a Deployment's first primary is the target.
#[tokio::test]
async fn a_knative_primary_another_canary_named_is_named_again_at_bootstrap() {
    let f = Fixture::new("knative-stale").await;
    create_service(&f).await;
    release(&f, 2, &[1, 2]).await;
    let stale = json!({ "metadata": { "annotations": {
        PRIMARY_ANNOTATION: revision(1), "aviary.dev/canary-uid": "an-earlier-canary"
    } } });
    services(&f)
        .patch(SERVICE, &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap();
    create_canary(&f, json!({})).await;
    f.wait_phase(SERVICE, CanaryPhase::Initialized, LIMIT).await;
    assert_eq!(routing(&f).await, (Some(revision(2)), Some(0)));
    let status = f.status(SERVICE).await;
    assert_eq!(status.last_applied_spec, Some(revision(2)));
}
