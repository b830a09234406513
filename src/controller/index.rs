//! Which canaries does a changed object concern? Answered by key from an index that the canary
//! and Deployment watches keep current, instead of scanning every canary on every event: at
//! thousands of canaries a ConfigMap change costs a few map lookups, not a pass over the store.
//!
//! The index holds, per canary, the names it relates to, and per Deployment or DaemonSet the
//! ConfigMaps and Secrets its pod template uses; reverse maps answer the questions. A relist (the
//! watch's `Init` … `InitDone`) replaces the entries of its kind, so objects deleted while the
//! watch was down do not linger.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use parking_lot::RwLock;

use super::configs::{referenced, ConfigKind};
use crate::api::Canary;
use crate::naming;
use crate::plan::TargetKind;

type Namespace = String;
type Name = String;

/// What one canary relates to, within its namespace unless a template says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct CanaryRelations {
    /// The target workload and its `-primary` copy.
    workloads: BTreeSet<Name>,
    /// MetricTemplates its metrics refer to, as (namespace, name).
    templates: BTreeSet<(Namespace, Name)>,
}

impl CanaryRelations {
    fn of(canary: &Canary, namespace: &str) -> Self {
        let target = &canary.spec.target_ref.name;
        let templates = canary
            .spec
            .analysis
            .iter()
            .flat_map(|a| a.metrics.iter())
            .filter_map(|m| m.template_ref.as_ref())
            .map(|r| {
                let at = r.namespace.clone().unwrap_or_else(|| namespace.to_string());
                (at, r.name.clone())
            })
            .collect();
        CanaryRelations {
            workloads: [target.clone(), naming::primary(target)].into(),
            templates,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    canaries: HashMap<(Namespace, Name), CanaryRelations>,
    /// The ConfigMaps and Secrets each workload's pod template uses.
    workloads: HashMap<WorkloadKey, BTreeSet<(ConfigKind, Name)>>,
    // Reverse maps, kept in step with the two above.
    by_workload: HashMap<(Namespace, Name), BTreeSet<Name>>,
    by_template: HashMap<(Namespace, Name), BTreeSet<(Namespace, Name)>>,
    by_namespace: HashMap<Namespace, BTreeSet<Name>>,
    /// Workloads by name: a Deployment and a DaemonSet of one name wake the same canaries.
    config_users: HashMap<(Namespace, ConfigKind, Name), BTreeSet<Name>>,
    canary_relist: Relist<(Namespace, Name)>,
    /// One relist per watched workload kind.
    workload_relists: BTreeMap<TargetKind, Relist<WorkloadKey>>,
}

/// A workload by kind, namespace and name.
type WorkloadKey = (TargetKind, Namespace, Name);

/// The keys a relist has listed so far; `None` outside a relist.
#[derive(Debug)]
struct Relist<K>(Option<BTreeSet<K>>);

impl<K> Default for Relist<K> {
    fn default() -> Self {
        Relist(None)
    }
}

impl<K: Ord + Clone> Relist<K> {
    fn begin(&mut self) {
        self.0 = Some(BTreeSet::new());
    }

    fn listed(&mut self, key: &K) {
        if let Some(seen) = self.0.as_mut() {
            seen.insert(key.clone());
        }
    }

    /// Ends the relist: the keys of `known` it did not list (deleted while the watch was down)
    /// among those `mine` says belong to this watch.
    fn unlisted<V>(&mut self, known: &HashMap<K, V>, mine: impl Fn(&K) -> bool) -> Vec<K> {
        let seen = self.0.take().unwrap_or_default();
        known
            .keys()
            .filter(|k| mine(k) && !seen.contains(*k))
            .cloned()
            .collect()
    }
}

/// What the index reads of a workload of either kind.
pub trait PodOwner: kube::Resource {
    fn pod_template(&self) -> Option<&PodTemplateSpec>;
}

impl PodOwner for Deployment {
    fn pod_template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

impl PodOwner for DaemonSet {
    fn pod_template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
}

fn unlink<K: Ord + std::hash::Hash + Eq, V: Ord>(
    map: &mut HashMap<K, BTreeSet<V>>,
    key: K,
    value: &V,
) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

impl Inner {
    fn relist(&mut self, kind: TargetKind) -> &mut Relist<WorkloadKey> {
        self.workload_relists.entry(kind).or_default()
    }

    fn remove_canary(&mut self, key: &(Namespace, Name)) {
        let Some(old) = self.canaries.remove(key) else {
            return;
        };
        let (namespace, name) = key;
        for workload in &old.workloads {
            unlink(
                &mut self.by_workload,
                (namespace.clone(), workload.clone()),
                name,
            );
        }
        for template in old.templates {
            unlink(&mut self.by_template, template, key);
        }
        unlink(&mut self.by_namespace, namespace.clone(), name);
    }

    fn put_canary(&mut self, key: (Namespace, Name), relations: CanaryRelations) {
        self.remove_canary(&key);
        let (namespace, name) = &key;
        for workload in &relations.workloads {
            let at = (namespace.clone(), workload.clone());
            self.by_workload.entry(at).or_default().insert(name.clone());
        }
        for template in &relations.templates {
            self.by_template
                .entry(template.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_namespace
            .entry(namespace.clone())
            .or_default()
            .insert(name.clone());
        self.canaries.insert(key, relations);
    }

    fn remove_workload(&mut self, key: &WorkloadKey) {
        let Some(old) = self.workloads.remove(key) else {
            return;
        };
        let (_, namespace, name) = key;
        for (kind, config) in old {
            unlink(
                &mut self.config_users,
                (namespace.clone(), kind, config),
                name,
            );
        }
    }

    fn put_workload(&mut self, key: WorkloadKey, configs: BTreeSet<(ConfigKind, Name)>) {
        self.remove_workload(&key);
        let (_, namespace, name) = &key;
        for (kind, config) in &configs {
            let at = (namespace.clone(), *kind, config.clone());
            self.config_users
                .entry(at)
                .or_default()
                .insert(name.clone());
        }
        self.workloads.insert(key, configs);
    }
}

/// The index; cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct RelationIndex {
    inner: RwLock<Inner>,
}

fn key_of<K: kube::Resource>(object: &K) -> (Namespace, Name) {
    (object.namespace().unwrap_or_default(), object.name_any())
}

fn canary_ref(namespace: &str, name: &str) -> ObjectRef<Canary> {
    ObjectRef::new(name).within(namespace)
}

impl RelationIndex {
    /// Applies one event of the canary watch.
    pub fn observe_canary(&self, event: &watcher::Event<Canary>) {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        match event {
            watcher::Event::Init => inner.canary_relist.begin(),
            watcher::Event::InitApply(canary) | watcher::Event::Apply(canary) => {
                let key = key_of(canary);
                inner.canary_relist.listed(&key);
                let relations = CanaryRelations::of(canary, &key.0);
                inner.put_canary(key, relations);
            }
            watcher::Event::Delete(canary) => inner.remove_canary(&key_of(canary)),
            watcher::Event::InitDone => {
                for key in inner.canary_relist.unlisted(&inner.canaries, |_| true) {
                    inner.remove_canary(&key);
                }
            }
        }
    }

    /// Applies one event of the Deployment or DaemonSet watch.
    pub fn observe_workload<K: PodOwner>(&self, kind: TargetKind, event: &watcher::Event<K>) {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let key = |object: &K| {
            let (namespace, name) = key_of(object);
            (kind, namespace, name)
        };
        match event {
            watcher::Event::Init => inner.relist(kind).begin(),
            watcher::Event::InitApply(object) | watcher::Event::Apply(object) => {
                let key = key(object);
                inner.relist(kind).listed(&key);
                let configs = object.pod_template().map(referenced).unwrap_or_default();
                inner.put_workload(key, configs);
            }
            watcher::Event::Delete(object) => inner.remove_workload(&key(object)),
            watcher::Event::InitDone => {
                let known = &inner.workloads;
                let relist = inner.workload_relists.entry(kind).or_default();
                for key in relist.unlisted(known, |(k, _, _)| *k == kind) {
                    inner.remove_workload(&key);
                }
            }
        }
    }

    /// Canaries whose target (or its `-primary` copy) is this Deployment.
    pub fn for_workload(&self, namespace: &str, name: &str) -> Vec<ObjectRef<Canary>> {
        let inner = self.inner.read();
        let key = (namespace.to_string(), name.to_string());
        inner
            .by_workload
            .get(&key)
            .into_iter()
            .flatten()
            .map(|c| canary_ref(namespace, c))
            .collect()
    }

    /// Canaries whose target's pod template uses this ConfigMap or Secret.
    pub fn for_config(
        &self,
        namespace: &str,
        kind: ConfigKind,
        name: &str,
    ) -> Vec<ObjectRef<Canary>> {
        let inner = self.inner.read();
        let key = (namespace.to_string(), kind, name.to_string());
        let mut found = BTreeSet::new();
        for workload in inner.config_users.get(&key).into_iter().flatten() {
            let at = (namespace.to_string(), workload.clone());
            found.extend(inner.by_workload.get(&at).into_iter().flatten().cloned());
        }
        found.iter().map(|c| canary_ref(namespace, c)).collect()
    }

    /// Canaries whose metrics refer to this MetricTemplate.
    pub fn for_template(&self, namespace: &str, name: &str) -> Vec<ObjectRef<Canary>> {
        let inner = self.inner.read();
        let key = (namespace.to_string(), name.to_string());
        inner
            .by_template
            .get(&key)
            .into_iter()
            .flatten()
            .map(|(ns, c)| canary_ref(ns, c))
            .collect()
    }

    /// Every canary of a namespace (a mesh policy may concern any of them).
    pub fn in_namespace(&self, namespace: &str) -> Vec<ObjectRef<Canary>> {
        let inner = self.inner.read();
        inner
            .by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|c| canary_ref(namespace, c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary(namespace: &str, name: &str, target: &str, template: Option<&str>) -> Canary {
        let metrics = match template {
            Some(t) => json!([{ "name": "m", "templateRef": { "name": t } }]),
            None => json!([]),
        };
        serde_json::from_value(json!({
            "apiVersion": "aviary.dev/v1beta1", "kind": "Canary",
            "metadata": { "name": name, "namespace": namespace },
            "spec": { "targetRef": { "kind": "Deployment", "name": target },
                      "service": { "port": 80 }, "analysis": { "metrics": metrics } }
        }))
        .unwrap()
    }

    fn deployment(namespace: &str, name: &str, config_map: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": namespace },
            "spec": { "selector": {}, "template": { "spec": {
                "containers": [{ "name": "app", "envFrom": [{ "configMapRef": { "name": config_map } }] }]
            } } }
        }))
        .unwrap()
    }

    fn names(refs: Vec<ObjectRef<Canary>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn each_question_is_answered_by_key_and_follows_changes() {
        let index = RelationIndex::default();
        index.observe_canary(&watcher::Event::Apply(canary(
            "a",
            "web",
            "web",
            Some("latency"),
        )));
        index.observe_canary(&watcher::Event::Apply(canary("b", "web", "web", None)));
        index.observe_workload(
            TargetKind::Deployment,
            &watcher::Event::Apply(deployment("a", "web", "settings")),
        );

        assert_eq!(names(index.for_workload("a", "web")), ["web"]);
        assert_eq!(names(index.for_workload("a", "web-primary")), ["web"]);
        assert_eq!(
            names(index.for_config("a", ConfigKind::ConfigMap, "settings")),
            ["web"]
        );
        assert!(index
            .for_config("b", ConfigKind::ConfigMap, "settings")
            .is_empty());
        assert_eq!(names(index.for_template("a", "latency")), ["web"]);
        assert_eq!(names(index.in_namespace("b")), ["web"]);

        // The canary moves to another target; the Deployment stops using the ConfigMap.
        index.observe_canary(&watcher::Event::Apply(canary("a", "web", "api", None)));
        index.observe_workload(
            TargetKind::Deployment,
            &watcher::Event::Apply(deployment("a", "api", "other")),
        );
        assert!(index.for_workload("a", "web").is_empty());
        assert!(index.for_template("a", "latency").is_empty());
        assert_eq!(
            names(index.for_config("a", ConfigKind::ConfigMap, "other")),
            ["web"]
        );

        index.observe_canary(&watcher::Event::Delete(canary("a", "web", "api", None)));
        assert!(index.for_workload("a", "api").is_empty());
        assert!(index.in_namespace("a").is_empty());
    }

    #[test]
    fn a_relist_forgets_what_was_deleted_while_the_watch_was_down() {
        let index = RelationIndex::default();
        index.observe_canary(&watcher::Event::Apply(canary("a", "gone", "gone", None)));
        index.observe_canary(&watcher::Event::Apply(canary("a", "kept", "kept", None)));
        index.observe_canary(&watcher::Event::Init);
        index.observe_canary(&watcher::Event::InitApply(canary(
            "a", "kept", "kept", None,
        )));
        // Until the relist is done, what was known still answers.
        assert_eq!(names(index.for_workload("a", "gone")), ["gone"]);
        index.observe_canary(&watcher::Event::InitDone);
        assert!(index.for_workload("a", "gone").is_empty());
        assert_eq!(names(index.in_namespace("a")), ["kept"]);
    }

    #[test]
    fn a_daemon_set_relist_forgets_only_daemon_sets() {
        let index = RelationIndex::default();
        let daemon_set = |name: &str, config_map: &str| -> DaemonSet {
            let mut d = serde_json::to_value(deployment("a", name, config_map)).unwrap();
            d["kind"] = json!("DaemonSet");
            serde_json::from_value(d).unwrap()
        };
        index.observe_canary(&watcher::Event::Apply(canary("a", "web", "web", None)));
        index.observe_canary(&watcher::Event::Apply(canary("a", "agent", "agent", None)));
        let (web, agent) = (
            deployment("a", "web", "web-settings"),
            daemon_set("agent", "agent-settings"),
        );
        index.observe_workload(TargetKind::Deployment, &watcher::Event::Apply(web));
        index.observe_workload(TargetKind::DaemonSet, &watcher::Event::Apply(agent));
        let users = |map: &str| names(index.for_config("a", ConfigKind::ConfigMap, map));
        assert_eq!(users("agent-settings"), ["agent"]);
        // The DaemonSet is deleted while its watch is down; the Deployment is not its to forget.
        index.observe_workload::<DaemonSet>(TargetKind::DaemonSet, &watcher::Event::Init);
        index.observe_workload::<DaemonSet>(TargetKind::DaemonSet, &watcher::Event::InitDone);
        assert!(users("agent-settings").is_empty());
        assert_eq!(users("web-settings"), ["web"]);
    }
}
