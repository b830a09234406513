//! The controller's memory of copies newer than its store:
//! - its own status writes: a reconcile that starts before the watch has delivered the
//!   controller's last write waits for it instead of deciding (and acting, and announcing) a
//!   second time;
//! - a copy read back after a write was refused as stale. After an etcd restore (or a crash of
//!   an etcd that had not synced) the watch can resume past the history it missed, and the store
//!   keeps an old copy that no event will replace: every write made from it is refused. The copy
//!   read then stands in for the store's until the store's copy changes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use parking_lot::Mutex;

use crate::api::Canary;

/// How long a written version is waited for. A relist after a 410 (or an etcd restore)
/// delivers only the newest copy, which may never carry exactly that version.
const PATIENCE: Duration = Duration::from_secs(10);

/// The resourceVersion of the controller's own last status write of each canary, by
/// `namespace/name`, and when it was made. Versions are opaque: only equality is asked.
#[derive(Default)]
pub struct Written {
    own: Mutex<HashMap<String, (String, Instant)>>,
    /// By key: the store's version that was found stale, and the copy read instead.
    fresher: Mutex<HashMap<String, (String, Canary)>>,
}

fn key(canary: &Canary) -> String {
    format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    )
}

impl Written {
    /// Whether this copy predates the controller's own last write of it: the write has not
    /// come back through the watch yet. Seeing it (or running out of patience) ends the wait.
    pub fn is_stale(&self, canary: &Canary) -> bool {
        let mut written = self.own.lock();
        let key = key(canary);
        let Some((version, at)) = written.get(&key) else {
            return false;
        };
        let waiting =
            canary.resource_version().as_ref() != Some(version) && at.elapsed() < PATIENCE;
        if !waiting {
            written.remove(&key);
        }
        waiting
    }

    /// Forgets the canary `namespace/name`.
    pub fn forget(&self, key: &str) {
        self.own.lock().remove(key);
        self.fresher.lock().remove(key);
    }

    /// Remembers the version the controller's own write produced (and the copy, where it
    /// stands in for a stale store's).
    pub(super) fn record(&self, canary: &Canary) {
        if let Some(version) = canary.resource_version() {
            self.own
                .lock()
                .insert(key(canary), (version, Instant::now()));
        }
        if let Some((_, copy)) = self.fresher.lock().get_mut(&key(canary)) {
            *copy = canary.clone();
        }
    }

    /// The store's `stale` copy was refused; `fresh` was read from the API server instead.
    pub(super) fn supersede(&self, stale: &Canary, fresh: Canary) {
        if let Some(version) = stale.resource_version() {
            self.fresher.lock().insert(key(stale), (version, fresh));
        }
    }

    /// The copy to reconcile instead of the store's, while the store still holds the version
    /// found stale; once the store's copy changes, the store is trusted again.
    pub fn fresher(&self, store: &Canary) -> Option<Canary> {
        let mut fresher = self.fresher.lock();
        let key = key(store);
        let (stale, copy) = fresher.get(&key)?;
        if store.resource_version().as_ref() == Some(stale) {
            return Some(copy.clone());
        }
        fresher.remove(&key);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(version: &str) -> Canary {
        let mut canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "aviary.dev/v1beta1", "kind": "Canary",
            "metadata": { "name": "a", "namespace": "ns" },
            "spec": { "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "a" }, "service": { "port": 80 }, "analysis": { "interval": "1m", "threshold": 1, "maxWeight": 50, "stepWeight": 10 } }
        }))
        .unwrap();
        canary.metadata.resource_version = Some(version.to_string());
        canary
    }

    #[test]
    fn versions_are_compared_for_equality_only() {
        let written = Written::default();
        written.record(&copy("900"));
        // After an etcd restore versions may go down: "1000" is not newer than "900".
        assert!(written.is_stale(&copy("1000")));
        assert!(written.is_stale(&copy("12")));
        assert!(!written.is_stale(&copy("900")), "its own write came back");
        assert!(
            !written.is_stale(&copy("12")),
            "and after it, any copy is current"
        );
    }
}
