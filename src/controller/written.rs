//! The controller's memory of its own status writes: a reconcile that starts before the watch
//! has delivered the controller's last write waits for it instead of deciding (and acting, and
//! announcing) a second time.

use std::collections::HashMap;

use kube::ResourceExt;
use parking_lot::Mutex;

use crate::api::Canary;

/// resourceVersions of the controller's own last status writes, by `namespace/name`.
#[derive(Default)]
pub struct Written(Mutex<HashMap<String, u64>>);

fn key(canary: &Canary) -> String {
    format!(
        "{}/{}",
        canary.namespace().unwrap_or_default(),
        canary.name_any()
    )
}

fn version(canary: &Canary) -> Option<u64> {
    canary.resource_version()?.parse().ok()
}

impl Written {
    /// The copy is older than the controller's own last write of it.
    pub fn is_stale(&self, canary: &Canary) -> bool {
        let written = self.0.lock();
        match (version(canary), written.get(&key(canary))) {
            (Some(seen), Some(last)) => seen < *last,
            _ => false,
        }
    }

    pub fn forget(&self, canary: &Canary) {
        self.0.lock().remove(&key(canary));
    }

    /// Remembers the version the controller's own write produced.
    pub(super) fn record(&self, canary: &Canary) {
        if let Some(version) = version(canary) {
            self.0.lock().insert(key(canary), version);
        }
    }
}
