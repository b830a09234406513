//! Kubernetes Events about Canaries (events.k8s.io/v1), written directly, repeats counted and
//! floods cut as client-go's recorder does ([`super::event_limits`]).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

use crate::api::{AlertSeverity, Canary, Reason};

use super::event_limits::{fit_note, Correlator, Verdict};

/// Writes Events as `aviary`, from one instance.
#[derive(Clone)]
pub struct EventWriter {
    client: Client,
    instance: String,
    correlator: std::sync::Arc<parking_lot::Mutex<Correlator>>,
}

impl EventWriter {
    pub fn new(client: Client, instance: String) -> Self {
        EventWriter {
            client,
            instance,
            correlator: Default::default(),
        }
    }

    /// Forgets the repeats and flood budget of a deleted object.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.correlator.lock().forget(namespace, name);
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
        let note = fit_note(message);
        // As kubectl shows them: the object's name and a unique suffix.
        let event_name = format!(
            "{}.{:x}{:04x}",
            name,
            Timestamp::now().as_nanosecond(),
            rand::random::<u16>()
        );
        let subject = (namespace.clone(), name.clone(), reason.as_str().to_string());
        let verdict =
            self.correlator
                .lock()
                .judge(subject, &note, &event_name, std::time::Instant::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match verdict {
            Verdict::Create => {}
            Verdict::Drop => {
                tracing::debug!(object = %name, %reason, "event over its allowance; not recorded");
                return;
            }
            Verdict::Repeat { name: first, count } => {
                let series = serde_json::json!({ "series": {
                    "count": count, "lastObservedTime": MicroTime(Timestamp::now()) } });
                let (params, patch) = (PatchParams::default(), Patch::Merge(&series));
                if let Err(error) = api.patch(&first, &params, &patch).await {
                    tracing::debug!(%error, object = %name, %reason, "cannot count a repeated event");
                }
                return;
            }
        }
        let event = Event {
            metadata: ObjectMeta {
                name: Some(event_name),
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
            note: Some(note),
            action: Some("Reconcile".to_string()),
            reporting_controller: Some("aviary.dev/controller".to_string()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(regarding),
            ..Event::default()
        };
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(%error, object = %name, %reason, "cannot record event");
        }
    }
}
