//! The operator CLI against a running rollout on the real control plane: promote (one gate, or
//! `--full`), abort, pause, resume, retry, status and wait, each as a ServiceAccount whose rights
//! come from RBAC; one without rights on the Canary is refused.

mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use aviary::api::CanaryPhase;
use support::eventually;
use support::fixture::Fixture;
use support::receiver::Receiver;
use support::telemetry::Health;

const LIMIT: Duration = Duration::from_secs(60);

/// A kubeconfig for ServiceAccount `name` of the fixture's namespace.
async fn user(f: &Fixture, name: &str) -> PathBuf {
    let account: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    Api::<ServiceAccount>::namespaced(f.client.clone(), &f.ns)
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    support::account_kubeconfig(&f.ns, name).await
}

/// Installs the shipped request-identity policy, bound to the fixture's namespace only.
async fn install_identity_policy(f: &Fixture) {
    let documents = support::helm::template("aviary", &f.ns, &[]);
    let policy = documents.into_iter().filter(|d| {
        d["kind"]
            .as_str()
            .unwrap()
            .starts_with("ValidatingAdmissionPolicy")
    });
    let suffix = &f.ns;
    for mut object in policy {
        let kind = object["kind"].as_str().unwrap().to_string();
        object["metadata"]["name"] = json!(format!("aviary-request-identity-{suffix}"));
        if kind == "ValidatingAdmissionPolicyBinding" {
            object["spec"]["policyName"] = json!(format!("aviary-request-identity-{suffix}"));
            object["spec"]["matchResources"] = json!({
                "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": f.ns } }
            });
        }
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            &kind,
        ));
        let api: Api<DynamicObject> = Api::all_with(f.client.clone(), &resource);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        api.create(&PostParams::default(), &object).await.unwrap();
    }
}

/// Gives `account` these verbs on canaries (and what `aviary wait` reads) in the namespace.
async fn grant(f: &Fixture, account: &str, verbs: &[&str]) {
    let role_name = format!("canary-{account}");
    let role: Role = serde_json::from_value(json!({
        "metadata": { "name": role_name },
        "rules": [
            { "apiGroups": ["aviary.dev"], "resources": ["canaries"], "verbs": verbs },
            { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"] },
            { "apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"] }
        ]
    }))
    .unwrap();
    Api::<Role>::namespaced(f.client.clone(), &f.ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": { "name": format!("canary-operator-{account}") },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name },
        "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": f.ns }]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(f.client.clone(), &f.ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

fn aviary(config: &PathBuf, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_aviary"));
    command
        .args(args)
        .env("KUBECONFIG", config)
        .kill_on_drop(true);
    command
}

async fn run(config: &PathBuf, args: &[&str]) -> Output {
    aviary(config, args).output().await.unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn ok(config: &PathBuf, args: &[&str]) -> Output {
    let output = run(config, args).await;
    assert!(
        output.status.success(),
        "aviary {args:?}: {}",
        text(&output)
    );
    output
}

async fn notes(f: &Fixture, reason: &str) -> Vec<String> {
    f.event_reasons()
        .await
        .into_iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, n)| n)
        .collect()
}

#[tokio::test]
async fn operator_verbs_drive_a_running_rollout_within_rbac() {
    let f = Fixture::new("operator").await;
    let gate = Receiver::start();
    gate.answer("/gate", 403, "waiting for a human");
    f.telemetry.set(&f.ns, "podinfo", Health::GOOD);
    f.create_target("podinfo", "podinfo:1").await;
    let analysis = json!({
        "interval": "1s",
        "threshold": 2,
        "stepWeight": 20,
        "maxWeight": 60,
        "metrics": [{ "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } }],
        "webhooks": [{ "name": "human", "type": "confirm-promotion", "url": gate.url("/gate") }]
    });
    f.create_canary("podinfo", "podinfo", analysis, json!({}))
        .await;
    let alice = user(&f, "alice").await;
    let bob = user(&f, "bob").await;
    let carol = user(&f, "carol").await;
    grant(&f, "alice", &["get", "list", "watch", "patch"]).await;
    grant(&f, "carol", &["get", "list", "watch"]).await;
    let alice_name = format!("system:serviceaccount:{}:alice", f.ns);
    f.wait_phase("podinfo", CanaryPhase::Initialized, LIMIT)
        .await;

    // With the shipped policy, a request cannot claim another author.
    install_identity_policy(&f).await;
    let forged = json!({ "metadata": { "annotations": {
        "aviary.dev/request": r#"{"id":"forged","verb":"resume","by":"mallory"}"#
    } } });
    let mut refusal = String::new();
    // A new admission policy takes a while to be loaded; up to 60s on a busy API server.
    for _ in 0..300 {
        match f
            .canaries()
            .patch("podinfo", &PatchParams::default(), &Patch::Merge(&forged))
            .await
        {
            Err(kube::Error::Api(status)) => {
                refusal = status.message;
                break;
            }
            // The policy is not in force yet: take the request back off and try again.
            Ok(_) => {
                let clear =
                    json!({ "metadata": { "annotations": { "aviary.dev/request": null } } });
                f.canaries()
                    .patch("podinfo", &PatchParams::default(), &Patch::Merge(&clear))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(
        refusal.contains("must name its author"),
        "forged request accepted: {refusal:?}"
    );
    // Alice may ask, but not in another's name: a nested `by` naming her, with mallory's as the
    // one a lenient reader would take, is refused for its shape.
    let as_alice = {
        let kubeconfig = kube::config::Kubeconfig::read_from(&alice).unwrap();
        let options = kube::config::KubeConfigOptions::default();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .unwrap();
        Api::<aviary::api::Canary>::namespaced(kube::Client::try_from(config).unwrap(), &f.ns)
    };
    let nested =
        format!(r#"{{"id":"nested","verb":"resume","x":{{"by":"{alice_name}"}},"by":"mallory"}}"#);
    let nested = json!({ "metadata": { "annotations": { "aviary.dev/request": nested } } });
    let refused = as_alice
        .patch("podinfo", &PatchParams::default(), &Patch::Merge(&nested))
        .await
        .expect_err("the nested-by forgery is refused");
    assert!(
        refused.to_string().contains("not in canonical form"),
        "{refused}"
    );

    // No rights on the Canary, or only to read it: refused, and nothing is written.
    let refused = run(&bob, &["pause", "podinfo"]).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("may not get Canary"),
        "{}",
        text(&refused)
    );
    let refused = run(&carol, &["abort", "podinfo"]).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("may not patch Canary"),
        "{}",
        text(&refused)
    );
    let annotations = f
        .canaries()
        .get("podinfo")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(
        !annotations.contains_key("aviary.dev/request"),
        "{annotations:?}"
    );

    // wait: 2 on timeout.
    let timed_out = run(
        &alice,
        &[
            "wait",
            "podinfo",
            "--for",
            "phase=Progressing",
            "--timeout",
            "2s",
        ],
    )
    .await;
    assert_eq!(timed_out.status.code(), Some(2), "{}", text(&timed_out));
    assert!(
        text(&timed_out).contains("timed out"),
        "{}",
        text(&timed_out)
    );

    // pause holds the weight; resume lets it go on.
    f.set_image("podinfo", "podinfo:2").await;
    eventually(LIMIT, || async {
        f.status("podinfo").await.canary_weight == 20
    })
    .await;
    ok(&alice, &["pause", "podinfo"]).await;
    eventually(LIMIT, || async {
        f.status("podinfo").await.paused_by.is_some()
    })
    .await;
    let held = f.status("podinfo").await.canary_weight;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = f.status("podinfo").await;
    assert_eq!(
        (status.canary_weight, status.paused_by.as_deref()),
        (held, Some(alice_name.as_str()))
    );
    assert!(notes(&f, "Paused")
        .await
        .iter()
        .any(|n| n.contains(&alice_name)));
    let json_view = ok(&alice, &["status", "podinfo", "-o", "json"]).await;
    let view: serde_json::Value = serde_json::from_slice(&json_view.stdout).unwrap();
    // The pause takes hold at whatever step the rollout had reached by then: the view shows
    // that step, not a fixed one.
    assert_eq!(view["status"]["phase"], status.phase.as_str());
    assert_eq!(view["status"]["pausedBy"], json!(alice_name));
    let text_view = ok(&alice, &["status", "podinfo"]).await;
    let shown = String::from_utf8_lossy(&text_view.stdout).to_string();
    assert!(
        shown.contains(status.phase.as_str())
            && shown.contains("paused by")
            && shown.contains(&format!("step {}/3", held / 20)),
        "{shown}"
    );
    ok(&alice, &["resume", "podinfo"]).await;

    // promote passes the closed confirm-promotion gate; wait exits 0 on promoted.
    f.wait_phase("podinfo", CanaryPhase::WaitingPromotion, LIMIT)
        .await;
    let text_view = ok(&alice, &["status", "podinfo"]).await;
    let shown = String::from_utf8_lossy(&text_view.stdout).to_string();
    assert!(
        shown.contains("WaitingPromotion")
            && shown.contains("request-success-rate")
            && shown.contains("waiting for a human"),
        "the last values against their ranges, and the closed gate: {shown}"
    );
    let waiting = aviary(
        &alice,
        &["wait", "podinfo", "--for", "promoted", "--timeout", "60s"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    ok(&alice, &["promote", "podinfo"]).await;
    let waited = waiting.wait_with_output().await.unwrap();
    assert_eq!(waited.status.code(), Some(0), "{}", text(&waited));
    assert!(text(&waited).contains("promoted"), "{}", text(&waited));
    assert_eq!(f.status("podinfo").await.phase, CanaryPhase::Succeeded);
    assert!(notes(&f, "GateApproved")
        .await
        .iter()
        .any(|n| n.contains(&alice_name)));

    // promote --full skips the remaining steps.
    f.set_image("podinfo", "podinfo:3").await;
    eventually(LIMIT, || async {
        f.status("podinfo").await.canary_weight == 20
    })
    .await;
    ok(&alice, &["promote", "podinfo", "--full"]).await;
    f.wait_phase("podinfo", CanaryPhase::Succeeded, LIMIT).await;
    assert_eq!(f.image_of("podinfo-primary").await, "podinfo:3");
    assert!(notes(&f, "PromotedByOperator")
        .await
        .iter()
        .any(|n| n.contains(&alice_name)));

    // abort rolls back now; wait exits 1 on failed.
    f.set_image("podinfo", "podinfo:4").await;
    eventually(LIMIT, || async {
        f.status("podinfo").await.canary_weight > 0
    })
    .await;
    ok(&alice, &["abort", "podinfo"]).await;
    let failed = run(
        &alice,
        &["wait", "podinfo", "--for", "promoted", "--timeout", "60s"],
    )
    .await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(f
        .condition("podinfo", "Promoted")
        .await
        .unwrap()
        .2
        .contains(&format!("aborted by {alice_name}")));
    assert_eq!(f.image_of("podinfo-primary").await, "podinfo:3");

    // retry rolls the failed revision out again, without changing the template.
    ok(&alice, &["retry", "podinfo"]).await;
    f.wait_phase("podinfo", CanaryPhase::WaitingPromotion, LIMIT)
        .await;
    assert!(notes(&f, "Retrying")
        .await
        .iter()
        .any(|n| n.contains(&alice_name)));
    ok(&alice, &["promote", "podinfo"]).await;
    let promoted = run(&alice, &["wait", "podinfo", "--timeout", "60s"]).await;
    assert_eq!(promoted.status.code(), Some(0), "{}", text(&promoted));
    assert_eq!(f.image_of("podinfo-primary").await, "podinfo:4");
}

/// Without a kubeconfig the CLI says why once, not the same cause chain over and over.
#[test]
fn a_missing_kubeconfig_is_explained_once() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aviary"))
        .args(["status", "podinfo", "-n", "test"])
        .env("KUBECONFIG", "/nonexistent/aviary-kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("/nonexistent/aviary-kubeconfig").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot reach the Kubernetes API"),
        "{stderr}"
    );
}
