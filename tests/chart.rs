//! charts/aviary: lint and template in every mode, the security settings of every container,
//! values refused by the schema, and install, upgrade and uninstall on the real control plane
//! leaving nothing behind but the CRDs. What the chart's RBAC allows is in
//! tests/least_privilege.rs.

mod support;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

use support::helm;

/// Values that switch every optional part on.
const EVERYTHING: &[&str] = &[
    "loadtester.enabled=true",
    "loadtester.tokenSecret=gate-tokens",
    "loadtester.webhookSecret=webhook-key",
    "metrics.serviceMonitor.enabled=true",
    "metrics.podMonitor.enabled=true",
    "meshes.gatewayAPI=true",
    "meshes.smi=true",
    "meshes.linkerd=true",
    "autoscalers.keda=true",
    "grafana.dashboards.enabled=true",
];

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_chart_lints_clean_in_every_mode() {
    let modes: [&[&str]; 3] = [&[], &["rbac.scope=namespace"], EVERYTHING];
    for values in modes {
        let mut args = vec!["lint", "--strict", helm::CHART];
        for value in values {
            args.extend(["--set", value]);
        }
        let out = helm::ok(&args);
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{out}"
        );
        for noise in ["[INFO]", "[WARNING]", "[ERROR]"] {
            assert!(
                !out.contains(noise),
                "helm lint {values:?} is not clean:\n{out}"
            );
        }
    }
}

fn assert_hardened(deployment: &Value) {
    let name = &deployment["metadata"]["name"];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    for container in pod["containers"].as_array().unwrap() {
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{name}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    container["resources"][bound][resource].is_string(),
                    "{name}: {bound}.{resource}"
                );
            }
        }
    }
}

#[test]
fn every_container_is_hardened_and_the_controller_is_highly_available() {
    let documents = helm::template("aviary", "aviary-system", EVERYTHING);
    let deployments = of_kind(&documents, "Deployment");
    assert_eq!(deployments.len(), 2, "controller and loadtester");
    deployments.iter().for_each(|d| assert_hardened(d));
    let controller = deployments
        .iter()
        .find(|d| d["metadata"]["name"] == "aviary")
        .unwrap();
    assert_eq!(controller["spec"]["replicas"], 2);
    let container = &controller["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"--leader-lease=aviary-system/aviary-leader"),
        "{args:?}"
    );
    assert_eq!(of_kind(&documents, "PodDisruptionBudget").len(), 1);
    let policy = of_kind(&documents, "NetworkPolicy");
    assert_eq!(
        policy[0]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
            ["app.kubernetes.io/component"],
        "controller",
        "only the controller may call the loadtester"
    );
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "ValidatingAdmissionPolicy",
        "ClusterRole",
    ] {
        assert_eq!(of_kind(&documents, kind).len(), 1, "{kind}");
    }
}

#[test]
fn the_namespaced_mode_has_roles_only_and_watches_its_namespace() {
    let documents = helm::template(
        "aviary",
        "aviary-system",
        &["rbac.scope=namespace", "rbac.watchNamespace=shop"],
    );
    assert!(of_kind(&documents, "ClusterRole").is_empty());
    assert!(of_kind(&documents, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&documents, "Role");
    let namespaces: Vec<&Value> = roles.iter().map(|r| &r["metadata"]["namespace"]).collect();
    assert_eq!(
        namespaces,
        [&json!("shop"), &json!("aviary-system")],
        "rules, then the lease"
    );
    let deployment = of_kind(&documents, "Deployment")[0];
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(
        args.as_array()
            .unwrap()
            .contains(&json!("--namespace=shop")),
        "{args}"
    );
}

#[test]
fn values_the_schema_refuses_are_named() {
    for (value, named) in [
        ("rbac.scope=galaxy", "scope"),
        ("controller.replicsa=2", "replicsa"),
        ("controller.meshProvider=consul", "meshProvider"),
        ("controller.metricsServer=prometheus:9090", "metricsServer"),
    ] {
        let output = helm::run(&["template", "aviary", helm::CHART, "--set", value]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{value} was accepted");
        assert!(
            stderr.contains(named),
            "{value}: the error does not name {named}: {stderr}"
        );
    }
}

/// Every kind the chart can create.
fn chart_kinds() -> Vec<ApiResource> {
    let kinds = [
        ("apps", "v1", "Deployment"),
        ("", "v1", "Service"),
        ("", "v1", "ServiceAccount"),
        ("policy", "v1", "PodDisruptionBudget"),
        ("networking.k8s.io", "v1", "NetworkPolicy"),
        ("coordination.k8s.io", "v1", "Lease"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
        ),
    ];
    kinds
        .into_iter()
        .map(|(group, version, kind)| {
            ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
        })
        .collect()
}

/// `kind/name` of every object of the release left in the cluster.
async fn left_of(client: &kube::Client, release: &str) -> Vec<String> {
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let mut left = Vec::new();
    for resource in chart_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for object in api.list(&selector).await.unwrap().items {
            left.push(format!(
                "{}/{}",
                resource.kind,
                object.metadata.name.unwrap_or_default()
            ));
        }
    }
    left.sort();
    left
}

#[tokio::test]
async fn install_upgrade_and_uninstall_leave_only_the_crds() {
    let client = support::admin().await;
    let ns = support::namespace(&client, "chart-life").await;
    let release = &format!("aviary-life{}", rand::random::<u16>());
    helm::install(release, &ns, &[]);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns);
    let replicas = |d: k8s_openapi::api::apps::v1::Deployment| d.spec.unwrap().replicas;
    assert_eq!(replicas(deployments.get(release).await.unwrap()), Some(2));
    let installed = left_of(&client, release).await;
    assert!(
        installed.contains(&format!("ClusterRole/{release}")),
        "{installed:?}"
    );

    let watched = format!("rbac.watchNamespace={ns}");
    let upgrade = [
        "controller.replicas=3",
        "loadtester.enabled=true",
        "rbac.scope=namespace",
        &watched,
    ];
    helm::install(release, &ns, &upgrade);
    assert_eq!(replicas(deployments.get(release).await.unwrap()), Some(3));
    assert!(deployments
        .get_opt(&format!("{release}-loadtester"))
        .await
        .unwrap()
        .is_some());
    let upgraded = left_of(&client, release).await;
    assert!(
        !upgraded.iter().any(|o| o.starts_with("ClusterRole")),
        "{upgraded:?}"
    );
    assert!(
        upgraded.contains(&format!("Role/{release}")),
        "{upgraded:?}"
    );

    helm::ok(&[
        "uninstall",
        release,
        "--namespace",
        &ns,
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert_eq!(left_of(&client, release).await, Vec::<String>::new());
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for crd in [
        "canaries.aviary.dev",
        "metrictemplates.aviary.dev",
        "alertproviders.aviary.dev",
    ] {
        assert!(crds.get_opt(crd).await.unwrap().is_some(), "{crd} stays");
    }
}

#[test]
fn the_dashboards_ship_as_configmaps_for_grafanas_sidecar() {
    let documents = helm::template("aviary", "aviary-system", EVERYTHING);
    let maps = of_kind(&documents, "ConfigMap");
    for name in ["controller", "istio", "linkerd", "envoy"] {
        let file = format!("{name}.json");
        let map = maps
            .iter()
            .find(|m| m["data"].get(&file).is_some())
            .unwrap_or_else(|| panic!("no ConfigMap holds {file}"));
        assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
        let shipped: Value = serde_json::from_str(map["data"][&file].as_str().unwrap()).unwrap();
        let path = format!(
            "{}/charts/aviary/dashboards/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let source: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(shipped, source, "{file} ships unchanged");
    }
    let plain = helm::template("aviary", "aviary-system", &[]);
    assert!(of_kind(&plain, "ConfigMap").is_empty(), "off by default");
}
