//! Kubernetes Events about Canaries (events.k8s.io/v1), written directly. Every rollout decision
//! has its own message, so a client-side dedup cache would only grow: none is kept.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

use crate::api::{AlertSeverity, Canary, Reason};

/// Writes Events as `aviary`, from one instance.
#[derive(Clone)]
pub struct EventWriter {
    client: Client,
    instance: String,
}

impl EventWriter {
    pub fn new(client: Client, instance: String) -> Self {
        EventWriter { client, instance }
    }

    /// Records an Event on `canary`; a failure is logged, never fatal to the rollout.
    pub async fn publish(
        &self,
        canary: &Canary,
        severity: AlertSeverity,
        reason: Reason,
        message: &str,
    ) {
        self.publish_regarding(canary.object_ref(&()), severity, reason, message)
            .await;
    }

    /// Records an Event on the object `regarding` names (one that may not even decode).
    pub async fn publish_regarding(
        &self,
        regarding: ObjectReference,
        severity: AlertSeverity,
        reason: Reason,
        message: &str,
    ) {
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let name = regarding.name.clone().unwrap_or_default();
        let event = Event {
            metadata: ObjectMeta {
                // As kubectl shows them: the object's name and a unique suffix.
                name: Some(format!(
                    "{}.{:x}{:04x}",
                    name,
                    Timestamp::now().as_nanosecond(),
                    rand::random::<u16>()
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(Timestamp::now())),
            type_: Some(
                if severity == AlertSeverity::Info {
                    "Normal"
                } else {
                    "Warning"
                }
                .to_string(),
            ),
            reason: Some(reason.as_str().to_string()),
            note: Some(message.chars().take(1000).collect()),
            action: Some("Reconcile".to_string()),
            reporting_controller: Some("aviary.dev/controller".to_string()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(regarding),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(%error, object = %name, %reason, "cannot record event");
        }
    }

    /// Records every Event among `actions` (a blocked canary's decision has nothing else).
    pub async fn publish_all(&self, canary: &Canary, actions: &[crate::engine::Action]) {
        for action in actions {
            if let crate::engine::Action::Event(event) = action {
                tracing::warn!(canary = %canary.name_any(), reason = %event.reason, message = %event.message, "canary blocked");
                self.publish(canary, event.severity, event.reason, &event.message)
                    .await;
            }
        }
    }
}
