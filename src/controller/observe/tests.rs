//! Observation from store writers alone: no API server.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::json;

use super::*;
use crate::engine::Obstacle;

/// Watch-fed stores written by hand, as the watches would write them.
#[derive(Default)]
struct World {
    deployments: Writer<Deployment>,
    daemon_sets: Writer<DaemonSet>,
    config_maps: Writer<ConfigMap>,
    secrets: Writer<Secret>,
    canaries: Writer<Canary>,
    templates: Writer<MetricTemplate>,
    relations: RelationIndex,
}

impl World {
    fn canary(&mut self, canary: &Canary) {
        let event = watcher::Event::Apply(canary.clone());
        self.relations.observe_canary(&event);
        self.canaries.apply_watcher_event(&event);
    }

    fn deployment(&mut self, deployment: Deployment) {
        let event = watcher::Event::Apply(deployment);
        self.relations
            .observe_workload(crate::plan::TargetKind::Deployment, &event);
        self.deployments.apply_watcher_event(&event);
    }

    fn daemon_set(&mut self, daemon_set: DaemonSet) {
        let event = watcher::Event::Apply(daemon_set);
        self.relations
            .observe_workload(crate::plan::TargetKind::DaemonSet, &event);
        self.daemon_sets.apply_watcher_event(&event);
    }

    fn observe(&self, canary: &Canary) -> Result<super::World, Obstacle> {
        let (deployments, daemon_sets) =
            (self.deployments.as_reader(), self.daemon_sets.as_reader());
        let (config_maps, secrets, canaries, templates) = (
            self.config_maps.as_reader(),
            self.secrets.as_reader(),
            self.canaries.as_reader(),
            self.templates.as_reader(),
        );
        let stores = Stores {
            deployments: &deployments,
            daemon_sets: &daemon_sets,
            config_maps: &config_maps,
            secrets: &secrets,
            canaries: &canaries,
            templates: &templates,
            relations: &self.relations,
        };
        let plan = read_plan(canary, &settings())?;
        observe(canary, plan, stores, &settings())
    }
}

fn settings() -> Settings {
    Settings {
        default_router: RouterKind::Istio,
        min_interval: Duration::from_secs(10),
        metrics_server: "http://prometheus:9090".into(),
        sampling: Default::default(),
    }
}

fn canary(name: &str, target: &str, created: &str, interval: &str) -> Canary {
    serde_json::from_value(json!({
        "apiVersion": "aviary.dev/v1beta1", "kind": "Canary",
        "metadata": { "name": name, "namespace": "shop", "creationTimestamp": created },
        "spec": { "targetRef": { "kind": "Deployment", "name": target },
                  "service": { "port": 80 },
                  "analysis": { "interval": interval, "stepWeight": 20, "maxWeight": 60 } }
    }))
    .unwrap()
}

fn deployment(name: &str, ready: bool, revision: Option<&str>) -> Deployment {
    let mut annotations = serde_json::Map::new();
    if let Some(revision) = revision {
        annotations.insert(REVISION_ANNOTATION.into(), json!(revision));
    }
    let available = if ready { 2 } else { 0 };
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "shop", "generation": 1, "annotations": annotations },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } }, "spec": {
                "containers": [{ "name": "app", "image": "shop:2",
                                 "envFrom": [{ "configMapRef": { "name": "settings" } }] }]
            } }
        },
        "status": { "observedGeneration": 1, "updatedReplicas": 2,
                    "availableReplicas": available }
    }))
    .unwrap()
}

#[test]
fn a_ready_target_and_primary_are_observed_with_their_revisions_and_configs() {
    let mut world = World::default();
    world.deployment(deployment("checkout", true, None));
    world.deployment(deployment("checkout-primary", true, Some("rev-1")));
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "settings", "namespace": "shop" }, "data": { "a": "1" }
    }))
    .unwrap();
    world
        .config_maps
        .apply_watcher_event(&watcher::Event::Apply(map));
    let canary = canary("checkout", "checkout", "2026-01-01T00:00:00Z", "30s");
    world.canary(&canary);

    let seen = world.observe(&canary).expect("runnable");
    let observations = &seen.observations;
    assert!(observations.target_revision.is_some());
    assert_eq!(observations.primary_revision.as_deref(), Some("rev-1"));
    assert!(observations.primary_ready && observations.canary_ready);
    assert_eq!(observations.configs.len(), 1, "{:?}", observations.configs);
    assert_eq!(seen.plan.interval, Duration::from_secs(30));
    assert!(observations.request.is_none());
}

#[test]
fn what_keeps_a_canary_from_running_is_an_obstacle() {
    let mut world = World::default();
    let missing = canary("checkout", "checkout", "2026-01-01T00:00:00Z", "30s");
    world.canary(&missing);
    assert_eq!(
        world.observe(&missing).err(),
        Some(Obstacle::TargetNotFound("Deployment shop/checkout".into()))
    );
    let fast = canary("fast", "checkout", "2026-01-01T00:00:00Z", "5s");
    assert!(matches!(
        world.observe(&fast).err(),
        Some(Obstacle::IntervalBelowFloor { .. })
    ));
    let unreadable = canary("bad", "checkout", "2026-01-01T00:00:00Z", "soon");
    let Some(Obstacle::InvalidSpec(message)) = world.observe(&unreadable).err() else {
        panic!("an unreadable interval is an invalid spec");
    };
    assert!(message.contains("spec.analysis.interval"), "{message}");
}

#[test]
fn the_older_canary_owns_a_shared_target_found_through_the_index() {
    let mut world = World::default();
    world.deployment(deployment("checkout", true, None));
    let older = canary("first", "checkout", "2026-01-01T00:00:00Z", "30s");
    let younger = canary("second", "checkout", "2026-02-01T00:00:00Z", "30s");
    world.canary(&older);
    world.canary(&younger);
    assert!(world.observe(&older).is_ok());
    assert_eq!(
        world.observe(&younger).err(),
        Some(Obstacle::TargetClaimed {
            target: "checkout".into(),
            owner: "first".into()
        })
    );
}

#[test]
fn an_unreadable_request_is_marked_by_its_text() {
    let mut request = canary("checkout", "checkout", "2026-01-01T00:00:00Z", "30s");
    request
        .annotations_mut()
        .insert(REQUEST_ANNOTATION.into(), "{not json".into());
    let first = operator_request(&request).unwrap().unwrap_err();
    let again = operator_request(&request).unwrap().unwrap_err();
    assert_eq!(first, again);
    assert!(first.marker.starts_with("unreadable-"), "{first:?}");
    assert!(first.message.contains(REQUEST_ANNOTATION), "{first:?}");
}

/// A DaemonSet of the name, as its controller reports it on three nodes.
fn daemon_set(name: &str, strategy: &str, scaled_down: bool) -> DaemonSet {
    let selector = if scaled_down {
        json!({ crate::controller::workload::SCALED_DOWN_KEY: "true" })
    } else {
        json!(null)
    };
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "shop", "generation": 1 },
        "spec": {
            "selector": { "matchLabels": { "app": name } },
            "updateStrategy": { "type": strategy },
            "template": { "metadata": { "labels": { "app": name } }, "spec": {
                "nodeSelector": selector,
                "containers": [{ "name": "agent", "image": "agent:2" }]
            } }
        },
        "status": { "observedGeneration": 1, "desiredNumberScheduled": 3,
                    "updatedNumberScheduled": 3, "numberAvailable": 3,
                    "currentNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3 }
    }))
    .unwrap()
}

fn daemon_set_canary(name: &str) -> Canary {
    let mut canary = canary(name, name, "2026-01-01T00:00:00Z", "30s");
    canary.spec.target_ref.kind = Some("DaemonSet".into());
    canary
}

#[test]
fn a_daemon_set_target_is_read_from_its_own_store() {
    let mut world = World::default();
    // A Deployment of the same name is not what a DaemonSet canary rolls out.
    world.deployment(deployment("agent", true, None));
    let canary = daemon_set_canary("agent");
    world.canary(&canary);
    assert_eq!(
        world.observe(&canary).err(),
        Some(Obstacle::TargetNotFound("DaemonSet shop/agent".into()))
    );
    world.daemon_set(daemon_set("agent", "RollingUpdate", false));
    let seen = world.observe(&canary).expect("runnable");
    assert!(seen.observations.canary_ready);
    let running = seen.observations.target_revision.clone();
    world.daemon_set(daemon_set("agent", "RollingUpdate", true));
    let seen = world.observe(&canary).expect("runnable");
    assert!(!seen.observations.canary_ready, "scaled down");
    assert_eq!(
        seen.observations.target_revision, running,
        "the same revision"
    );
}

#[test]
fn a_daemon_set_that_updates_on_delete_is_refused_by_field() {
    let mut world = World::default();
    world.daemon_set(daemon_set("agent", "OnDelete", false));
    let canary = daemon_set_canary("agent");
    world.canary(&canary);
    let Some(Obstacle::InvalidSpec(message)) = world.observe(&canary).err() else {
        panic!("OnDelete is refused");
    };
    assert!(
        message.starts_with("spec.targetRef") && message.contains("OnDelete"),
        "{message}"
    );
}

#[test]
fn a_canary_that_changed_its_target_kind_waits_for_its_old_primary_to_go() {
    let mut world = World::default();
    let mut canary = daemon_set_canary("agent");
    canary.metadata.uid = Some("uid-agent".into());
    world.canary(&canary);
    world.daemon_set(daemon_set("agent", "RollingUpdate", false));
    let mut old_primary = deployment("agent-primary", true, Some("rev-1"));
    let owner = crate::controller::objects::owner_reference(&canary).unwrap();
    old_primary.metadata.owner_references = Some(vec![owner]);
    world.deployment(old_primary);
    let Some(Obstacle::InvalidSpec(message)) = world.observe(&canary).err() else {
        panic!("the old primary is named");
    };
    assert!(
        message.starts_with("spec.targetRef.kind") && message.contains("agent-primary"),
        "{message}"
    );
    // Another canary's Deployment of that name is not this canary's concern.
    world.deployment(deployment("agent-primary", true, Some("rev-1")));
    assert!(world.observe(&canary).is_ok());
}
