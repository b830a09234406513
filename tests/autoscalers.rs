//! A KEDA-scaled Deployment on the real control plane, with KEDA's own ScaledObject CRD (from
//! its Go module): the primary gets a `-primary` ScaledObject that scales `<target>-primary`
//! with its trigger queries pointed at the primary, and the canary's own ScaledObject is held
//! at zero replicas while the canary is idle, released while a revision is analysed. A
//! promotion and a rollback complete. References that cannot work are refused with the field.
//!
//! KEDA's operator does not run here (kwok nodes run no pods): what is checked is what Aviary
//! writes for it, the objects KEDA would act on.

mod support;

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use aviary::api::CanaryPhase;
use support::eventually;
use support::fixture::Fixture;
use support::telemetry::Health;

const LIMIT: Duration = Duration::from_secs(90);
const APP: &str = "shop";
const PAUSED: &str = "autoscaling.keda.sh/paused-replicas";

fn scaled_objects(f: &Fixture) -> kube::Api<DynamicObject> {
    f.dynamic("keda.sh", "v1alpha1", "ScaledObject")
}

async fn create_scaled_object(f: &Fixture) {
    let object = json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": { "name": APP },
        "spec": {
            "scaleTargetRef": { "name": APP }, "minReplicaCount": 1, "maxReplicaCount": 4,
            "triggers": [
                { "type": "prometheus", "name": "rps", "metadata": {
                    "serverAddress": "http://prometheus:9090", "threshold": "50",
                    "query": format!("sum(rate(http_requests_total{{deployment=\"{APP}\"}}[1m]))") } },
                { "type": "prometheus", "name": "queue", "metadata": {
                    "serverAddress": "http://prometheus:9090", "threshold": "10",
                    "query": format!("sum(queue_depth{{app=\"{APP}-canary\"}})") } }
            ]
        }
    });
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    scaled_objects(f)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

async fn paused(f: &Fixture) -> Option<String> {
    let object = scaled_objects(f).get(APP).await.unwrap();
    object.metadata.annotations?.get(PAUSED).cloned()
}

async fn primary_copy(f: &Fixture) -> Value {
    let name = format!("{APP}-primary");
    let copy = scaled_objects(f).get(&name).await.unwrap();
    copy.data["spec"].clone()
}

fn keda_ref(queries: Value) -> Value {
    json!({ "provider": "istio", "autoscalerRef": {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": APP,
        "primaryScalerReplicas": { "minReplicas": 2, "maxReplicas": 6 },
        "primaryScalerQueries": queries
    }})
}

async fn wait_paused(f: &Fixture, want: Option<&str>) {
    eventually(LIMIT, || async { paused(f).await.as_deref() == want }).await;
}

#[tokio::test]
async fn a_keda_scaled_deployment_is_promoted_and_rolled_back() {
    let f = Fixture::new("keda").await;
    f.telemetry.set(&f.ns, APP, Health::GOOD);
    f.create_target(APP, "shop:1").await;
    create_scaled_object(&f).await;
    let queue = format!("sum(queue_depth{{app=\"{APP}-primary\",tier=\"primary\"}})");
    let analysis = json!({ "interval": "2s", "threshold": 2, "stepWeight": 25, "maxWeight": 50,
        "webhooks": [{ "name": "gate", "type": "rollout", "url": "http://127.0.0.1:9/", "timeout": "1s" }] });
    // The first revision passes without the failing webhook; it is added for the second.
    let mut passing = analysis.clone();
    passing.as_object_mut().unwrap().remove("webhooks");
    f.create_canary(APP, APP, passing, keda_ref(json!({ "queue": queue })))
        .await;
    f.wait_phase(APP, CanaryPhase::Initialized, LIMIT).await;

    let copy = primary_copy(&f).await;
    assert_eq!(
        copy["scaleTargetRef"]["name"],
        json!(format!("{APP}-primary"))
    );
    assert_eq!(
        (
            copy["minReplicaCount"].clone(),
            copy["maxReplicaCount"].clone()
        ),
        (json!(2), json!(6))
    );
    assert_eq!(
        copy["triggers"][0]["metadata"]["query"],
        json!(format!(
            "sum(rate(http_requests_total{{deployment=\"{APP}\"}}[1m]))"
        )),
        "primaryScalerQueries names only `queue`: `rps` is copied as written"
    );
    assert_eq!(copy["triggers"][1]["metadata"]["query"], json!(queue));
    wait_paused(&f, Some("0")).await;

    f.set_image(APP, "shop:2").await;
    f.wait_phase(APP, CanaryPhase::Progressing, LIMIT).await;
    wait_paused(&f, None).await;
    let done = f.wait_phase(APP, CanaryPhase::Succeeded, LIMIT).await;
    assert_eq!(done.canary_weight, 0);
    assert_eq!(f.image_of(&format!("{APP}-primary")).await, "shop:2");
    wait_paused(&f, Some("0")).await;

    let patch = Patch::Merge(json!({ "spec": { "analysis": analysis } }));
    f.canaries()
        .patch(APP, &PatchParams::default(), &patch)
        .await
        .unwrap();
    f.set_image(APP, "shop:3").await;
    f.wait_phase(APP, CanaryPhase::Progressing, LIMIT).await;
    f.wait_phase(APP, CanaryPhase::Failed, LIMIT).await;
    assert_eq!(f.image_of(&format!("{APP}-primary")).await, "shop:2");
    wait_paused(&f, Some("0")).await;
}

#[tokio::test]
async fn without_primary_scaler_queries_the_targets_name_is_pointed_at_the_primary() {
    let f = Fixture::new("keda-rewrite").await;
    f.create_target(APP, "shop:1").await;
    create_scaled_object(&f).await;
    let mut extra = keda_ref(json!(null));
    extra["autoscalerRef"]
        .as_object_mut()
        .unwrap()
        .remove("primaryScalerQueries");
    f.create_canary(
        APP,
        APP,
        json!({ "interval": "1s", "threshold": 2, "stepWeight": 50 }),
        extra,
    )
    .await;
    f.wait_phase(APP, CanaryPhase::Initialized, LIMIT).await;
    let copy = primary_copy(&f).await;
    let queries: Vec<&str> = copy["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["metadata"]["query"].as_str().unwrap())
        .collect();
    assert_eq!(
        queries,
        [
            format!("sum(rate(http_requests_total{{deployment=\"{APP}-primary\"}}[1m]))"),
            format!("sum(queue_depth{{app=\"{APP}-primary\"}})"),
        ]
    );
}

/// The `(status, reason, message)` of Ready once the controller has judged the spec.
async fn refusal(f: &Fixture) -> (String, String, String) {
    eventually(LIMIT, || async {
        f.condition(APP, "Ready")
            .await
            .is_some_and(|(_, reason, _)| reason == "InvalidSpec")
    })
    .await;
    f.condition(APP, "Ready").await.unwrap()
}

/// A canary with `extra` is refused: Ready is False and its message names `field`.
async fn refused_at(f: &Fixture, extra: Value, field: &str) {
    let analysis = json!({ "interval": "1s", "threshold": 2, "stepWeight": 50 });
    f.create_canary(APP, APP, analysis, extra).await;
    let (status, _, message) = refusal(f).await;
    assert_eq!(status, "False");
    assert!(message.contains(field), "{field} not named in: {message}");
}

#[tokio::test]
async fn an_autoscaler_ref_of_the_wrong_kind_is_refused_with_its_field() {
    let f = Fixture::new("keda-wrong").await;
    f.create_target(APP, "shop:1").await;
    create_scaled_object(&f).await;
    let extra = json!({ "provider": "istio", "autoscalerRef": {
        "apiVersion": "autoscaling/v2", "kind": "ScaledObject", "name": APP } });
    refused_at(&f, extra, "spec.autoscalerRef.apiVersion").await;
    assert!(scaled_objects(&f)
        .get_opt(&format!("{APP}-primary"))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn scaler_queries_on_a_horizontal_pod_autoscaler_are_refused_with_their_field() {
    let f = Fixture::new("keda-hpa").await;
    f.create_target(APP, "shop:1").await;
    let extra = json!({ "provider": "istio", "autoscalerRef": {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": APP,
        "primaryScalerQueries": { "rps": "sum(x)" } } });
    refused_at(&f, extra, "spec.autoscalerRef.primaryScalerQueries").await;
}

#[tokio::test]
async fn a_scaled_object_that_does_not_exist_is_named_in_an_event() {
    let f = Fixture::new("keda-missing").await;
    f.create_target(APP, "shop:1").await;
    f.create_canary(
        APP,
        APP,
        json!({ "interval": "1s", "threshold": 2, "stepWeight": 50 }),
        keda_ref(json!({})),
    )
    .await;
    eventually(LIMIT, || async {
        f.event_reasons().await.iter().any(|(reason, message)| {
            reason == "ReconcileFailed"
                && message.contains("spec.autoscalerRef.name")
                && message.contains(APP)
        })
    })
    .await;
    assert!(
        f.deployments()
            .get_opt(&format!("{APP}-primary"))
            .await
            .unwrap()
            .is_none(),
        "no primary without its autoscaler"
    );
}
