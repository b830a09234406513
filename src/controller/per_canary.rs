//! Everything the controller keeps per canary outside the watch's store, and the one place
//! that forgets it. A canary can go three ways, and each must forget it, or thousands of
//! canaries coming and going grow the controller for good:
//! - its Delete arrives through the watch;
//! - it is deleted while the watch is down, so no Delete ever comes: the relist after the
//!   restart (`Init` … `InitDone`) lacks it;
//! - a reconcile that was still running when the Delete came records it again afterwards.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use parking_lot::Mutex;

use super::backoff::Failures;
use super::deferred::Deferred;
use super::events::EventWriter;
use super::signals::ControllerMetrics;
use super::written::Written;
use crate::api::Canary;
use crate::engine::{HookOutcome, MetricOutcome};

/// Who a canary is, by every key its kept state is filed under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub namespace: String,
    pub name: String,
    /// Flagger's series are kept by the target (its `workload` label).
    pub target: String,
}

impl Identity {
    pub fn of(canary: &Canary) -> Identity {
        Identity {
            namespace: canary.namespace().unwrap_or_default(),
            name: canary.name_any(),
            target: canary.spec.target_ref.name.clone(),
        }
    }

    /// The `namespace/name` key of the resumed set, the failures and the written versions.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn reference(&self) -> ObjectRef<Canary> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

/// What a watch event shows to be gone.
#[derive(Debug, PartialEq, Eq)]
enum Left {
    /// The canary itself.
    Canary(Identity),
    /// Only the series of the target the canary no longer names.
    Target(Identity),
}

/// Which canaries exist as far as the watch knows, and which a relist in progress has seen.
#[derive(Default)]
struct Known {
    live: HashMap<ObjectRef<Canary>, Identity>,
    relisted: Option<HashSet<ObjectRef<Canary>>>,
}

/// The per-canary state of the controller.
pub struct PerCanary {
    pub metrics: Arc<ControllerMetrics>,
    pub written: Arc<Written>,
    /// Canaries whose routes were read back from the mesh since this process started.
    pub resumed: Arc<Mutex<HashSet<String>>>,
    /// Reconcile failures in a row, by canary, for the error backoff.
    pub failures: Arc<Failures>,
    pub events: EventWriter,
    pub deferred_hooks: Arc<Deferred<Vec<HookOutcome>>>,
    pub deferred_metrics: Arc<Deferred<Vec<MetricOutcome>>>,
    known: Mutex<Known>,
}

impl PerCanary {
    pub fn new(
        metrics: Arc<ControllerMetrics>,
        events: EventWriter,
        wake: super::deferred::Wake,
    ) -> PerCanary {
        PerCanary {
            metrics,
            written: Arc::default(),
            resumed: Arc::default(),
            failures: Arc::default(),
            events,
            deferred_hooks: Arc::new(Deferred::new(wake.clone())),
            deferred_metrics: Arc::new(Deferred::new(wake)),
            known: Mutex::default(),
        }
    }

    /// Follows the canary watch: a Delete, or a relist that lacks a canary, forgets it.
    pub fn observe(&self, event: &watcher::Event<Canary>) {
        let left = self.known.lock().follow(event);
        for left in left {
            match left {
                Left::Canary(who) => self.forget(&who),
                Left::Target(who) => self.metrics.forget_target(&who.target, &who.namespace),
            }
        }
    }

    /// After a reconcile of `canary`: one that is no longer in `store` was deleted while it
    /// ran, and whatever the reconcile recorded since the Delete goes now. (The store takes a
    /// Delete before the watch's forget runs, so either that forget or this one comes last.)
    pub fn reconciled(&self, canary: &Canary, store: &Store<Canary>) {
        if store.get(&ObjectRef::from_obj(canary)).is_none() {
            self.forget(&Identity::of(canary));
        }
    }

    pub fn forget(&self, who: &Identity) {
        let key = who.key();
        self.metrics.forget(who);
        self.written.forget(&key);
        self.resumed.lock().remove(&key);
        self.failures.succeeded(&key);
        self.events.forget(&who.namespace, &who.name);
        self.deferred_hooks.forget(&who.reference());
        self.deferred_metrics.forget(&who.reference());
    }
}

impl Known {
    /// Applies one watch event; returns what it shows to be gone.
    fn follow(&mut self, event: &watcher::Event<Canary>) -> Vec<Left> {
        match event {
            watcher::Event::Init => {
                self.relisted = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(canary) => {
                let reference = ObjectRef::from_obj(canary);
                if let Some(relisted) = self.relisted.as_mut() {
                    relisted.insert(reference.clone());
                }
                self.apply(reference, Identity::of(canary))
            }
            watcher::Event::Apply(canary) => {
                self.apply(ObjectRef::from_obj(canary), Identity::of(canary))
            }
            watcher::Event::Delete(canary) => {
                self.live.remove(&ObjectRef::from_obj(canary));
                vec![Left::Canary(Identity::of(canary))]
            }
            watcher::Event::InitDone => {
                let Some(relisted) = self.relisted.take() else {
                    return Vec::new();
                };
                let gone: Vec<ObjectRef<Canary>> = (self.live.keys())
                    .filter(|reference| !relisted.contains(*reference))
                    .cloned()
                    .collect();
                let gone = gone.iter().filter_map(|r| self.live.remove(r));
                gone.map(Left::Canary).collect()
            }
        }
    }

    /// A canary seen; one whose target changed leaves the old target's series behind.
    fn apply(&mut self, reference: ObjectRef<Canary>, who: Identity) -> Vec<Left> {
        match self.live.insert(reference, who.clone()) {
            Some(before) if before.target != who.target => vec![Left::Target(before)],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(name: &str, target: &str) -> Canary {
        let mut canary: Canary = serde_json::from_value(serde_json::json!({
            "apiVersion": "aviary.dev/v1beta1", "kind": "Canary",
            "metadata": { "name": name, "namespace": "test" },
            "spec": { "targetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": target },
                      "service": { "port": 80 } }
        }))
        .unwrap();
        canary.metadata.resource_version = Some("1".into());
        canary
    }

    fn names(gone: Vec<Left>) -> Vec<String> {
        let name = |left| match left {
            Left::Canary(who) => who.name,
            Left::Target(who) => format!("target of {}", who.name),
        };
        let mut names: Vec<String> = gone.into_iter().map(name).collect();
        names.sort();
        names
    }

    #[test]
    fn a_relist_shows_the_canaries_deleted_while_the_watch_was_down() {
        let mut known = Known::default();
        for name in ["kept", "gone", "also-gone"] {
            known.follow(&watcher::Event::Apply(canary(name, name)));
        }
        assert!(known.follow(&watcher::Event::Init).is_empty());
        let relisted = watcher::Event::InitApply(canary("kept", "kept"));
        assert!(known.follow(&relisted).is_empty());
        let gone = known.follow(&watcher::Event::InitDone);
        assert_eq!(names(gone), ["also-gone", "gone"]);
        assert_eq!(known.live.len(), 1);
        // A second relist with everything present forgets nothing.
        known.follow(&watcher::Event::Init);
        known.follow(&relisted);
        assert!(known.follow(&watcher::Event::InitDone).is_empty());
    }

    #[test]
    fn a_delete_and_a_changed_target_each_forget_what_they_leave() {
        let mut known = Known::default();
        known.follow(&watcher::Event::Apply(canary("web", "web-v1")));
        let moved = known.follow(&watcher::Event::Apply(canary("web", "web-v2")));
        assert_eq!(
            moved,
            vec![Left::Target(Identity::of(&canary("web", "web-v1")))]
        );
        let deleted = known.follow(&watcher::Event::Delete(canary("web", "web-v2")));
        assert_eq!(
            deleted,
            vec![Left::Canary(Identity::of(&canary("web", "web-v2")))]
        );
        assert!(known.live.is_empty());
    }
}
