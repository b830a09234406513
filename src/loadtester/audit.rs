//! Who changed a gate: a Kubernetes Event on the Canary when the loadtester runs in a cluster,
//! the log otherwise (and always).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};

use crate::api::{Canary, Reason};

#[derive(Clone, Default)]
pub struct Audit {
    /// Events are written with this client; `None`: log only.
    pub client: Option<Client>,
}

impl Audit {
    pub async fn record(&self, namespace: &str, name: &str, reason: Reason, note: &str) {
        tracing::info!(canary = %name, %namespace, %reason, "{note}");
        let Some(client) = &self.client else {
            return;
        };
        let canaries: Api<Canary> = Api::namespaced(client.clone(), namespace);
        // The Canary's own reference (with its uid) when it can be read, so `kubectl describe`
        // lists the Event; a bare reference otherwise.
        let regarding = match canaries.get_opt(name).await {
            Ok(Some(canary)) => canary.object_ref(&()),
            _ => ObjectReference {
                api_version: Some(Canary::api_version(&()).to_string()),
                kind: Some("Canary".into()),
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectReference::default()
            },
        };
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{name}.{:x}{:04x}",
                    now.as_nanosecond(),
                    rand::random::<u16>()
                )),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some("Normal".into()),
            reason: Some(reason.as_str().into()),
            note: Some(note.chars().take(1000).collect()),
            action: Some("Gate".into()),
            reporting_controller: Some("aviary.dev/loadtester".into()),
            reporting_instance: Some(format!("aviary-loadtester-{}", std::process::id())),
            regarding: Some(regarding),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), namespace);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(%error, canary = %name, "cannot record the change as an Event");
        }
    }
}
