//! The controller's side of mesh security: watch the policy kinds the cluster has, write the
//! `-primary` copies [`policies`] computes, and run the `requireMTLS` preflight.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::reflector;
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::policies::{self, MtlsVerdict, PolicyKind, TargetPods};
use super::workload::Workload;
use super::{objects, Context};
use crate::api::{Canary, Reason};
use crate::metrics::prometheus::MeshTelemetry;
use crate::naming::{COPY_OF_LABEL, FIELD_MANAGER};

/// A policy kind the cluster serves and the watch-fed store of its objects.
pub struct WatchedPolicies {
    pub kind: PolicyKind,
    pub store: reflector::Store<DynamicObject>,
}

/// Whether the cluster serves `kind` (its CRD is installed); a kind that is absent is skipped,
/// so a cluster without Linkerd does not need its CRDs.
pub async fn served(client: &Client, kind: &PolicyKind, namespace: Option<&str>) -> bool {
    let resource = kind.resource();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(response)) if response.code == 404 => {
            tracing::info!(
                kind = kind.kind,
                group = kind.group,
                "policy kind not served; its -primary copies are off"
            );
            false
        }
        // Served but refused is a deployment mistake, not an absent mesh: say so loudly.
        Err(error) => {
            tracing::warn!(kind = kind.kind, group = kind.group, %error, "cannot list this policy kind (forbidden or failing); its -primary copies are off until a restart: grant list and watch on it (the chart's meshes values)");
            false
        }
    }
}

fn in_namespace(store: &reflector::Store<DynamicObject>, namespace: &str) -> Vec<DynamicObject> {
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .map(Arc::unwrap_or_clone)
        .collect()
}

fn template_labels(target: &Workload) -> BTreeMap<String, String> {
    target
        .template()
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default()
}

/// Writes the `-primary` copies the target's policies need and removes the ones no longer
/// needed. Reads only the stores; writes only what differs.
pub async fn sync_copies(
    canary: &Canary,
    ctx: &Context,
    target: &Workload,
) -> Result<(), kube::Error> {
    if ctx.policies.is_empty() {
        return Ok(());
    }
    let Ok((label, value)) = objects::selector_label(target) else {
        return Ok(());
    };
    let Ok(owner) = objects::owner_reference(canary) else {
        return Ok(());
    };
    let owner_uid = owner.uid.clone();
    let owner = serde_json::to_value(owner).unwrap_or(Value::Null);
    let namespace = canary.namespace().unwrap_or_default();
    let labels = template_labels(target);
    let pods = TargetPods {
        labels: &labels,
        selector_label: &label,
        selector_value: &value,
    };
    let mut copied_servers = Vec::new();
    for watched in &ctx.policies {
        let existing = in_namespace(&watched.store, &namespace);
        let desired =
            policies::desired_copies(&watched.kind, &existing, &pods, &copied_servers, &owner);
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &watched.kind.resource());
        for copy in &desired {
            let name = copy["metadata"]["name"].as_str().unwrap_or_default();
            let current = existing.iter().find(|o| o.name_any() == name);
            if current.is_some_and(|o| !o.labels().contains_key(COPY_OF_LABEL)) {
                // Someone else's object by that name: never overwrite it (or let garbage
                // collection take it with the Canary).
                tracing::warn!(canary = %canary.name_any(), kind = watched.kind.kind, name, "a policy named like the -primary copy exists and is not Aviary's; not copied");
                continue;
            }
            // Exact equality, so a field removed from the original is removed from the copy
            // (server-side apply prunes what Aviary set before).
            let up_to_date = current.is_some_and(|o| {
                o.data["spec"] == copy["spec"]
                    && o.labels().get(COPY_OF_LABEL).map(String::as_str)
                        == copy["metadata"]["labels"][COPY_OF_LABEL].as_str()
            });
            if !up_to_date {
                api.patch(
                    name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(copy),
                )
                .await?;
                tracing::info!(canary = %canary.name_any(), kind = watched.kind.kind, copy = name, "policy copied for the primary pods");
            }
        }
        for stale in policies::stale_copies(&existing, &owner_uid, &desired) {
            api.delete(&stale.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(ignore_not_found)?;
            tracing::info!(canary = %canary.name_any(), kind = watched.kind.kind, copy = %stale.name_any(), "policy copy removed: its original no longer selects the target");
        }
        if watched.kind == policies::LINKERD_SERVER {
            copied_servers = desired
                .iter()
                .filter_map(|c| c["metadata"]["labels"][COPY_OF_LABEL].as_str())
                .map(str::to_string)
                .collect();
        }
    }
    Ok(())
}

fn ignore_not_found(error: kube::Error) -> Result<(), kube::Error> {
    match &error {
        kube::Error::Api(status) if status.code == 404 => Ok(()),
        _ => Err(error),
    }
}

/// The `requireMTLS` preflight for a canary's mesh: Istio's PeerAuthentication in force, or
/// Linkerd's injection annotation.
pub async fn mtls_preflight(
    canary: &Canary,
    ctx: &Context,
    plan: &crate::plan::Plan,
    target: &Workload,
) -> Result<MtlsVerdict, kube::Error> {
    let namespace = canary.namespace().unwrap_or_default();
    let template_meta = target
        .template()
        .and_then(|t| t.metadata)
        .unwrap_or_default();
    match ctx.telemetry_for(plan.router) {
        MeshTelemetry::Linkerd => {
            let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
            let annotations = namespaces
                .get_opt(&namespace)
                .await?
                .map(|n| n.annotations().clone())
                .unwrap_or_default();
            Ok(policies::linkerd_meshed(
                &namespace,
                &annotations,
                &template_meta.annotations.unwrap_or_default(),
            ))
        }
        // Istio, and Gateway API canaries on an Istio (or Envoy) data plane.
        _ => {
            let Some(watched) = ctx
                .policies
                .iter()
                .find(|w| w.kind == policies::ISTIO_PEER_AUTHENTICATION)
            else {
                return Ok(MtlsVerdict {
                    enforced: false,
                    reason: Reason::MTLSNotStrict,
                    message: "PeerAuthentication (security.istio.io/v1) is not served by this cluster, so STRICT mTLS cannot be confirmed".into(),
                });
            };
            let labels = template_meta.labels.unwrap_or_default();
            let (label, value) = objects::selector_label(target).unwrap_or_default();
            let pods = TargetPods {
                labels: &labels,
                selector_label: &label,
                selector_value: &value,
            };
            let found = in_namespace(&watched.store, &namespace);
            Ok(policies::istio_mtls(&namespace, &found, &pods))
        }
    }
}
