//! One namespace, one controller process and the proxy telemetry it reads: what every
//! controller test on the real control plane starts from.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};

use aviary::api::{Canary, CanaryPhase, CanaryStatus};

use super::telemetry::ProxyTelemetry;
use super::ControllerProcess;

pub struct Fixture {
    pub client: Client,
    pub ns: String,
    pub telemetry: &'static ProxyTelemetry,
    pub controller: ControllerProcess,
}

impl Fixture {
    pub async fn new(prefix: &str) -> Fixture {
        Self::with_args(prefix, &[]).await
    }

    /// A fixture whose controller gets `args` (say `--mesh-provider linkerd`).
    pub async fn with_args(prefix: &str, args: &[&str]) -> Fixture {
        let client = super::admin().await;
        let ns = super::namespace(&client, prefix).await;
        let (telemetry, prometheus) = ProxyTelemetry::shared();
        let controller = ControllerProcess::start_with(&ns, prometheus, args).await;
        Fixture {
            client,
            ns,
            telemetry,
            controller,
        }
    }

    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn canaries(&self) -> Api<Canary> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Objects of any kind in the fixture's namespace.
    pub fn dynamic(&self, group: &str, version: &str, kind: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::namespaced_with(self.client.clone(), &self.ns, &resource)
    }

    /// The `(status, reason, message)` of one condition of a canary.
    pub async fn condition(&self, name: &str, kind: &str) -> Option<(String, String, String)> {
        self.status(name)
            .await
            .conditions
            .into_iter()
            .find(|c| c.r#type == kind)
            .map(|c| {
                (
                    c.status,
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default(),
                )
            })
    }

    pub fn virtual_services(&self) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "VirtualService",
        ));
        Api::namespaced_with(self.client.clone(), &self.ns, &resource)
    }

    pub async fn create_target(&self, name: &str, image: &str) {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "app", "image": image }] }
                }
            }
        }))
        .unwrap();
        self.deployments()
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
    }

    pub async fn set_image(&self, name: &str, image: &str) {
        let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "app", "image": image }] } } } });
        self.deployments()
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap();
    }

    pub async fn image_of(&self, name: &str) -> String {
        let d = self.deployments().get(name).await.unwrap();
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    pub async fn replicas_of(&self, name: &str) -> i32 {
        self.deployments()
            .get(name)
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas
            .unwrap_or(1)
    }

    pub async fn create_canary(&self, name: &str, target: &str, analysis: Value, extra: Value) {
        let mut manifest = json!({
            "apiVersion": "aviary.dev/v1beta1",
            "kind": "Canary",
            "metadata": { "name": name },
            "spec": {
                "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": target },
                "progressDeadlineSeconds": 60,
                "service": { "port": 9898 },
                "analysis": analysis
            }
        });
        if let (Some(spec), Some(extra)) = (manifest["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let canary: Canary = serde_json::from_value(manifest).unwrap();
        self.canaries()
            .create(&PostParams::default(), &canary)
            .await
            .unwrap();
    }

    /// The canary's status. Tests poll this, so a transient API error (a busy API server
    /// answering 429 or 5xx, a reset connection) is retried for a while, not a failure.
    pub async fn status(&self, name: &str) -> CanaryStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.canaries().get(name).await {
                Ok(canary) => return canary.status.unwrap_or_default(),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    panic!("Canary {name} does not exist: {}", status.message)
                }
                Err(error) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%error, "reading the canary again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("cannot read Canary {name}: {error}"),
            }
        }
    }

    pub async fn wait_phase(
        &self,
        name: &str,
        phase: CanaryPhase,
        limit: Duration,
    ) -> CanaryStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let status = self.status(name).await;
            // A stored intent (effectsPending) is a transition still being carried out.
            if status.phase == phase && !status.effects_pending {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{name} did not reach {phase} within {limit:?}; status {status:#?}\ncontroller log:\n{}", self.controller.logs());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The canary weight the VirtualService routes, if it exists.
    pub async fn routed_weight(&self, service: &str) -> Option<i64> {
        let vs = self.virtual_services().get_opt(service).await.unwrap()?;
        let http = vs.data["spec"]["http"].as_array()?.clone();
        let main = http.iter().find(|r| r["name"] == "primary")?;
        main["route"]
            .as_array()?
            .iter()
            .find(|d| d["destination"]["host"] == json!(format!("{service}-canary")))?["weight"]
            .as_i64()
    }

    /// Records every distinct VirtualService weight until `phase` is reached.
    pub async fn weights_until(
        &self,
        canary: &str,
        service: &str,
        phases: &[CanaryPhase],
        limit: Duration,
    ) -> (Vec<i64>, CanaryStatus) {
        let mut weights = Vec::new();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // The status first: once it says done, the routes read next are as the finished
            // transition left them.
            let status = self.status(canary).await;
            if let Some(weight) = self.routed_weight(service).await {
                if weights.last() != Some(&weight) {
                    weights.push(weight);
                }
            }
            if phases.contains(&status.phase) && !status.effects_pending {
                return (weights, status);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no end phase within {limit:?}; weights {weights:?}; status {status:#?}\n{}",
                self.controller.logs()
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn event_reasons(&self) -> Vec<(String, String)> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }
}
