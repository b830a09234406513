//! The controller under the chart's own RBAC: `helm install`, then the controller process signs
//! in with a TokenRequest token of the chart's ServiceAccount. In the cluster mode it promotes and
//! rolls back with Istio, rolls out with the Gateway API, copies a policy and sends alerts. In
//! the namespaced mode (a Role only) it promotes too; then each rule of its Role is taken away in
//! turn, and the API server's refusal of the operation that rule allowed shows in its log.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

use aviary::api::CanaryPhase;
use support::fixture::Fixture;
use support::receiver::Receiver;
use support::telemetry::{Health, ProxyTelemetry};
use support::{helm, ControllerProcess};

const LIMIT: Duration = Duration::from_secs(90);

/// A cluster-wide controller sees every namespace: one controller at a time in this binary.
static ONE_CONTROLLER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Creates `object` in `ns`, as the kind its own apiVersion and kind name.
async fn create(client: &kube::Client, ns: &str, object: Value) {
    let (group, version) = object["apiVersion"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap();
    let kind = object["kind"].as_str().unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// Installs the chart as `release` in a fresh namespace; returns it and a kubeconfig of the
/// chart's ServiceAccount.
async fn install(client: &kube::Client, release: &str, values: &[&str]) -> (String, PathBuf) {
    let ns = support::namespace(client, release).await;
    let mut values = values.to_vec();
    let watched = format!("rbac.watchNamespace={ns}");
    values.push(&watched);
    helm::install(release, &ns, &values);
    let kubeconfig = support::account_kubeconfig(&ns, release).await;
    (ns, kubeconfig)
}

/// The chart's own flags that decide what the controller touches, from the installed Deployment.
async fn chart_flags(client: &kube::Client, release_ns: &str, release: &str) -> Vec<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), release_ns);
    let deployment = deployments.get(release).await.unwrap();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap_or_default();
    args.into_iter()
        .filter(|a| a.starts_with("--policy-copies="))
        .collect()
}

/// A controller signed in as the chart's account, electing on the chart's Lease, with the
/// chart's flags.
async fn controller(
    kubeconfig: &Path,
    release_ns: &str,
    release: &str,
    extra: &[&str],
) -> ControllerProcess {
    let (_, prometheus) = ProxyTelemetry::shared();
    let lease = format!("{release_ns}/{release}-leader");
    let flags = chart_flags(&support::admin().await, release_ns, release).await;
    let mut args = vec!["--leader-lease", &lease, "--lease-duration", "3s"];
    args.extend(flags.iter().map(String::as_str));
    args.extend_from_slice(extra);
    ControllerProcess::launch(kubeconfig, release, prometheus, &args, &[]).await
}

fn analysis(alerts: bool) -> Value {
    let mut analysis = json!({
        "interval": "1s", "threshold": 2, "stepWeight": 50, "maxWeight": 50,
        "metrics": [{ "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } }]
    });
    if alerts {
        analysis["alerts"] =
            json!([{ "name": "team", "severity": "info", "providerRef": { "name": "team" } }]);
    }
    analysis
}

/// An AlertProvider `team` posting to `receiver`, and an AuthorizationPolicy on `app`'s pods.
async fn surroundings(f: &Fixture, receiver: &Receiver, app: &str) {
    let provider = json!({
        "apiVersion": "aviary.dev/v1beta1", "kind": "AlertProvider", "metadata": { "name": "team" },
        "spec": { "type": "generic", "address": receiver.url("/alerts") }
    });
    create(&f.client, &f.ns, provider).await;
    let policy = json!({
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": { "name": format!("{app}-allow") },
        "spec": { "selector": { "matchLabels": { "app": app } }, "action": "ALLOW", "rules": [{}] }
    });
    create(&f.client, &f.ns, policy).await;
}

/// Promotes `app` (healthy), then rolls back its next revision (failing).
async fn promote_then_roll_back(f: &Fixture, app: &str, extra: Value) {
    f.telemetry.set(&f.ns, app, Health::GOOD);
    f.create_target(app, &format!("{app}:1")).await;
    f.create_canary(app, app, analysis(true), extra).await;
    f.wait_phase(app, CanaryPhase::Initialized, LIMIT).await;
    f.set_image(app, &format!("{app}:2")).await;
    f.wait_phase(app, CanaryPhase::Succeeded, LIMIT).await;
    f.telemetry.set(&f.ns, app, Health::FAILING);
    f.set_image(app, &format!("{app}:3")).await;
    f.wait_phase(app, CanaryPhase::Failed, LIMIT).await;
    assert_eq!(
        f.image_of(&format!("{app}-primary")).await,
        format!("{app}:2")
    );
}

/// No refusal about this test's namespaces (a cluster-wide controller also meets what other
/// tests left behind, with kinds this install was not asked to grant).
fn assert_nothing_refused(f: &Fixture, release_ns: &str) {
    let logs = f.controller.logs();
    // Every refusal names the account, whose name holds the release's namespace: only the
    // objects named count.
    let account = format!("system:serviceaccount:{release_ns}:");
    let ours = |line: &&str| {
        let objects = line.replace(&account, "");
        objects.contains(f.ns.as_str()) || objects.contains(release_ns)
    };
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("forbidden"))
        .filter(ours)
        .collect();
    assert!(
        refused.is_empty(),
        "the chart's RBAC refused:\n{}",
        refused.join("\n")
    );
}

#[tokio::test]
async fn the_cluster_mode_completes_every_rollout_with_the_charts_rights_only() {
    let _one = ONE_CONTROLLER.lock().await;
    let client = support::admin().await;
    let release = &format!("aviary-lp{}", rand::random::<u16>());
    let (release_ns, kubeconfig) = install(&client, release, &["meshes.gatewayAPI=true"]).await;
    let ns = support::namespace(&client, "lp-work").await;
    let (telemetry, _) = ProxyTelemetry::shared();
    let f = Fixture {
        client,
        ns,
        telemetry,
        controller: controller(&kubeconfig, &release_ns, release, &[]).await,
    };
    let receiver = Receiver::start();
    surroundings(&f, &receiver, "web").await;

    promote_then_roll_back(&f, "web", json!({ "provider": "istio" })).await;
    let policies: Api<DynamicObject> = f.dynamic("security.istio.io", "v1", "AuthorizationPolicy");
    assert!(
        policies
            .get_opt("web-allow-primary")
            .await
            .unwrap()
            .is_some(),
        "the policy copy"
    );
    assert!(!receiver.calls("/alerts").is_empty(), "alerts were sent");

    let gateway = json!({
        "provider": "gatewayapi:v1",
        "service": { "port": 9898, "gatewayRefs": [{ "group": "", "kind": "Service", "name": "api", "port": 9898 }] }
    });
    promote_then_roll_back(&f, "api", gateway).await;
    let routes = f.dynamic("gateway.networking.k8s.io", "v1", "HTTPRoute");
    assert!(routes.get_opt("api").await.unwrap().is_some());
    assert_nothing_refused(&f, &release_ns);
}

/// One Role rule, as the refusal in the log names it: `resource "<plural>"`.
fn rule_resources(rule: &Value) -> Vec<String> {
    rule["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// Waits until the controller's log shows the API server refusing one of `resources`.
async fn refusal(process: &ControllerProcess, resources: &[String]) -> String {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let logs = process.logs();
        let found = logs.lines().find(|line| {
            line.contains("forbidden")
                && resources.iter().any(|r| {
                    line.contains(&format!("resource \"{r}\""))
                        || line.contains(&format!("resource \\\"{r}\\\""))
                })
        });
        if let Some(line) = found {
            return line.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refusal of {resources:?} within {LIMIT:?}:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A canary that exercises every rule: metrics, alerts, an autoscaler and revert on deletion.
async fn exercising_canary(f: &Fixture, app: &str) {
    f.telemetry.set(&f.ns, app, Health::GOOD);
    f.create_target(app, &format!("{app}:1")).await;
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": { "name": app },
        "spec": { "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": app }, "minReplicas": 1, "maxReplicas": 3 }
    });
    create(&f.client, &f.ns, hpa).await;
    let extra = json!({
        "provider": "istio", "revertOnDeletion": true,
        "autoscalerRef": { "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "name": app }
    });
    f.create_canary(app, app, analysis(true), extra).await;
}

#[tokio::test]
async fn the_namespaced_mode_needs_every_rule_of_its_role() {
    let _one = ONE_CONTROLLER.lock().await;
    let client = support::admin().await;
    let release = &format!("aviary-lpns{}", rand::random::<u16>());
    let (ns, kubeconfig) = install(&client, release, &["rbac.scope=namespace"]).await;
    let (telemetry, _) = ProxyTelemetry::shared();
    let namespaced = ["--namespace", ns.as_str()];
    let process = controller(&kubeconfig, &ns, release, &namespaced).await;
    let mut f = Fixture {
        client,
        ns: ns.clone(),
        telemetry,
        controller: process,
    };
    let receiver = Receiver::start();
    surroundings(&f, &receiver, "full").await;
    exercising_canary(&f, "full").await;
    f.wait_phase("full", CanaryPhase::Initialized, LIMIT).await;
    f.set_image("full", "full:2").await;
    f.wait_phase("full", CanaryPhase::Succeeded, LIMIT).await;
    assert_nothing_refused(&f, &ns);
    f.controller.kill().await;

    for role in [release.to_string(), format!("{release}-leader")] {
        without_each_rule(&mut f, &kubeconfig, release, &role).await;
    }
}

/// Waits until the API server's authorizer refuses the account the first verb of `rule` (its
/// RBAC cache follows a Role change shortly after, not at once).
async fn until_refused(client: &kube::Client, ns: &str, account: &str, rule: &Value) {
    let resource = rule["resources"][0].as_str().unwrap();
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": format!("system:serviceaccount:{ns}:{account}"),
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}")],
            "resourceAttributes": {
                "namespace": ns, "verb": rule["verbs"][0], "group": rule["apiGroups"][0],
                "resource": resource, "subresource": subresource,
                "name": rule["resourceNames"][0].as_str().unwrap_or_default()
            }
        }
    }))
    .unwrap();
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    support::eventually(LIMIT, || async {
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .unwrap();
        !answer.status.is_some_and(|s| s.allowed)
    })
    .await;
}

/// Takes each rule of `role` away in turn; a fresh controller and a fresh canary must then run
/// into the API server's refusal of what the rule allowed. The Role is restored afterwards.
async fn without_each_rule(f: &mut Fixture, kubeconfig: &Path, release: &str, role: &str) {
    let roles: Api<Role> = Api::namespaced(f.client.clone(), &f.ns);
    let leases: Api<Lease> = Api::namespaced(f.client.clone(), &f.ns);
    let mut original = roles.get(role).await.unwrap();
    original.metadata.resource_version = None;
    let rules = original.rules.clone().unwrap_or_default();
    for index in 0..rules.len() {
        let mut trimmed = original.clone();
        trimmed.rules = Some([&rules[..index], &rules[index + 1..]].concat());
        roles
            .replace(role, &PostParams::default(), &trimmed)
            .await
            .unwrap();
        let rule = serde_json::to_value(&rules[index]).unwrap();
        until_refused(&f.client, &f.ns, release, &rule).await;
        // The killed controller's hold would make the next one a standby until it expires; and
        // with no Lease at all, the next one must create it.
        let _ = leases
            .delete(&format!("{release}-leader"), &DeleteParams::default())
            .await;
        let namespaced = ["--namespace", f.ns.as_str()];
        f.controller = controller(kubeconfig, &f.ns, release, &namespaced).await;
        exercising_canary(f, &format!("{role}-{index}")).await;
        let line = refusal(&f.controller, &rule_resources(&rule)).await;
        eprintln!("without {rule}:\n  {line}");
        f.controller.kill().await;
    }
    roles
        .replace(role, &PostParams::default(), &original)
        .await
        .unwrap();
}
