//! The tenant-written kinds (Canary, MetricTemplate) are watched as raw JSON and decoded one
//! object at a time. With a typed watch, one object this binary cannot read (an int32 stored
//! before the CRD bounded it, a type changed across a CRD upgrade) fails the whole list, and at
//! the next relist the controller goes blind to every canary. Here that object alone is left
//! out: it is reported by name (a warning, an Event and, on a Canary, `Ready=False` naming the
//! field) and every other object goes on. Unknown fields are not an error here (`aviary
//! validate` refuses them): a controller older than its CRD must keep working.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use futures::{Stream, TryStreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::events::EventWriter;
use crate::api::{AlertSeverity, Canary, CanarySpec, MetricTemplate, MetricTemplateSpec, Reason};

/// A kind decoded object by object.
pub trait Decoded:
    Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// Whether a bad object of this kind gets a `Ready=False` condition (it has a status).
    const HAS_STATUS: bool;
    /// Stands for an object that cannot be read, so that the store lets go of its last good
    /// copy: the name and namespace are all a store needs.
    fn hollow(metadata: ObjectMeta) -> Self;
}

impl Decoded for Canary {
    const HAS_STATUS: bool = true;
    fn hollow(metadata: ObjectMeta) -> Self {
        Canary {
            metadata,
            spec: CanarySpec::default(),
            status: None,
        }
    }
}

impl Decoded for MetricTemplate {
    const HAS_STATUS: bool = false;
    fn hollow(metadata: ObjectMeta) -> Self {
        MetricTemplate {
            metadata,
            spec: MetricTemplateSpec::default(),
        }
    }
}

/// Reports objects that cannot be decoded, once per resourceVersion (a relist does not repeat
/// the Event).
#[derive(Clone)]
pub struct Rejects {
    client: Client,
    events: EventWriter,
    reported: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl Rejects {
    pub fn new(client: Client, events: EventWriter) -> Self {
        Rejects {
            client,
            events,
            reported: Arc::default(),
        }
    }

    /// Whether this version of the object is reported for the first time.
    fn first_report(&self, object: &DynamicObject) -> bool {
        let key = (object.namespace().unwrap_or_default(), object.name_any());
        let version = object.resource_version().unwrap_or_default();
        let mut reported = self.reported.lock();
        reported.insert(key, version.clone()) != Some(version)
    }

    /// The object reads again: a later failure is news.
    fn forget(&self, object: &DynamicObject) {
        let key = (object.namespace().unwrap_or_default(), object.name_any());
        let mut reported = self.reported.lock();
        reported.remove(&key);
    }

    fn report<K: Decoded>(&self, object: &DynamicObject, problem: String) {
        let (namespace, name) = (object.namespace().unwrap_or_default(), object.name_any());
        tracing::warn!(kind = %K::kind(&()), %namespace, %name, %problem, "object cannot be read; left out");
        if !self.first_report(object) {
            return;
        }
        let reference = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            uid: object.uid(),
            ..ObjectReference::default()
        };
        let rejects = self.clone();
        let message = format!("{} cannot be read and is left out: {problem}", K::kind(&()));
        tokio::spawn(async move {
            let reason = Reason::InvalidSpec;
            rejects
                .events
                .publish_regarding(reference, AlertSeverity::Error, reason, &message)
                .await;
            if K::HAS_STATUS {
                rejects.mark_not_ready(&namespace, &name, &message).await;
            }
        });
    }

    /// `Ready=False` with the reason, written as a merge patch of the status alone (the object
    /// itself cannot be decoded, so no typed write is possible).
    async fn mark_not_ready(&self, namespace: &str, name: &str, message: &str) {
        let resource = ApiResource::erase::<Canary>(&());
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let now = jiff::Timestamp::now().to_string();
        let patch = json!({ "status": { "conditions": [{
            "type": "Ready", "status": "False", "reason": Reason::InvalidSpec.as_str(),
            "message": message, "lastUpdateTime": now, "lastTransitionTime": now,
        }] } });
        let params = PatchParams::default();
        if let Err(error) = api.patch_status(name, &params, &Patch::Merge(&patch)).await {
            tracing::warn!(%namespace, %name, %error, "cannot mark an unreadable canary");
        }
    }

    /// The typed object, or `None` after reporting why it cannot be read.
    fn decode<K: Decoded>(&self, object: DynamicObject) -> Option<K> {
        let value = match serde_json::to_value(&object) {
            Ok(value) => value,
            Err(error) => {
                self.report::<K>(&object, error.to_string());
                return None;
            }
        };
        match serde_path_to_error::deserialize::<_, K>(value) {
            Ok(typed) => {
                self.forget(&object);
                Some(typed)
            }
            Err(error) => {
                let problem = format!("{}: {}", error.path(), error.inner());
                self.report::<K>(&object, problem);
                None
            }
        }
    }

    /// One watch event, decoded; an object that cannot be read becomes its hollow stand-in's
    /// deletion, or is left out of an initial list.
    fn event<K: Decoded>(&self, event: watcher::Event<DynamicObject>) -> Option<watcher::Event<K>> {
        use watcher::Event;
        match event {
            Event::Init => Some(Event::Init),
            Event::InitDone => Some(Event::InitDone),
            Event::InitApply(object) => self.decode(object).map(Event::InitApply),
            Event::Apply(object) => {
                let metadata = object.metadata.clone();
                Some(match self.decode(object) {
                    Some(typed) => Event::Apply(typed),
                    None => Event::Delete(K::hollow(metadata)),
                })
            }
            Event::Delete(object) => {
                // Gone either way: nothing to report, only the store's copy to let go of.
                self.forget(&object);
                let metadata = object.metadata.clone();
                let typed = serde_json::to_value(&object)
                    .ok()
                    .and_then(|value| serde_json::from_value(value).ok());
                Some(Event::Delete(typed.unwrap_or_else(|| K::hollow(metadata))))
            }
        }
    }
}

/// The watch of `K` in `namespace` (or all), decoded object by object.
pub fn watch<K: Decoded>(
    client: &Client,
    namespace: Option<&str>,
    rejects: Rejects,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
    let resource = ApiResource::erase::<K>(&());
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    super::watch::relisting(api, watcher::Config::default().any_semantic())
        .try_filter_map(move |event| futures::future::ready(Ok(rejects.event::<K>(event))))
}
