//! The controller end to end on the real control plane, with Istio-shaped telemetry in a real
//! Prometheus. Each test has its own namespace and its own controller process. The scenarios every
//! router shares (A/B, mirror, restart with a tampered route) are in tests/routers.rs.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};

use aviary::api::{CanaryPhase, CanaryStatus};
use support::fixture::Fixture;
use support::telemetry::{Health, ProxyTelemetry};
use support::{eventually, eventually_some, ControllerProcess};

fn stepped() -> Value {
    json!({
        "interval": "2s",
        "threshold": 2,
        "stepWeight": 20,
        "maxWeight": 60,
        "metrics": [
            { "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } },
            { "name": "request-duration", "interval": "10s", "thresholdRange": { "max": 500 } }
        ]
    })
}

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_healthy_revision_is_promoted_step_by_step() {
    let f = Fixture::new("promote").await;
    f.telemetry.set(&f.ns, "podinfo", Health::GOOD);
    f.create_target("podinfo", "podinfo:1").await;
    f.create_canary("podinfo", "podinfo", stepped(), json!({}))
        .await;
    let status = f
        .wait_phase("podinfo", CanaryPhase::Initialized, LIMIT)
        .await;
    let promoted = status
        .conditions
        .iter()
        .find(|c| c.r#type == "Promoted")
        .unwrap();
    assert_eq!(promoted.status, "True");
    eventually(LIMIT, || async { f.replicas_of("podinfo").await == 0 }).await;
    assert_eq!(f.image_of("podinfo-primary").await, "podinfo:1");
    let services: Api<Service> = Api::namespaced(f.client.clone(), &f.ns);
    let apex = services.get("podinfo").await.unwrap();
    assert_eq!(
        apex.spec.unwrap().selector.unwrap()["app"],
        "podinfo-primary"
    );
    for name in ["podinfo-primary", "podinfo-canary"] {
        services.get(name).await.unwrap();
    }
    assert_eq!(f.routed_weight("podinfo").await, Some(0));

    f.set_image("podinfo", "podinfo:2").await;
    let (weights, status) = f
        .weights_until(
            "podinfo",
            "podinfo",
            &[CanaryPhase::Succeeded, CanaryPhase::Failed],
            LIMIT,
        )
        .await;
    assert_eq!(
        status.phase,
        CanaryPhase::Succeeded,
        "{weights:?} {:#?}\n{}",
        f.event_reasons().await,
        f.controller.logs()
    );
    assert_eq!(weights, vec![0, 20, 40, 60, 0]);
    assert_eq!(f.image_of("podinfo-primary").await, "podinfo:2");
    eventually(LIMIT, || async { f.replicas_of("podinfo").await == 0 }).await;
    assert_eq!(status.last_promoted_spec, status.last_applied_spec);
    let reasons = f.event_reasons().await;
    for expected in ["NewRevision", "WeightAdvanced", "Promoting", "Succeeded"] {
        assert!(
            reasons.iter().any(|(r, _)| r == expected),
            "{expected} missing from {reasons:#?}"
        );
    }
    let advanced = reasons.iter().find(|(r, _)| r == "WeightAdvanced").unwrap();
    assert!(
        advanced.1.contains("request-success-rate=100"),
        "events carry the values: {}",
        advanced.1
    );
    // The controller's metrics are updated after the status write: wait for them.
    let http = aviary::http_client::client(Duration::from_secs(2));
    let url = format!("http://{}/metrics", f.controller.listen);
    let succeeded = format!(
        "aviary_canary_status{{name=\"podinfo\",namespace=\"{}\"}} 1",
        f.ns
    );
    let metrics = eventually_some(LIMIT, || async {
        let text = http.get(&url).send().await.ok()?.text().await.ok()?;
        text.contains(&succeeded).then_some(text)
    })
    .await;
    assert!(metrics.contains("aviary_info{"), "{metrics}");
    for series in [
        "aviary_reconcile_queue_depth ",
        "aviary_reconciles_running ",
        "aviary_query_duration_seconds_count ",
        "aviary_canary_duration_seconds_count ",
    ] {
        assert!(metrics.contains(series), "{series}in {metrics}");
    }
    // Flagger's names and labels, keyed by the target, for dashboards written for Flagger.
    let ns = &f.ns;
    for series in [
        format!("flagger_canary_status{{name=\"podinfo\",namespace=\"{ns}\"}} 1"),
        format!("flagger_canary_total{{namespace=\"{ns}\"}} 1"),
        format!("flagger_canary_weight{{workload=\"podinfo-primary\",namespace=\"{ns}\"}} 100"),
        format!("flagger_canary_successes_total{{name=\"podinfo\",namespace=\"{ns}\",deployment_strategy=\"canary\",analysis_status=\"completed\"}} 1"),
        format!("flagger_canary_duration_seconds_count{{name=\"podinfo\",namespace=\"{ns}\"}} "),
        "flagger_info{".to_string(),
    ] {
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }

    // Deleted (no finalizer), the canary leaves no series behind.
    f.canaries()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    let mine = format!("name=\"podinfo\",namespace=\"{}\"", f.ns);
    eventually(LIMIT, || async {
        let text = http.get(&url).send().await.ok().map(|r| r.text());
        match text {
            Some(text) => text.await.is_ok_and(|t| !t.contains(&mine)),
            None => false,
        }
    })
    .await;
}

#[tokio::test]
async fn a_failing_revision_is_rolled_back_and_not_retried_until_it_changes() {
    let f = Fixture::new("rollback").await;
    f.telemetry.set(&f.ns, "web", Health::GOOD);
    f.create_target("web", "web:1").await;
    f.create_canary("web", "web", stepped(), json!({})).await;
    f.wait_phase("web", CanaryPhase::Initialized, LIMIT).await;
    f.telemetry.set(&f.ns, "web", Health::FAILING);
    f.set_image("web", "web:2").await;
    let (weights, status) = f
        .weights_until(
            "web",
            "web",
            &[CanaryPhase::Succeeded, CanaryPhase::Failed],
            LIMIT,
        )
        .await;
    assert_eq!(status.phase, CanaryPhase::Failed, "{weights:?}");
    assert_eq!(status.failed_checks, 2);
    assert_eq!(weights.last(), Some(&0));
    assert!(
        weights.iter().all(|w| *w <= 20),
        "never advanced past the first step: {weights:?}"
    );
    assert_eq!(
        f.image_of("web-primary").await,
        "web:1",
        "primary untouched"
    );
    eventually(LIMIT, || async { f.replicas_of("web").await == 0 }).await;
    let reasons = f.event_reasons().await;
    let rolled = reasons
        .iter()
        .find(|(r, _)| r == "RolledBack")
        .expect("RolledBack event");
    assert!(rolled.1.contains("request-success-rate"), "{}", rolled.1);

    // The same revision stays failed. The rolled-back canary has no pods, so it gets no traffic:
    // its failing samples age out of the metric window as they would in a cluster.
    f.telemetry.set(
        &f.ns,
        "web",
        Health {
            requests_per_second: 0.0,
            ..Health::GOOD
        },
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    let still = f.status("web").await;
    assert_eq!(
        (still.phase, still.last_applied_spec.clone()),
        (CanaryPhase::Failed, status.last_applied_spec.clone())
    );
    assert_eq!(f.replicas_of("web").await, 0);

    // A new one is rolled out.
    f.telemetry.set(&f.ns, "web", Health::GOOD);
    f.set_image("web", "web:3").await;
    f.wait_phase("web", CanaryPhase::Succeeded, LIMIT).await;
    assert_eq!(f.image_of("web-primary").await, "web:3");
}

#[tokio::test]
async fn blue_green_and_a_new_revision_mid_analysis_restarts() {
    let f = Fixture::new("bluegreen").await;
    f.telemetry.set(&f.ns, "api", Health::GOOD);
    f.create_target("api", "api:1").await;
    let analysis = json!({
        "interval": "2s", "threshold": 2, "iterations": 4,
        "metrics": [{ "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } }]
    });
    f.create_canary("api", "api", analysis, json!({})).await;
    f.wait_phase("api", CanaryPhase::Initialized, LIMIT).await;
    f.set_image("api", "api:2").await;
    eventually(LIMIT, || async { f.status("api").await.iterations >= 1 }).await;
    let first = f.status("api").await.last_applied_spec;
    f.set_image("api", "api:3").await;
    eventually(LIMIT, || async {
        let status = f.status("api").await;
        status.last_applied_spec != first && status.phase == CanaryPhase::Progressing
    })
    .await;
    let reasons = f.event_reasons().await;
    assert!(
        reasons.iter().any(|(r, _)| r == "AnalysisRestarted"),
        "{reasons:#?}"
    );
    let (weights, status) = f
        .weights_until(
            "api",
            "api",
            &[CanaryPhase::Succeeded, CanaryPhase::Failed],
            LIMIT,
        )
        .await;
    assert_eq!(status.phase, CanaryPhase::Succeeded);
    assert!(
        weights.contains(&100) || f.image_of("api-primary").await == "api:3",
        "{weights:?}"
    );
    assert_eq!(f.image_of("api-primary").await, "api:3");
}

#[tokio::test]
async fn deleting_a_canary_with_revert_on_deletion_restores_the_target() {
    let f = Fixture::new("revert").await;
    f.telemetry.set(&f.ns, "pay", Health::GOOD);
    f.telemetry.set(&f.ns, "mail", Health::GOOD);
    f.create_target("pay", "pay:1").await;
    f.create_target("mail", "mail:1").await;
    f.create_canary("pay", "pay", stepped(), json!({ "revertOnDeletion": true }))
        .await;
    f.create_canary("mail", "mail", stepped(), json!({})).await;
    f.wait_phase("pay", CanaryPhase::Initialized, LIMIT).await;
    f.wait_phase("mail", CanaryPhase::Initialized, LIMIT).await;
    eventually(LIMIT, || async { f.replicas_of("pay").await == 0 }).await;
    let canary = f.canaries().get("pay").await.unwrap();
    assert!(canary
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"aviary.dev/revert-on-deletion".to_string()));

    f.canaries()
        .delete("pay", &DeleteParams::default())
        .await
        .unwrap();
    eventually(LIMIT, || async {
        f.canaries().get_opt("pay").await.unwrap().is_none()
    })
    .await;
    assert_eq!(
        f.replicas_of("pay").await,
        2,
        "target restored to the primary's size"
    );
    let services: Api<Service> = Api::namespaced(f.client.clone(), &f.ns);
    let apex = services.get("pay").await.unwrap();
    assert_eq!(
        apex.spec.clone().unwrap().selector.unwrap()["app"],
        "pay",
        "apex routes to the target"
    );
    assert!(
        apex.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "apex survives the Canary"
    );
    eventually(LIMIT, || async {
        f.deployments()
            .get_opt("pay-primary")
            .await
            .unwrap()
            .is_none()
    })
    .await;

    // Without revertOnDeletion the generated objects are garbage-collected.
    f.canaries()
        .delete("mail", &DeleteParams::default())
        .await
        .unwrap();
    eventually(LIMIT, || async {
        f.deployments()
            .get_opt("mail-primary")
            .await
            .unwrap()
            .is_none()
            && services.get_opt("mail").await.unwrap().is_none()
            && f.virtual_services()
                .get_opt("mail")
                .await
                .unwrap()
                .is_none()
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_reported_and_other_canaries_keep_progressing() {
    let f = Fixture::new("badinput").await;
    f.telemetry.set(&f.ns, "good", Health::GOOD);
    f.create_target("good", "good:1").await;
    f.create_target("shared", "shared:1").await;
    let unlabelled: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "nolabel" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "tier": "x" } },
            "template": { "metadata": { "labels": { "tier": "x" } }, "spec": { "containers": [{ "name": "app", "image": "x:1" }] } }
        }
    }))
    .unwrap();
    f.deployments()
        .create(&PostParams::default(), &unlabelled)
        .await
        .unwrap();
    f.create_canary("missing", "does-not-exist", stepped(), json!({}))
        .await;
    f.create_canary("nolabel", "nolabel", stepped(), json!({}))
        .await;
    f.create_canary("first", "shared", stepped(), json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.create_canary("second", "shared", stepped(), json!({}))
        .await;
    f.create_canary("good", "good", stepped(), json!({})).await;

    let condition = |status: &CanaryStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.r#type == "Ready")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
    };
    for (name, reason, fragment) in [
        ("missing", "TargetNotFound", "does-not-exist not found"),
        ("nolabel", "TargetSelectorMissing", "no selector label"),
        ("second", "TargetClaimed", "already managed by Canary first"),
    ] {
        eventually(LIMIT, || async {
            condition(&f.status(name).await).is_some_and(|(r, _)| r == reason)
        })
        .await;
        let (_, message) = condition(&f.status(name).await).unwrap();
        assert!(message.contains(fragment), "{name}: {message}");
    }
    let reasons = f.event_reasons().await;
    for reason in ["TargetNotFound", "TargetSelectorMissing", "TargetClaimed"] {
        assert!(
            reasons.iter().any(|(r, _)| r == reason),
            "{reason} event missing: {reasons:#?}"
        );
    }
    assert!(
        f.deployments()
            .get_opt("nolabel-primary")
            .await
            .unwrap()
            .is_none(),
        "nothing created for a refused canary"
    );
    f.wait_phase("first", CanaryPhase::Initialized, LIMIT).await;
    f.wait_phase("good", CanaryPhase::Initialized, LIMIT).await;
    f.set_image("good", "good:2").await;
    f.wait_phase("good", CanaryPhase::Succeeded, LIMIT).await;
}

#[tokio::test]
async fn a_second_replica_takes_over_when_the_leader_dies() {
    let mut f = Fixture::new("leader").await;
    f.controller.kill().await;
    let (_, prometheus) = ProxyTelemetry::shared();
    let lease = format!("{}/aviary-leader", f.ns);
    let lease_args = ["--leader-lease", lease.as_str(), "--lease-duration", "4s"];
    let mut leader = ControllerProcess::start_with(&f.ns, prometheus, &lease_args).await;
    // The standby starts only once the first replica holds the lease.
    eventually(LIMIT, || async { leader.logs().contains("became leader") }).await;
    let standby = ControllerProcess::start_with(&f.ns, prometheus, &lease_args).await;
    f.telemetry.set(&f.ns, "orders", Health::GOOD);
    f.create_target("orders", "orders:1").await;
    f.create_canary("orders", "orders", stepped(), json!({}))
        .await;
    f.wait_phase("orders", CanaryPhase::Initialized, LIMIT)
        .await;
    assert!(
        !standby.logs().contains("became leader"),
        "only one leader at a time:\n{}",
        standby.logs()
    );
    leader.kill().await;
    f.set_image("orders", "orders:2").await;
    let status = f.wait_phase("orders", CanaryPhase::Succeeded, LIMIT).await;
    assert_eq!(status.canary_weight, 0);
    assert!(
        standby.logs().contains("became leader"),
        "{}",
        standby.logs()
    );
    f.controller = standby;
}

/// Sends `signal` (STOP, CONT, TERM) to a controller process.
fn signal(process: &ControllerProcess, signal: &str) {
    let pid = process.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");
}

/// The writes (verb and URI) that the API server's audit log holds from the controller process
/// `pid`, received at or after `since`. Each replica names itself in its user agent.
fn writes_by(pid: u32, since: jiff::Timestamp) -> Vec<String> {
    let log = support::run_dir().join("logs/audit.log");
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let agent = |event: &Value| {
        event["userAgent"].as_str().is_some_and(|agent| {
            agent.starts_with("aviary-controller/") && agent.ends_with(&format!("-{pid}"))
        })
    };
    let received = |event: &Value| {
        let at = event["requestReceivedTimestamp"].as_str();
        at.and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t >= since)
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| agent(event) && received(event))
        .map(|event| format!("{} {}", event["verb"], event["requestURI"]))
        .collect()
}

#[tokio::test]
async fn a_frozen_leader_is_replaced_and_writes_nothing_when_it_wakes() {
    use k8s_openapi::api::coordination::v1::Lease;
    let mut f = Fixture::new("frozen").await;
    f.controller.kill().await;
    let (_, prometheus) = ProxyTelemetry::shared();
    let lease = format!("{}/aviary-leader", f.ns);
    let lease_args = ["--leader-lease", lease.as_str(), "--lease-duration", "4s"];
    let started = jiff::Timestamp::now();
    let first = ControllerProcess::start_with(&f.ns, prometheus, &lease_args).await;
    eventually(LIMIT, || async { first.logs().contains("became leader") }).await;
    let second = ControllerProcess::start_with(&f.ns, prometheus, &lease_args).await;
    // A standby is Ready once its caches are listed: a rolling update of two replicas ends.
    let http = aviary::http_client::client(Duration::from_secs(2));
    let ready = format!("http://{}/readyz", second.listen);
    eventually(LIMIT, || async {
        let answer = http.get(&ready).send().await;
        answer.is_ok_and(|r| r.status().is_success())
    })
    .await;
    f.telemetry.set(&f.ns, "frozen", Health::GOOD);
    f.create_target("frozen", "frozen:1").await;
    f.create_canary("frozen", "frozen", stepped(), json!({}))
        .await;
    f.wait_phase("frozen", CanaryPhase::Initialized, LIMIT)
        .await;
    f.set_image("frozen", "frozen:2").await;
    f.wait_phase("frozen", CanaryPhase::Progressing, LIMIT)
        .await;
    // Frozen past its lease: the standby takes over and finishes the rollout.
    signal(&first, "STOP");
    let status = f.wait_phase("frozen", CanaryPhase::Succeeded, LIMIT).await;
    assert_eq!(status.canary_weight, 0);
    assert!(second.logs().contains("became leader"), "{}", second.logs());
    signal(&first, "CONT");
    let resumed = jiff::Timestamp::now();
    // Several of its retry periods (0.53 s): time enough to write, were it going to.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pid = first.child.id().unwrap();
    let before = writes_by(pid, started);
    assert!(
        !before.is_empty(),
        "the audit log names the first leader's writes"
    );
    let after = writes_by(pid, resumed);
    assert!(after.is_empty(), "the resumed old leader wrote: {after:#?}");
    assert!(first.logs().contains("stopped writing"), "{}", first.logs());
    // SIGTERM gives the lease up: the other replica leads at its next try, not at expiry.
    let leases: Api<Lease> = Api::namespaced(f.client.clone(), &f.ns);
    let asked = std::time::Instant::now();
    signal(&second, "TERM");
    eventually(LIMIT, || async {
        let held = leases
            .get("aviary-leader")
            .await
            .ok()
            .and_then(|l| l.spec?.holder_identity);
        held.is_some_and(|holder| holder.ends_with(&format!("-{pid}")))
    })
    .await;
    let took = asked.elapsed();
    println!("handover after SIGTERM: {took:?}; audit: {} writes by the first leader before the freeze, 0 after", before.len());
    assert!(
        took < Duration::from_secs(3),
        "{took:?}: released, not expired"
    );
    assert!(
        second.logs().contains("released the lease"),
        "{}",
        second.logs()
    );
    f.controller = first;
}

#[tokio::test]
async fn a_config_map_change_is_a_new_revision_and_the_primary_reads_a_copy() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let f = Fixture::new("configs").await;
    f.telemetry.set(&f.ns, "conf", Health::GOOD);
    let maps: Api<ConfigMap> = Api::namespaced(f.client.clone(), &f.ns);
    let settings = |value: &str| -> ConfigMap {
        serde_json::from_value(
            json!({ "metadata": { "name": "settings" }, "data": { "mode": value } }),
        )
        .unwrap()
    };
    maps.create(&PostParams::default(), &settings("blue"))
        .await
        .unwrap();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "conf" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "conf" } },
            "template": {
                "metadata": { "labels": { "app": "conf" } },
                "spec": { "containers": [{ "name": "app", "image": "conf:1", "envFrom": [{ "configMapRef": { "name": "settings" } }] }] }
            }
        }
    }))
    .unwrap();
    f.deployments()
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    f.create_canary("conf", "conf", stepped(), json!({})).await;
    let initialized = f.wait_phase("conf", CanaryPhase::Initialized, LIMIT).await;
    assert!(
        initialized
            .tracked_configs
            .contains_key("configmap/settings"),
        "{initialized:#?}"
    );
    let copy = maps.get("settings-primary").await.unwrap();
    assert_eq!(copy.data.unwrap()["mode"], "blue");
    let primary = f.deployments().get("conf-primary").await.unwrap();
    let env_from = primary.spec.unwrap().template.spec.unwrap().containers[0]
        .env_from
        .clone()
        .unwrap();
    assert_eq!(
        env_from[0].config_map_ref.as_ref().unwrap().name,
        "settings-primary"
    );

    maps.replace("settings", &PostParams::default(), &{
        let mut current = maps.get("settings").await.unwrap();
        current.data = settings("green").data;
        current
    })
    .await
    .unwrap();
    eventually(LIMIT, || async {
        f.status("conf").await.phase == CanaryPhase::Progressing
    })
    .await;
    assert_eq!(
        maps.get("settings-primary").await.unwrap().data.unwrap()["mode"],
        "blue",
        "primary keeps its config during analysis"
    );
    let done = f.wait_phase("conf", CanaryPhase::Succeeded, LIMIT).await;
    assert_ne!(done.last_promoted_spec, initialized.last_promoted_spec);
    assert_eq!(
        maps.get("settings-primary").await.unwrap().data.unwrap()["mode"],
        "green"
    );
}
