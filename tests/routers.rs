//! Router conformance on the real control plane: one set of scenarios (promote, rollback, A/B,
//! blue/green, mirror, restart mid-rollout, revert on deletion) run against every Kubernetes
//! router, asserting on the routing objects each writes. The objects are read here with their
//! own field paths, not with the library's readers, so a router and its reader cannot agree on
//! a mistake. A scenario a router cannot express must be refused at the door, with the field.
//!
//! Adding a router means adding a `Mesh` variant and passing every scenario below.

mod support;

use std::time::Duration;

use kube::api::{DeleteParams, PostParams};
use serde_json::{json, Value};

use aviary::api::{CanaryPhase, CanaryStatus};
use support::fixture::Fixture;
use support::telemetry::{Health, ProxyTelemetry};
use support::{eventually, ControllerProcess};

const LIMIT: Duration = Duration::from_secs(90);
const SERVICE: &str = "web";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mesh {
    Istio,
    GatewayApi,
    /// Flagger's `gatewayapi:v1beta1` (Linkerd's tutorial), read back through the v1beta1 API.
    GatewayApiV1beta1,
    Smi,
    SmiV1alpha1,
    SmiV1alpha3,
    /// No mesh: the apex Service is the whole routing, and only blue/green runs.
    Kubernetes,
    /// Kuma: a cluster-scoped TrafficRoute `<svc>.<namespace>`.
    Kuma,
}

/// What a routing object says, read with the routing API's own field names.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Observed {
    canary_weight: i64,
    /// Requests with `x-canary: insider` go to the canary.
    ab_to_canary: bool,
    mirror_percent: Option<i64>,
}

impl Mesh {
    fn provider(self) -> &'static str {
        match self {
            Mesh::Istio => "istio",
            Mesh::GatewayApi => "gatewayapi:v1",
            Mesh::GatewayApiV1beta1 => "gatewayapi:v1beta1",
            Mesh::Smi => "linkerd",
            Mesh::SmiV1alpha1 => "smi:v1alpha1",
            Mesh::SmiV1alpha3 => "smi:v1alpha3",
            Mesh::Kubernetes => "kubernetes",
            Mesh::Kuma => "kuma",
        }
    }

    fn spec_extra(self) -> Value {
        match self {
            // GAMMA: the HTTPRoute's parent is the apex Service itself.
            Mesh::GatewayApi | Mesh::GatewayApiV1beta1 => json!({
                "provider": self.provider(),
                "service": { "port": 9898, "gatewayRefs": [{ "group": "", "kind": "Service", "name": SERVICE, "port": 9898 }] }
            }),
            _ => json!({ "provider": self.provider() }),
        }
    }

    fn route_api(self, f: &Fixture) -> kube::Api<kube::api::DynamicObject> {
        let gateway = "gateway.networking.k8s.io";
        match self {
            Mesh::Istio => f.dynamic("networking.istio.io", "v1", "VirtualService"),
            Mesh::GatewayApi => f.dynamic(gateway, "v1", "HTTPRoute"),
            Mesh::GatewayApiV1beta1 => f.dynamic(gateway, "v1beta1", "HTTPRoute"),
            Mesh::Smi => f.dynamic("split.smi-spec.io", "v1alpha2", "TrafficSplit"),
            Mesh::SmiV1alpha1 => f.dynamic("split.smi-spec.io", "v1alpha1", "TrafficSplit"),
            Mesh::SmiV1alpha3 => f.dynamic("split.smi-spec.io", "v1alpha3", "TrafficSplit"),
            Mesh::Kubernetes => f.dynamic("", "v1", "Service"),
            Mesh::Kuma => {
                let gvk = kube::core::GroupVersionKind::gvk("kuma.io", "v1alpha1", "TrafficRoute");
                let resource = kube::core::ApiResource::from_gvk(&gvk);
                kube::Api::all_with(f.client.clone(), &resource)
            }
        }
    }

    /// The routing object's name: the apex's, or for a cluster-scoped one also the namespace's.
    fn route_name(self, f: &Fixture) -> String {
        match self {
            Mesh::Kuma => format!("{SERVICE}.{}", f.ns),
            _ => SERVICE.to_string(),
        }
    }

    fn can_match(self) -> bool {
        matches!(
            self,
            Mesh::Istio | Mesh::GatewayApi | Mesh::GatewayApiV1beta1
        )
    }

    fn can_mirror(self) -> bool {
        self.can_match()
    }

    fn can_split(self) -> bool {
        self != Mesh::Kubernetes
    }

    /// The canary weights a promotion of [`Mesh::progressive`] steps 25 and 50 goes through.
    fn promoted_weights(self) -> Vec<i64> {
        if self.can_split() {
            vec![0, 25, 50, 0]
        } else {
            vec![0]
        }
    }

    /// The analysis of a progressive rollout: weighted steps where the router can split,
    /// blue/green iterations where it cannot.
    fn progressive(self, weighted: Value) -> Value {
        if self.can_split() {
            return weighted;
        }
        let mut analysis = weighted;
        let fields = analysis.as_object_mut().unwrap();
        fields.remove("stepWeight");
        fields.remove("maxWeight");
        fields.insert("iterations".into(), json!(3));
        analysis
    }

    fn observe(self, spec: &Value) -> Option<Observed> {
        let canary = format!("{SERVICE}-canary");
        match self {
            Mesh::Istio => {
                let http = spec["http"].as_array()?;
                let main = http.iter().find(|r| r["name"] == "primary")?;
                let weight_of = |rule: &Value| {
                    rule["route"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|d| d["destination"]["host"] == json!(canary))
                        .and_then(|d| d["weight"].as_i64())
                };
                Some(Observed {
                    canary_weight: weight_of(main)?,
                    ab_to_canary: http.iter().any(|r| {
                        r["match"][0]["headers"]["x-canary"]["exact"] == "insider"
                            && weight_of(r) == Some(100)
                    }),
                    mirror_percent: (main["mirror"]["host"] == json!(canary))
                        .then(|| main["mirrorPercentage"]["value"].as_f64().map(|v| v as i64))
                        .flatten(),
                })
            }
            Mesh::GatewayApi | Mesh::GatewayApiV1beta1 => {
                assert_eq!(
                    spec["parentRefs"][0],
                    json!({ "group": "", "kind": "Service", "name": SERVICE, "port": 9898 }),
                    "the route attaches to gatewayRefs"
                );
                let rules = spec["rules"].as_array()?;
                let weight_of = |rule: &Value| {
                    rule["backendRefs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|b| b["name"] == json!(canary))
                        .and_then(|b| b["weight"].as_i64())
                };
                let main = rules.last()?;
                let insider = json!({ "type": "Exact", "name": "x-canary", "value": "insider" });
                Some(Observed {
                    canary_weight: weight_of(main)?,
                    ab_to_canary: rules.iter().any(|r| {
                        r["matches"][0]["headers"][0] == insider && weight_of(r) == Some(100)
                    }),
                    mirror_percent: main["filters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|f| {
                            f["type"] == "RequestMirror"
                                && f["requestMirror"]["backendRef"]["name"] == json!(canary)
                        })
                        .and_then(|f| f["requestMirror"]["percent"].as_i64()),
                })
            }
            Mesh::Smi | Mesh::SmiV1alpha1 | Mesh::SmiV1alpha3 => {
                assert_eq!(spec["service"], json!(SERVICE));
                let weight = spec["backends"]
                    .as_array()?
                    .iter()
                    .find(|b| b["service"] == json!(canary))?["weight"]
                    .as_i64()?;
                Some(Observed {
                    canary_weight: weight,
                    ab_to_canary: false,
                    mirror_percent: None,
                })
            }
            Mesh::Kuma => {
                // `<service>_<namespace>_svc_<port>`: the apex's names the namespace.
                let apex = spec["destinations"][0]["match"]["kuma.io/service"].as_str()?;
                let namespace = apex.strip_prefix("web_")?.strip_suffix("_svc_9898")?;
                let tag = |service: &str| json!({ "kuma.io/service": format!("{service}_{namespace}_svc_9898") });
                let split = spec["conf"]["split"].as_array()?;
                let weight =
                    split.iter().find(|s| s["destination"] == tag(&canary))?["weight"].as_i64()?;
                Some(Observed {
                    canary_weight: weight,
                    ab_to_canary: false,
                    mirror_percent: None,
                })
            }
            // Flagger's kubernetes provider: the apex Service always selects the primary's pods;
            // the canary is reached only through `<svc>-canary`.
            Mesh::Kubernetes => Some(Observed {
                canary_weight: if spec["selector"]["app"] == json!(format!("{SERVICE}-primary")) {
                    0
                } else {
                    100
                },
                ab_to_canary: false,
                mirror_percent: None,
            }),
        }
    }

    /// Rewrites the canary's weight in a routing object, as a crash between the route write and
    /// the status write would leave it.
    fn tamper(self, spec: &mut Value, weight: i64) {
        let canary = json!(format!("{SERVICE}-canary"));
        let entries = match self {
            Mesh::Istio => spec["http"]
                .as_array_mut()
                .and_then(|h| h.iter_mut().find(|r| r["name"] == "primary"))
                .and_then(|r| r["route"].as_array_mut()),
            Mesh::GatewayApi | Mesh::GatewayApiV1beta1 => spec["rules"]
                .as_array_mut()
                .and_then(|r| r.last_mut())
                .and_then(|r| r["backendRefs"].as_array_mut()),
            Mesh::Smi | Mesh::SmiV1alpha1 | Mesh::SmiV1alpha3 => spec["backends"].as_array_mut(),
            Mesh::Kuma => spec["conf"]["split"].as_array_mut(),
            Mesh::Kubernetes => return,
        };
        for entry in entries.expect("a weighted rule") {
            let kuma_service = entry["destination"]["kuma.io/service"].as_str();
            let is_canary = entry["destination"]["host"] == canary
                || entry["name"] == canary
                || entry["service"] == canary
                || kuma_service.is_some_and(|s| s.starts_with(&format!("{SERVICE}-canary_")));
            entry["weight"] = json!(if is_canary { weight } else { 100 - weight });
        }
    }
}

struct Suite {
    f: Fixture,
    mesh: Mesh,
}

impl Suite {
    async fn new(mesh: Mesh, scenario: &str) -> Suite {
        let prefix = format!("{}-{scenario}", format!("{mesh:?}").to_lowercase());
        let f = Fixture::new(&prefix).await;
        f.telemetry.set(&f.ns, SERVICE, Health::GOOD);
        f.create_target(SERVICE, "web:1").await;
        Suite { f, mesh }
    }

    async fn create(&self, analysis: Value, extra: Value) {
        let mut spec = self.mesh.spec_extra();
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        self.f.create_canary(SERVICE, SERVICE, analysis, spec).await;
    }

    async fn observed(&self) -> Option<Observed> {
        let object = self
            .mesh
            .route_api(&self.f)
            .get_opt(&self.mesh.route_name(&self.f))
            .await
            .unwrap()?;
        self.mesh.observe(&object.data["spec"])
    }

    /// Every distinct routing state until the canary ends in Succeeded or Failed.
    async fn record_until_done(&self) -> (Vec<Observed>, CanaryStatus) {
        let mut seen: Vec<Observed> = Vec::new();
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            if let Some(now) = self.observed().await {
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
            }
            let status = self.f.status(SERVICE).await;
            // A stored intent (effectsPending) is a transition still being carried out.
            let ended = matches!(status.phase, CanaryPhase::Succeeded | CanaryPhase::Failed);
            if ended && !status.effects_pending {
                if let Some(now) = self.observed().await {
                    if seen.last() != Some(&now) {
                        seen.push(now);
                    }
                }
                return (seen, status);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}: no end phase within {LIMIT:?}; routes {seen:?}; status {status:#?}\n{}",
                self.mesh,
                self.f.controller.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates the canary, waits for the first rollout, then starts a second revision.
    async fn start_rollout(&self, analysis: Value, extra: Value) {
        self.create(analysis, extra).await;
        self.f
            .wait_phase(SERVICE, CanaryPhase::Initialized, LIMIT)
            .await;
        assert_eq!(
            self.observed().await.map(|o| o.canary_weight),
            Some(0),
            "{:?}: after bootstrap all traffic goes to the primary",
            self.mesh
        );
        self.f.set_image(SERVICE, "web:2").await;
    }

    /// A canary the router cannot serve is refused with the field's path, and nothing is made.
    async fn assert_refused(&self, analysis: Value, field: &str) {
        self.create(analysis, json!({})).await;
        eventually(LIMIT, || async {
            self.f
                .condition(SERVICE, "Ready")
                .await
                .is_some_and(|(_, reason, _)| reason == "InvalidSpec")
        })
        .await;
        let (status, _, message) = self.f.condition(SERVICE, "Ready").await.unwrap();
        assert_eq!(status, "False");
        assert!(message.contains(field), "{field} not named in: {message}");
        assert!(self.observed().await.is_none(), "no routing object written");
        assert!(
            self.f
                .deployments()
                .get_opt(&format!("{SERVICE}-primary"))
                .await
                .unwrap()
                .is_none(),
            "no primary created"
        );
    }
}

fn weights(seen: &[Observed]) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for weight in seen.iter().map(|o| o.canary_weight) {
        if out.last() != Some(&weight) {
            out.push(weight);
        }
    }
    out
}

async fn promote(mesh: Mesh) {
    let s = Suite::new(mesh, "promote").await;
    let analysis = json!({ "interval": "2s", "threshold": 2, "stepWeight": 25, "maxWeight": 50 });
    s.start_rollout(mesh.progressive(analysis), json!({})).await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(status.phase, CanaryPhase::Succeeded, "{mesh:?} {seen:?}");
    assert_eq!(weights(&seen), mesh.promoted_weights(), "{mesh:?}");
    assert_eq!(s.f.image_of("web-primary").await, "web:2");
    eventually(LIMIT, || async { s.f.replicas_of(SERVICE).await == 0 }).await;
}

async fn rollback(mesh: Mesh) {
    let s = Suite::new(mesh, "rollback").await;
    // A rollout webhook nobody answers fails every check.
    let analysis = json!({
        "interval": "1s", "threshold": 2, "stepWeight": 25, "maxWeight": 50,
        "webhooks": [{ "name": "load", "type": "rollout", "url": "http://127.0.0.1:9/", "timeout": "1s" }]
    });
    s.start_rollout(mesh.progressive(analysis), json!({})).await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(status.phase, CanaryPhase::Failed, "{mesh:?} {seen:?}");
    let weights = weights(&seen);
    assert_eq!(weights.last(), Some(&0), "{mesh:?} {weights:?}");
    assert!(weights.iter().all(|w| *w <= 25), "{mesh:?} {weights:?}");
    assert_eq!(s.f.image_of("web-primary").await, "web:1");
}

async fn ab_testing(mesh: Mesh) {
    let s = Suite::new(mesh, "ab").await;
    let analysis = json!({
        "interval": "1s", "threshold": 2, "iterations": 3,
        "match": [{ "headers": { "x-canary": { "exact": "insider" } } }]
    });
    if !mesh.can_match() {
        return s.assert_refused(analysis, "spec.analysis.match").await;
    }
    s.start_rollout(analysis, json!({})).await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(status.phase, CanaryPhase::Succeeded, "{mesh:?} {seen:?}");
    assert!(
        seen.iter().any(|o| o.ab_to_canary && o.canary_weight == 0),
        "{mesh:?}: matching requests went to the canary, the rest stayed: {seen:?}"
    );
    let last = seen.last().unwrap();
    assert!(!last.ab_to_canary, "{mesh:?}: A/B rule removed: {seen:?}");
    assert_eq!(s.f.image_of("web-primary").await, "web:2");
}

async fn blue_green(mesh: Mesh) {
    let s = Suite::new(mesh, "bluegreen").await;
    let analysis = json!({ "interval": "1s", "threshold": 2, "iterations": 2 });
    s.start_rollout(analysis, json!({})).await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(status.phase, CanaryPhase::Succeeded, "{mesh:?} {seen:?}");
    let weights = weights(&seen);
    assert!(
        weights.iter().all(|w| *w == 0 || *w == 100),
        "{mesh:?}: all at once, never a split: {weights:?}"
    );
    assert_eq!(weights.last(), Some(&0));
    assert_eq!(s.f.image_of("web-primary").await, "web:2");
}

async fn mirror(mesh: Mesh) {
    let s = Suite::new(mesh, "mirror").await;
    let analysis = json!({
        "interval": "1s", "threshold": 2, "iterations": 3, "mirror": true, "mirrorWeight": 50
    });
    if !mesh.can_mirror() {
        return s.assert_refused(analysis, "spec.analysis.mirror").await;
    }
    s.start_rollout(analysis, json!({})).await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(status.phase, CanaryPhase::Succeeded, "{mesh:?} {seen:?}");
    assert!(
        seen.iter()
            .any(|o| o.mirror_percent == Some(50) && o.canary_weight == 0),
        "{mesh:?}: half the requests copied to the canary, answers from the primary: {seen:?}"
    );
    assert_eq!(seen.last().unwrap().mirror_percent, None, "{mesh:?}");
}

/// Without a split there is no weight to tamper with: the controller is killed mid-analysis and
/// its successor must finish the same rollout.
async fn restart_mid_blue_green(mut s: Suite) {
    let analysis = json!({ "interval": "3s", "threshold": 2, "iterations": 4 });
    s.start_rollout(analysis, json!({})).await;
    s.f.wait_phase(SERVICE, CanaryPhase::Progressing, LIMIT)
        .await;
    s.f.controller.kill().await;
    let (_, prometheus) = ProxyTelemetry::shared();
    s.f.controller = ControllerProcess::start(&s.f.ns, prometheus).await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(
        status.phase,
        CanaryPhase::Succeeded,
        "{:?} {seen:?}",
        s.mesh
    );
    assert_eq!(weights(&seen), vec![0], "{:?}", s.mesh);
    assert_eq!(s.f.image_of("web-primary").await, "web:2");
}

async fn restart_mid_rollout(mesh: Mesh) {
    let mut s = Suite::new(mesh, "restart").await;
    if !mesh.can_split() {
        return restart_mid_blue_green(s).await;
    }
    let analysis = json!({ "interval": "3s", "threshold": 2, "stepWeight": 20, "maxWeight": 60 });
    s.start_rollout(analysis, json!({})).await;
    eventually(LIMIT, || async {
        s.observed().await.is_some_and(|o| o.canary_weight == 20)
    })
    .await;
    s.f.controller.kill().await;
    let before = s.f.status(SERVICE).await;
    let api = s.mesh.route_api(&s.f);
    let name = mesh.route_name(&s.f);
    let mut object = api.get(&name).await.unwrap();
    mesh.tamper(&mut object.data["spec"], 55);
    api.replace(&name, &PostParams::default(), &object)
        .await
        .unwrap();
    assert_eq!(s.observed().await.map(|o| o.canary_weight), Some(55));
    let (_, prometheus) = ProxyTelemetry::shared();
    s.f.controller = ControllerProcess::start(&s.f.ns, prometheus).await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(status.phase, CanaryPhase::Succeeded, "{mesh:?} {seen:?}");
    let after: Vec<i64> = weights(&seen).into_iter().filter(|w| *w != 55).collect();
    let expected: Vec<i64> = (before.canary_weight as i64 / 20..=3)
        .map(|step| step * 20)
        .chain([0])
        .collect();
    assert_eq!(
        after, expected,
        "{mesh:?}: the route read back, set to the status's weight, and no step repeated or skipped"
    );
}

async fn revert_on_deletion(mesh: Mesh) {
    let s = Suite::new(mesh, "revert").await;
    let analysis = mesh.progressive(json!({ "interval": "1s", "threshold": 2, "stepWeight": 50 }));
    s.create(analysis, json!({ "revertOnDeletion": true }))
        .await;
    s.f.wait_phase(SERVICE, CanaryPhase::Initialized, LIMIT)
        .await;
    eventually(LIMIT, || async { s.f.replicas_of(SERVICE).await == 0 }).await;
    assert!(s.observed().await.is_some());
    s.f.canaries()
        .delete(SERVICE, &DeleteParams::default())
        .await
        .unwrap();
    eventually(LIMIT, || async {
        s.f.canaries().get_opt(SERVICE).await.unwrap().is_none()
    })
    .await;
    assert_eq!(
        s.f.replicas_of(SERVICE).await,
        2,
        "{mesh:?}: target restored"
    );
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(s.f.client.clone(), &s.f.ns);
    let apex = services.get(SERVICE).await.unwrap();
    assert_eq!(apex.spec.unwrap().selector.unwrap()["app"], SERVICE);
    if mesh == Mesh::Kubernetes {
        return; // its routing object is the apex Service, which stays
    }
    eventually(LIMIT, || async {
        s.mesh
            .route_api(&s.f)
            .get_opt(&s.mesh.route_name(&s.f))
            .await
            .unwrap()
            .is_none()
    })
    .await;
}

macro_rules! conformance {
    ($($router:ident => $mesh:expr),* $(,)?) => {$(
        mod $router {
            use super::*;

            #[tokio::test]
            async fn promote() {
                super::promote($mesh).await
            }

            #[tokio::test]
            async fn rollback() {
                super::rollback($mesh).await
            }

            #[tokio::test]
            async fn ab_testing() {
                super::ab_testing($mesh).await
            }

            #[tokio::test]
            async fn blue_green() {
                super::blue_green($mesh).await
            }

            #[tokio::test]
            async fn mirror() {
                super::mirror($mesh).await
            }

            #[tokio::test]
            async fn restart_mid_rollout() {
                super::restart_mid_rollout($mesh).await
            }

            #[tokio::test]
            async fn revert_on_deletion() {
                super::revert_on_deletion($mesh).await
            }
        }
    )*};
}

conformance! {
    istio => Mesh::Istio,
    gateway_api => Mesh::GatewayApi,
    gateway_api_v1beta1 => Mesh::GatewayApiV1beta1,
    smi => Mesh::Smi,
    smi_v1alpha1 => Mesh::SmiV1alpha1,
    smi_v1alpha3 => Mesh::SmiV1alpha3,
    kubernetes => Mesh::Kubernetes,
    kuma => Mesh::Kuma,
}

/// A full rollout judged by the built-in checks over one data plane's telemetry in a real
/// Prometheus: the controller's default mesh is `mesh`, the canary names no provider, a healthy
/// revision is promoted and a failing one rolled back by `request-success-rate`.
async fn judged_by_telemetry(mesh: Mesh, args: &[&str], telemetry_name: &str) {
    let prefix = format!("{}-judged", mesh.provider().replace(':', "-"));
    let f = Fixture::with_args(&prefix, args).await;
    let s = Suite { f, mesh };
    s.f.telemetry.set(&s.f.ns, SERVICE, Health::GOOD);
    s.f.create_target(SERVICE, "web:1").await;
    let analysis = mesh.progressive(json!({
        "interval": "2s", "threshold": 2, "stepWeight": 25, "maxWeight": 50,
        "metrics": [
            { "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } },
            { "name": "request-duration", "interval": "10s", "thresholdRange": { "max": 500 } }
        ]
    }));
    let mut extra = mesh.spec_extra();
    extra.as_object_mut().unwrap().remove("provider");
    s.f.create_canary(SERVICE, SERVICE, analysis, extra).await;
    s.f.wait_phase(SERVICE, CanaryPhase::Initialized, LIMIT)
        .await;
    s.f.set_image(SERVICE, "web:2").await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(status.phase, CanaryPhase::Succeeded, "{mesh:?} {seen:?}");
    assert_eq!(weights(&seen), mesh.promoted_weights(), "{mesh:?}");
    let reasons = s.f.event_reasons().await;
    let advanced = reasons
        .iter()
        .find(|(r, _)| r == "WeightAdvanced" || r == "IterationPassed")
        .map(|(_, message)| message.clone())
        .unwrap_or_else(|| panic!("{mesh:?}: no step event in {reasons:?}"));
    assert!(
        advanced.contains("request-success-rate=100"),
        "{mesh:?}: {telemetry_name} was read: {advanced}"
    );

    s.f.telemetry.set(&s.f.ns, SERVICE, Health::FAILING);
    s.f.set_image(SERVICE, "web:3").await;
    s.f.wait_phase(SERVICE, CanaryPhase::Progressing, LIMIT)
        .await;
    let (seen, status) = s.record_until_done().await;
    assert_eq!(status.phase, CanaryPhase::Failed, "{mesh:?} {seen:?}");
    assert_eq!(s.f.image_of("web-primary").await, "web:2");
    let reasons = s.f.event_reasons().await;
    let rolled = reasons.iter().find(|(r, _)| r == "RolledBack").unwrap();
    assert!(rolled.1.contains("request-success-rate"), "{}", rolled.1);
}

/// Linkerd through SMI, judged by Linkerd's `response_total`.
#[tokio::test]
async fn linkerd_promotes_on_healthy_telemetry_and_rolls_back_on_failing() {
    judged_by_telemetry(
        Mesh::Smi,
        &["--mesh-provider", "linkerd"],
        "Linkerd's response_total",
    )
    .await
}

/// Flagger's Linkerd tutorial: Gateway API v1beta1 routes, judged by Linkerd's proxy telemetry.
#[tokio::test]
async fn gatewayapi_v1beta1_with_linkerd_telemetry_promotes_and_rolls_back() {
    let args = [
        "--mesh-provider",
        "gatewayapi:v1beta1",
        "--telemetry",
        "linkerd",
    ];
    judged_by_telemetry(Mesh::GatewayApiV1beta1, &args, "Linkerd's response_total").await
}

/// No mesh: blue/green over plain Services, judged by the application's own HTTP histogram.
#[tokio::test]
async fn kubernetes_blue_green_on_application_telemetry_promotes_and_rolls_back() {
    let args = ["--mesh-provider", "kubernetes"];
    judged_by_telemetry(Mesh::Kubernetes, &args, "http_request_duration_seconds").await
}

/// Kuma: a TrafficRoute, judged by the callers' Envoy cluster statistics.
#[tokio::test]
async fn kuma_on_envoy_cluster_telemetry_promotes_and_rolls_back() {
    let args = ["--mesh-provider", "kuma"];
    judged_by_telemetry(Mesh::Kuma, &args, "envoy_cluster_upstream_rq").await
}

/// A cluster-scoped TrafficRoute cannot be owned by its Canary: it goes with the Canary all the
/// same, and only its own. Another namespace's canary of the same name keeps its route.
#[tokio::test]
async fn a_kuma_route_goes_with_its_canary_and_no_other() {
    let mesh = Mesh::Kuma;
    let analysis = json!({ "interval": "1s", "threshold": 2, "stepWeight": 50 });
    let ours = Suite::new(mesh, "owned").await;
    let theirs = Suite::new(mesh, "neighbour").await;
    for s in [&ours, &theirs] {
        s.create(analysis.clone(), json!({})).await;
        s.f.wait_phase(SERVICE, CanaryPhase::Initialized, LIMIT)
            .await;
        assert_eq!(s.observed().await.map(|o| o.canary_weight), Some(0));
    }
    let finalizers = ours
        .f
        .canaries()
        .get(SERVICE)
        .await
        .unwrap()
        .metadata
        .finalizers;
    assert!(
        finalizers.is_some_and(|f| !f.is_empty()),
        "a finalizer removes the route"
    );
    ours.f
        .canaries()
        .delete(SERVICE, &DeleteParams::default())
        .await
        .unwrap();
    eventually(LIMIT, || async {
        ours.f.canaries().get_opt(SERVICE).await.unwrap().is_none()
    })
    .await;
    assert!(ours.observed().await.is_none(), "our TrafficRoute deleted");
    assert_eq!(
        theirs.observed().await.map(|o| o.canary_weight),
        Some(0),
        "the other namespace's route stays"
    );
}
