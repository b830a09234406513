//! Mesh security that survives a rollout. The primary's pods carry `<value>-primary` in the
//! selector label, so a policy that selects the target's pods by that label silently stops
//! applying to the pods that serve production traffic. Each such policy gets a `-primary` copy
//! selecting the primary pods, rewritten whenever the original changes and owned by the Canary,
//! so it goes when the Canary goes.
//!
//! The copies are computed from watch-fed stores (pure functions below); the controller writes
//! only the ones that differ from what is stored.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::api::Reason;

use crate::naming::COPY_OF_LABEL;

/// How a policy kind says which pods it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// A label selector at this JSON pointer (`matchLabels` below it).
    Pods(&'static str),
    /// A reference to a Server (Linkerd's AuthorizationPolicy).
    Server,
}

/// A policy kind Aviary keeps `-primary` copies of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyKind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub selection: Selection,
}

/// A mesh whose policy kinds the controller watches and copies (`--policy-copies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyMesh {
    Istio,
    Linkerd,
    /// Neither: no policy kind is watched.
    None,
}

impl PolicyKind {
    pub fn mesh(&self) -> PolicyMesh {
        if self.group == "security.istio.io" {
            PolicyMesh::Istio
        } else {
            PolicyMesh::Linkerd
        }
    }

    pub fn resource(&self) -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk(self.group, self.version, self.kind))
    }
}

pub const ISTIO_AUTHORIZATION: PolicyKind = PolicyKind {
    group: "security.istio.io",
    version: "v1",
    kind: "AuthorizationPolicy",
    selection: Selection::Pods("/spec/selector"),
};
pub const ISTIO_PEER_AUTHENTICATION: PolicyKind = PolicyKind {
    group: "security.istio.io",
    version: "v1",
    kind: "PeerAuthentication",
    selection: Selection::Pods("/spec/selector"),
};
pub const LINKERD_SERVER: PolicyKind = PolicyKind {
    group: "policy.linkerd.io",
    version: "v1beta3",
    kind: "Server",
    selection: Selection::Pods("/spec/podSelector"),
};
pub const LINKERD_AUTHORIZATION: PolicyKind = PolicyKind {
    group: "policy.linkerd.io",
    version: "v1alpha1",
    kind: "AuthorizationPolicy",
    selection: Selection::Server,
};

/// Every kind copied; Servers come before the policies that point at them.
pub const POLICY_KINDS: [PolicyKind; 4] = [
    ISTIO_AUTHORIZATION,
    ISTIO_PEER_AUTHENTICATION,
    LINKERD_SERVER,
    LINKERD_AUTHORIZATION,
];

/// The pods a copy is for: the target's template labels and the selector label that the
/// primary's pods carry with `-primary` appended.
pub struct TargetPods<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub selector_label: &'a str,
    pub selector_value: &'a str,
}

fn match_labels(object: &DynamicObject, pointer: &str) -> Option<BTreeMap<String, String>> {
    let selector = object.data.pointer(pointer)?;
    serde_json::from_value(selector.get("matchLabels")?.clone()).ok()
}

/// Whether a selector that names the selector label matches the target's pods, so that it
/// misses the primary's. Selectors without that label (say `team: payments`) already match
/// both, and need no copy.
fn needs_copy(selector: &BTreeMap<String, String>, pods: &TargetPods<'_>) -> bool {
    selector.get(pods.selector_label).map(String::as_str) == Some(pods.selector_value)
        && selector
            .iter()
            .all(|(key, value)| pods.labels.get(key) == Some(value))
}

fn is_copy(object: &DynamicObject) -> bool {
    object.labels().contains_key(COPY_OF_LABEL)
}

/// The copy of `original` for the primary: same spec with `rewrite` applied, named
/// `<name>-primary`, labelled with its origin and owned by the Canary.
fn copy_of(
    kind: &PolicyKind,
    original: &DynamicObject,
    owner: &Value,
    rewrite: impl FnOnce(&mut Value),
) -> Value {
    let name = original.name_any();
    let mut spec = original.data["spec"].clone();
    rewrite(&mut spec);
    json!({
        "apiVersion": format!("{}/{}", kind.group, kind.version),
        "kind": kind.kind,
        "metadata": {
            "name": crate::naming::primary(&name),
            "namespace": original.namespace(),
            "labels": { COPY_OF_LABEL: name },
            "ownerReferences": [owner],
        },
        "spec": spec
    })
}

/// The copies `kind` needs for the target's pods, from every object of that kind in the
/// namespace. `servers` are the Servers being copied (for Linkerd's AuthorizationPolicy).
pub fn desired_copies(
    kind: &PolicyKind,
    objects: &[DynamicObject],
    pods: &TargetPods<'_>,
    servers: &[String],
    owner: &Value,
) -> Vec<Value> {
    let primary_value = crate::naming::primary(pods.selector_value);
    objects
        .iter()
        .filter(|o| !is_copy(o))
        .filter_map(|original| match kind.selection {
            Selection::Pods(pointer) => {
                let selector = match_labels(original, pointer)?;
                if !needs_copy(&selector, pods) {
                    return None;
                }
                let labels_pointer = format!("{}/matchLabels", pointer.trim_start_matches("/spec"));
                Some(copy_of(kind, original, owner, |spec| {
                    if let Some(labels) = spec.pointer_mut(&labels_pointer) {
                        labels[pods.selector_label] = json!(primary_value);
                    }
                }))
            }
            Selection::Server => {
                let target = &original.data["spec"]["targetRef"];
                let server = target["name"].as_str()?;
                if target["kind"] != "Server" || !servers.iter().any(|s| s == server) {
                    return None;
                }
                let renamed = crate::naming::primary(server);
                Some(copy_of(kind, original, owner, |spec| {
                    spec["targetRef"]["name"] = json!(renamed);
                }))
            }
        })
        .collect()
}

/// Whether every field of `desired` has the same value in `actual`, which may carry defaults
/// the API server added (lists must match element by element).
pub fn contains(actual: &Value, desired: &Value) -> bool {
    match (actual, desired) {
        (Value::Object(actual), Value::Object(desired)) => desired
            .iter()
            .all(|(key, value)| actual.get(key).is_some_and(|a| contains(a, value))),
        (Value::Array(actual), Value::Array(desired)) => {
            actual.len() == desired.len() && actual.iter().zip(desired).all(|(a, d)| contains(a, d))
        }
        _ => actual == desired,
    }
}

/// Copies owned by this canary whose original no longer asks for one.
pub fn stale_copies<'a>(
    objects: &'a [DynamicObject],
    owner_uid: &str,
    desired: &[Value],
) -> Vec<&'a DynamicObject> {
    objects
        .iter()
        .filter(|o| is_copy(o))
        .filter(|o| o.owner_references().iter().any(|r| r.uid == owner_uid))
        .filter(|o| {
            !desired
                .iter()
                .any(|d| d["metadata"]["name"] == json!(o.name_any()))
        })
        .collect()
}

/// The verdict of the `requireMTLS` preflight.
#[derive(Debug, Clone, PartialEq)]
pub struct MtlsVerdict {
    pub enforced: bool,
    pub reason: Reason,
    pub message: String,
}

/// Istio: the PeerAuthentication in force for the target's pods is the workload's own (a
/// selector matching its pods), else the namespace's (no selector). Only STRICT passes.
pub fn istio_mtls(
    namespace: &str,
    peer_authentications: &[DynamicObject],
    pods: &TargetPods<'_>,
) -> MtlsVerdict {
    let originals = peer_authentications.iter().filter(|o| !is_copy(o));
    let mut namespace_wide = None;
    let mut workload = None;
    for policy in originals {
        match match_labels(policy, "/spec/selector") {
            Some(selector) if !selector.is_empty() => {
                if selector.iter().all(|(k, v)| pods.labels.get(k) == Some(v)) {
                    workload = Some(policy);
                }
            }
            _ => namespace_wide = Some(policy),
        }
    }
    let Some(policy) = workload.or(namespace_wide) else {
        return MtlsVerdict {
            enforced: false,
            reason: Reason::MTLSNotStrict,
            message: format!("no PeerAuthentication applies to namespace {namespace}: Istio's default is PERMISSIVE; requireMTLS needs STRICT"),
        };
    };
    let mode = policy.data["spec"]["mtls"]["mode"]
        .as_str()
        .unwrap_or("UNSET");
    let scope = if workload.is_some() {
        "workload"
    } else {
        "namespace"
    };
    if mode == "STRICT" {
        MtlsVerdict {
            enforced: true,
            reason: Reason::MTLSStrict,
            message: format!(
                "PeerAuthentication {}/{} ({scope}) sets STRICT mTLS",
                namespace,
                policy.name_any()
            ),
        }
    } else {
        MtlsVerdict {
            enforced: false,
            reason: Reason::MTLSNotStrict,
            message: format!(
                "PeerAuthentication {}/{} ({scope}) sets mTLS mode {mode}; requireMTLS needs STRICT",
                namespace,
                policy.name_any()
            ),
        }
    }
}

/// Linkerd: pods are meshed when `linkerd.io/inject: enabled` is on the pod template, or on the
/// namespace and the template does not turn it off.
pub fn linkerd_meshed(
    namespace: &str,
    namespace_annotations: &BTreeMap<String, String>,
    template_annotations: &BTreeMap<String, String>,
) -> MtlsVerdict {
    const INJECT: &str = "linkerd.io/inject";
    let on_template = template_annotations.get(INJECT).map(String::as_str);
    let on_namespace = namespace_annotations.get(INJECT).map(String::as_str);
    let meshed = match on_template {
        Some("enabled") => true,
        Some("disabled") => false,
        _ => on_namespace == Some("enabled"),
    };
    if meshed {
        MtlsVerdict {
            enforced: true,
            reason: Reason::Meshed,
            message: format!("pods in {namespace} are injected with the Linkerd proxy ({INJECT}: enabled): mTLS is on"),
        }
    } else {
        MtlsVerdict {
            enforced: false,
            reason: Reason::NotMeshed,
            message: format!("neither namespace {namespace} nor the pod template sets {INJECT}: enabled; requireMTLS needs meshed pods"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &PolicyKind, name: &str, spec: Value) -> DynamicObject {
        let mut object = DynamicObject::new(name, &kind.resource()).within("production");
        object.data = json!({ "spec": spec });
        object
    }

    fn pods(labels: &BTreeMap<String, String>) -> TargetPods<'_> {
        TargetPods {
            labels,
            selector_label: "app",
            selector_value: "order-service",
        }
    }

    #[test]
    fn a_policy_on_the_target_label_gets_a_primary_copy_and_others_do_not() {
        let labels = BTreeMap::from([
            ("app".to_string(), "order-service".to_string()),
            ("team".to_string(), "orders".to_string()),
        ]);
        let rules = json!([{ "from": [{ "source": { "principals": ["cluster.local/ns/production/sa/api-gateway"] } }], "to": [{ "operation": { "methods": ["GET", "POST"] } }] }]);
        let objects = vec![
            object(
                &ISTIO_AUTHORIZATION,
                "orders-allow",
                json!({ "selector": { "matchLabels": { "app": "order-service" } }, "action": "ALLOW", "rules": rules }),
            ),
            object(
                &ISTIO_AUTHORIZATION,
                "team-wide",
                json!({ "selector": { "matchLabels": { "team": "orders" } } }),
            ),
            object(
                &ISTIO_AUTHORIZATION,
                "other-app",
                json!({ "selector": { "matchLabels": { "app": "billing" } } }),
            ),
        ];
        let owner = json!({ "uid": "u1" });
        let copies = desired_copies(&ISTIO_AUTHORIZATION, &objects, &pods(&labels), &[], &owner);
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0]["metadata"]["name"], json!("orders-allow-primary"));
        assert_eq!(
            copies[0]["spec"]["selector"]["matchLabels"]["app"],
            json!("order-service-primary")
        );
        assert_eq!(copies[0]["spec"]["rules"], rules);
        assert_eq!(
            copies[0]["metadata"]["labels"][COPY_OF_LABEL],
            json!("orders-allow")
        );
    }

    #[test]
    fn linkerd_authorization_follows_its_server() {
        let labels = BTreeMap::from([("app".to_string(), "order-service".to_string())]);
        let servers = vec![object(
            &LINKERD_SERVER,
            "orders-http",
            json!({ "podSelector": { "matchLabels": { "app": "order-service" } }, "port": "http" }),
        )];
        let owner = json!({ "uid": "u1" });
        let server_copies = desired_copies(&LINKERD_SERVER, &servers, &pods(&labels), &[], &owner);
        assert_eq!(
            server_copies[0]["spec"]["podSelector"]["matchLabels"]["app"],
            json!("order-service-primary")
        );
        let policies = vec![object(
            &LINKERD_AUTHORIZATION,
            "orders-authn",
            json!({ "targetRef": { "group": "policy.linkerd.io", "kind": "Server", "name": "orders-http" }, "requiredAuthenticationRefs": [] }),
        )];
        let copies = desired_copies(
            &LINKERD_AUTHORIZATION,
            &policies,
            &pods(&labels),
            &["orders-http".to_string()],
            &owner,
        );
        assert_eq!(
            copies[0]["spec"]["targetRef"]["name"],
            json!("orders-http-primary")
        );
    }

    #[test]
    fn mtls_verdicts() {
        let labels = BTreeMap::from([("app".to_string(), "order-service".to_string())]);
        let permissive = object(
            &ISTIO_PEER_AUTHENTICATION,
            "default",
            json!({ "mtls": { "mode": "PERMISSIVE" } }),
        );
        let verdict = istio_mtls("production", &[permissive], &pods(&labels));
        assert!(!verdict.enforced);
        assert!(verdict.message.contains("PERMISSIVE"));
        let strict = object(
            &ISTIO_PEER_AUTHENTICATION,
            "default",
            json!({ "mtls": { "mode": "STRICT" } }),
        );
        assert!(istio_mtls("production", std::slice::from_ref(&strict), &pods(&labels)).enforced);
        let workload_off = object(
            &ISTIO_PEER_AUTHENTICATION,
            "orders",
            json!({ "selector": { "matchLabels": { "app": "order-service" } }, "mtls": { "mode": "DISABLE" } }),
        );
        assert!(!istio_mtls("production", &[strict, workload_off], &pods(&labels)).enforced);
        let enabled = BTreeMap::from([("linkerd.io/inject".to_string(), "enabled".to_string())]);
        assert!(linkerd_meshed("production", &enabled, &BTreeMap::new()).enforced);
        assert!(!linkerd_meshed("production", &BTreeMap::new(), &BTreeMap::new()).enforced);
    }

    #[test]
    fn contains_ignores_server_defaults() {
        let actual = json!({ "a": 1, "b": { "c": 2, "d": 3 } });
        assert!(contains(&actual, &json!({ "b": { "c": 2 } })));
        assert!(!contains(&actual, &json!({ "b": { "c": 3 } })));
    }
}
