//! Secrets and ConfigMaps held only when a canary refers to them. The controller watches only
//! their metadata (names and versions, never values); the data of one is read, and kept
//! current, from the moment a canary's reconcile names it: a webhook's signing Secret, a
//! MetricTemplate's credentials, or a ConfigMap or Secret the target's pods use. So another
//! team's Secrets never sit in the controller's memory.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

/// A kind held only when referenced.
pub trait Held:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + DeserializeOwned
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// Stands for a deleted object, so that the store lets go of it.
    fn hollow(metadata: ObjectMeta) -> Self;
}

impl Held for Secret {
    fn hollow(metadata: ObjectMeta) -> Self {
        Secret {
            metadata,
            ..Secret::default()
        }
    }
}

impl Held for ConfigMap {
    fn hollow(metadata: ObjectMeta) -> Self {
        ConfigMap {
            metadata,
            ..ConfigMap::default()
        }
    }
}

/// The store of the referenced objects of one kind and what feeds it.
pub struct Referenced<K: Held> {
    client: Client,
    writer: Mutex<Writer<K>>,
    store: Store<K>,
    wanted: Mutex<HashSet<ObjectRef<K>>>,
}

impl<K: Held> Referenced<K> {
    pub fn new(client: Client) -> Self {
        let mut writer = Writer::default();
        // Ready at once, empty: objects come in as canaries name them.
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let store = writer.as_reader();
        Referenced {
            client,
            writer: Mutex::new(writer),
            store,
            wanted: Mutex::default(),
        }
    }

    /// What reconciles read.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Makes sure each of `refs` is held (read now the first time it is named); a missing
    /// object stays absent, as it would in a full cache.
    pub async fn ensure(&self, refs: impl IntoIterator<Item = ObjectRef<K>>) {
        for reference in refs {
            let first = self.wanted.lock().insert(reference.clone());
            if first {
                self.read(&reference).await;
            }
        }
    }

    async fn read(&self, reference: &ObjectRef<K>) {
        let namespace = reference.namespace.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        match api.get_opt(&reference.name).await {
            Ok(Some(object)) => self.put(watcher::Event::Apply(object)),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%namespace, name = %reference.name, %error, "cannot read a referenced object");
                // Read again when next named.
                self.wanted.lock().remove(reference);
            }
        }
    }

    fn put(&self, event: watcher::Event<K>) {
        self.writer.lock().apply_watcher_event(&event);
    }

    /// A metadata change seen by the watch: a held object is read again (or let go of).
    pub async fn changed(&self, event: &watcher::Event<PartialObjectMeta<K>>) {
        match event {
            watcher::Event::Apply(meta) | watcher::Event::InitApply(meta) => {
                let reference =
                    ObjectRef::new(&meta.name_any()).within(&meta.namespace().unwrap_or_default());
                let held = self.store.get(&reference);
                let current =
                    held.is_some_and(|held| held.resource_version() == meta.resource_version());
                if self.wanted.lock().contains(&reference) && !current {
                    self.read(&reference).await;
                }
            }
            watcher::Event::Delete(meta) => {
                // Not wanted until named again: a canary that still names it reads it when
                // the object comes back, and one that is gone no longer keeps it wanted.
                let reference =
                    ObjectRef::new(&meta.name_any()).within(&meta.namespace().unwrap_or_default());
                self.wanted.lock().remove(&reference);
                self.put(watcher::Event::Delete(K::hollow(meta.metadata.clone())));
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
}
