//! The test environment itself, proven against the real components: the control plane (with kwok
//! nodes, garbage collection, CRDs, server-side apply, watches, the status subresource and RBAC),
//! a Prometheus scraping a local endpoint, and an Envoy splitting traffic by weights from a file.

mod support;

use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use aviary::api::{Canary, CanaryPhase, CanaryStatus};
use support::eventually;

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "example/app:1" }] }
            }
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn deployments_become_available_and_dependents_are_garbage_collected() {
    let client = support::admin().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        version.git_version,
        std::env::var("AVIARY_KUBE_VERSION").unwrap_or(version.git_version.clone())
    );
    assert!(
        version.git_version.starts_with("v1.34."),
        "{}",
        version.git_version
    );
    let ns = support::namespace(&client, "gc").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    deployments
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .unwrap();
    eventually(Duration::from_secs(60), || async {
        let d = deployments.get("web").await.unwrap();
        let status = d.status.unwrap_or_default();
        status.available_replicas == Some(3) && status.ready_replicas == Some(3)
    })
    .await;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        sets.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    eventually(Duration::from_secs(60), || async {
        sets.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;

    // An explicit owner reference on a ConfigMap is honoured the same way.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "owner" } })).unwrap(),
        )
        .await
        .unwrap();
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "dependent", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid
        }] }
    }))
    .unwrap();
    maps.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    maps.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(Duration::from_secs(60), || async {
        maps.get_opt("dependent").await.unwrap().is_none()
    })
    .await;
}

fn canary_manifest(name: &str, port: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "aviary.dev/v1beta1",
        "kind": "Canary",
        "metadata": { "name": name },
        "spec": {
            "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
            "service": { "port": port },
            "analysis": { "interval": "30s", "threshold": 2, "stepWeight": 10, "maxWeight": 50 }
        }
    })
}

#[tokio::test]
async fn canary_crd_supports_crud_apply_watch_and_status() {
    let client = support::admin().await;
    let ns = support::namespace(&client, "crd").await;
    let canaries: Api<Canary> = Api::namespaced(client.clone(), &ns);

    // The watch reports its initial (empty) list before anything is created, so it sees the
    // creation and the status change as changes, not as one late list.
    let (listed, on_listed) = tokio::sync::oneshot::channel();
    let watch = watcher(canaries.clone(), watcher::Config::default());
    let seen = tokio::spawn(async move {
        let mut watch = std::pin::pin!(watch);
        let mut listed = Some(listed);
        let mut names = Vec::new();
        while let Ok(Some(event)) = watch.try_next().await {
            let canary = match event {
                watcher::Event::InitDone => {
                    listed.take().map(|l| l.send(()));
                    continue;
                }
                watcher::Event::Apply(canary) | watcher::Event::InitApply(canary) => canary,
                _ => continue,
            };
            names.push(canary.metadata.name.clone().unwrap());
            if canary
                .status
                .as_ref()
                .is_some_and(|s| s.phase == CanaryPhase::Progressing)
            {
                break;
            }
        }
        names
    });
    tokio::time::timeout(Duration::from_secs(60), on_listed)
        .await
        .expect("the watch lists within 60s")
        .unwrap();

    let created: Canary = serde_json::from_value(canary_manifest("podinfo", json!(9898))).unwrap();
    canaries
        .create(&PostParams::default(), &created)
        .await
        .unwrap();
    let read = canaries.get("podinfo").await.unwrap();
    assert_eq!(read.spec.service.port, 9898);

    let mut applied = canary_manifest("podinfo", json!(9898));
    applied["spec"]["analysis"]["stepWeight"] = json!(20);
    canaries
        .patch(
            "podinfo",
            &PatchParams::apply("aviary-test").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    let read = canaries.get("podinfo").await.unwrap();
    assert_eq!(read.spec.analysis.as_ref().unwrap().step_weight, Some(20));

    let status = CanaryStatus {
        phase: CanaryPhase::Progressing,
        canary_weight: 20,
        ..CanaryStatus::default()
    };
    canaries
        .patch_status(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap();
    let read = canaries.get_status("podinfo").await.unwrap();
    assert_eq!(read.status.unwrap().canary_weight, 20);

    let names = tokio::time::timeout(Duration::from_secs(20), seen)
        .await
        .expect("watch saw the status")
        .unwrap();
    assert!(
        names.iter().all(|n| n == "podinfo") && names.len() >= 2,
        "{names:?}"
    );
}

#[tokio::test]
async fn a_canary_with_a_wrong_field_type_is_rejected_by_the_api_server() {
    let client = support::admin().await;
    let ns = support::namespace(&client, "bad").await;
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client, &ns, &kube::core::ApiResource::erase::<Canary>(&()));
    let bad: kube::api::DynamicObject =
        serde_json::from_value(canary_manifest("bad", json!("eighty"))).unwrap();
    let error = api.create(&PostParams::default(), &bad).await.unwrap_err();
    let kube::Error::Api(response) = error else {
        panic!("expected an API error, got {error:?}")
    };
    assert_eq!(response.code, 422, "{response:?}");
    assert!(
        response.message.contains("spec.service.port"),
        "{}",
        response.message
    );
    assert!(response.message.contains("integer"), "{}", response.message);
}

#[tokio::test]
async fn a_service_account_with_a_narrow_role_is_refused_outside_it() {
    let client = support::admin().await;
    let allowed = support::namespace(&client, "rbac-in").await;
    let other = support::namespace(&client, "rbac-out").await;
    let apply = |kind: &str, body: serde_json::Value| {
        let client = client.clone();
        let ns = allowed.clone();
        let kind = kind.to_string();
        async move {
            let (group, version) = if kind == "ServiceAccount" {
                ("", "v1")
            } else {
                ("rbac.authorization.k8s.io", "v1")
            };
            let resource = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                group, version, &kind,
            ));
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, &ns, &resource);
            let object: kube::api::DynamicObject = serde_json::from_value(body).unwrap();
            api.create(&PostParams::default(), &object).await.unwrap();
        }
    };
    apply(
        "ServiceAccount",
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "reader" } }),
    )
    .await;
    apply("Role", json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": { "name": "read-configmaps" },
        "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }]
    }))
    .await;
    apply("RoleBinding", json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": { "name": "reader" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps" },
        "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": allowed }]
    }))
    .await;
    let token = support::testenv_cmd(&["token", &allowed, "reader"]);
    let reader = support::with_token(&token).await;
    let inside: Api<ConfigMap> = Api::namespaced(reader.clone(), &allowed);
    inside
        .list(&ListParams::default())
        .await
        .expect("allowed inside its namespace");
    let outside: Api<ConfigMap> = Api::namespaced(reader.clone(), &other);
    match outside.list(&ListParams::default()).await {
        Err(kube::Error::Api(response)) => assert_eq!(response.code, 403, "{response:?}"),
        other => panic!("expected 403 outside the role's namespace, got {other:?}"),
    }
    let canaries: Api<Canary> = Api::namespaced(reader, &allowed);
    match canaries.list(&ListParams::default()).await {
        Err(kube::Error::Api(response)) => assert_eq!(response.code, 403),
        other => panic!("expected 403 on a resource outside the role, got {other:?}"),
    }
}

#[tokio::test]
async fn prometheus_scrapes_a_local_endpoint_and_answers_a_query() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            "# TYPE aviary_test_answer gauge\naviary_test_answer{source=\"test\"} 42\n"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = support::prometheus(&[address.to_string()]);
    let prometheus =
        aviary::metrics::prometheus::PrometheusClient::new(&url, Duration::from_secs(5));
    let mut answer = Err(aviary::metrics::MetricError::Unsupported(
        "none yet".into(),
        "test",
    ));
    for _ in 0..300 {
        answer = prometheus
            .query_number("aviary_test_answer", "test", 1)
            .await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(answer, Ok(42.0));
}

#[tokio::test]
async fn envoy_splits_traffic_by_weights_from_a_file() {
    use aviary::sample_app::{Behaviour, SampleApp};
    let primary = SampleApp::start("127.0.0.1:0", Behaviour::healthy("v1"))
        .await
        .unwrap();
    let canary = SampleApp::start("127.0.0.1:0", Behaviour::healthy("v2"))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("aviary-envoy-{}", rand::random::<u32>()));
    let routes_dir = dir.join("routes");
    std::fs::create_dir_all(&routes_dir).unwrap();
    let (listen, admin) = (support::free_port(), support::free_port());
    let cluster = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
        )
    };
    let bootstrap = format!(
        r#"node:
  id: aviary-test
  cluster: aviary-test
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin} }}
static_resources:
  listeners:
  - name: main
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listen} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          rds:
            route_config_name: split
            config_source:
              resource_api_version: V3
              path_config_source:
                path: {routes}/rds.yaml
                watched_directory:
                  path: {routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{primary_cluster}{canary_cluster}"#,
        routes = routes_dir.display(),
        primary_cluster = cluster("primary", primary.address.port()),
        canary_cluster = cluster("canary", canary.address.port()),
    );
    let rds = r#"version_info: "1"
resources:
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: split
  virtual_hosts:
  - name: app
    domains: ["*"]
    routes:
    - match: { prefix: "/" }
      route:
        weighted_clusters:
          clusters:
          - { name: primary, weight: 70 }
          - { name: canary, weight: 30 }
"#;
    std::fs::write(routes_dir.join("rds.yaml"), rds).unwrap();
    std::fs::write(dir.join("envoy.yaml"), bootstrap).unwrap();
    let mut envoy = tokio::process::Command::new(support::envoy_binary())
        .arg("-c")
        .arg(dir.join("envoy.yaml"))
        .args(["--disable-hot-restart", "-l", "warning"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("envoy starts");
    let http = aviary::http_client::client(Duration::from_secs(5));
    let ready = format!("http://127.0.0.1:{admin}/ready");
    let mut live = false;
    // A cold Envoy start on a loaded machine can take many seconds: allow up to 60.
    for _ in 0..600 {
        if http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            live = true;
            break;
        }
        if let Ok(Some(status)) = envoy.try_wait() {
            let mut stderr = String::new();
            use tokio::io::AsyncReadExt;
            envoy
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .await
                .unwrap();
            panic!("envoy exited with {status}: {stderr}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live, "envoy admin never became ready");
    let mut canary_answers = 0;
    for _ in 0..400 {
        let body: serde_json::Value = http
            .get(format!("http://127.0.0.1:{listen}/"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["version"] == "v2" {
            canary_answers += 1;
        }
    }
    assert!(
        (70..=170).contains(&canary_answers),
        "canary answered {canary_answers} of 400 at weight 30"
    );
    let stats = http
        .get(format!("http://127.0.0.1:{admin}/stats/prometheus"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let snapshot = aviary::metrics::Dialect::Envoy.parse(&stats).unwrap();
    assert_eq!(
        snapshot.workloads["canary"].total,
        f64::from(canary_answers),
        "Envoy's own counters agree"
    );
    assert_eq!(
        snapshot.workloads["primary"].total,
        f64::from(400 - canary_answers)
    );
    let _ = envoy.kill().await;
    let _ = std::fs::remove_dir_all(dir);
}
