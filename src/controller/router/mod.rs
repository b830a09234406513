//! Routers write a mesh's routing objects. One trait, one implementation per routing API; the
//! object each writes is built by a pure function so it can be tested without a cluster.

mod gateway_api;
mod istio;
mod knative;
mod kuma;
mod session;
mod smi;

use futures::future::BoxFuture;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::api::{Canary, RouterKind, SmiVersion};
use crate::engine::Routes;
use crate::naming::FIELD_MANAGER;
use crate::plan::Plan;

pub use gateway_api::{http_route, routes_of_http_route};
pub use istio::{destination_rules, routes_of_virtual_service, virtual_service, IstioRouter};
pub use kuma::{kuma_service, routes_of_traffic_route, traffic_route, MESH_ANNOTATION};
pub use smi::{routes_of_traffic_split, traffic_split};

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("cannot write {kind} {name}: {source}")]
    Write {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("cannot read {kind} {name}: {source}")]
    Read {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("{kind} {name} has no {what} yet; it is written when the canary is initialised")]
    Missing {
        kind: &'static str,
        name: String,
        what: &'static str,
    },
}

/// Writes and reads back the routing of one canary.
pub trait Router: Send + Sync {
    /// Writes the objects that do not change with the weights (Istio's DestinationRules); called
    /// at bootstrap and promotion, not at every step. Most routers have none.
    fn ensure<'a>(
        &'a self,
        _canary: &'a Canary,
        _plan: &'a Plan,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async { Ok(()) })
    }
    /// Makes the mesh route as `routes` says (creating the route object when needed).
    fn apply<'a>(
        &'a self,
        canary: &'a Canary,
        plan: &'a Plan,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>>;
    /// The routes in force, read from the mesh's objects; `None` when they do not exist yet.
    fn current<'a>(
        &'a self,
        canary: &'a Canary,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Option<Routes>, RouterError>>;
}

/// A router whose whole routing is one object per canary (Gateway API's HTTPRoute, SMI's
/// TrafficSplit, Kuma's TrafficRoute): `build` writes it, `read` reads it back.
pub struct ObjectRouter {
    pub client: Client,
    pub resource: ApiResource,
    pub kind: &'static str,
    /// Where the object lives: beside the canary, or cluster-wide (Kuma).
    pub scope: Scope,
    pub build: fn(&Canary, &Plan, Routes) -> Value,
    pub read: fn(&Canary, &Plan, &Value) -> Option<Routes>,
}

/// Where a routing object lives, and so what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In the canary's namespace, named after the apex Service.
    Namespaced,
    /// Cluster-wide, named [`cluster_object_name`] so that canaries of the same name in two
    /// namespaces never write one object.
    Cluster,
}

/// The name of a canary's cluster-scoped routing object: `<apex>.<namespace>`. A Service name
/// holds no dot, so no two namespaces' objects can share one.
pub fn cluster_object_name(canary: &Canary) -> String {
    let apex = crate::controller::objects::service_name(canary);
    format!("{apex}.{}", canary.namespace().unwrap_or_default())
}

impl ObjectRouter {
    fn api(&self, canary: &Canary) -> Api<DynamicObject> {
        match self.scope {
            Scope::Namespaced => {
                let namespace = canary.namespace().unwrap_or_default();
                Api::namespaced_with(self.client.clone(), &namespace, &self.resource)
            }
            Scope::Cluster => Api::all_with(self.client.clone(), &self.resource),
        }
    }

    fn object_name(&self, canary: &Canary) -> String {
        match self.scope {
            Scope::Namespaced => crate::controller::objects::service_name(canary),
            Scope::Cluster => cluster_object_name(canary),
        }
    }

    /// Deletes every cluster-scoped object this canary wrote, found by its uid label, whatever
    /// its apex or provider is now: no owner reference can remove them (a cluster-scoped object
    /// may not be owned by a namespaced one). Another canary's object is never touched. A kind
    /// the cluster does not serve, or may not be listed, holds nothing this canary wrote (it
    /// may create what it may list), so neither keeps the Canary from going.
    pub async fn delete_owned(&self, canary: &Canary) -> Result<(), RouterError> {
        let uid = canary.uid().unwrap_or_default();
        if uid.is_empty() {
            return Ok(());
        }
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.resource);
        let selector = format!("{}={uid}", crate::naming::CANARY_UID_LABEL);
        let params = kube::api::ListParams::default().labels(&selector);
        let owned = match api.list_metadata(&params).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(response)) if matches!(response.code, 403 | 404) => {
                tracing::warn!(kind = self.kind, code = response.code, "cannot list routing objects to remove; nothing of this canary's can exist there");
                return Ok(());
            }
            Err(source) => {
                let name = selector;
                return Err(RouterError::Read {
                    kind: self.kind,
                    name,
                    source,
                });
            }
        };
        for object in owned {
            let name = object.name_any();
            let preconditions = kube::api::Preconditions {
                uid: object.uid(),
                resource_version: None,
            };
            let params = kube::api::DeleteParams::default().preconditions(preconditions);
            match api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(response)) if response.code == 404 => {}
                Err(source) => {
                    return Err(RouterError::Write {
                        kind: self.kind,
                        name,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

impl Router for ObjectRouter {
    fn apply<'a>(
        &'a self,
        canary: &'a Canary,
        plan: &'a Plan,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let mut object = (self.build)(canary, plan, routes);
            // The version the router was made for, whatever version the builder spelled.
            object["apiVersion"] = Value::from(self.resource.api_version.clone());
            write(&self.api(canary), self.kind, object).await
        })
    }

    fn current<'a>(
        &'a self,
        canary: &'a Canary,
        plan: &'a Plan,
    ) -> BoxFuture<'a, Result<Option<Routes>, RouterError>> {
        Box::pin(async move {
            let name = self.object_name(canary);
            let spec = read_spec(&self.api(canary), self.kind, &name).await?;
            Ok(spec.and_then(|spec| (self.read)(canary, plan, &spec)))
        })
    }
}

/// The `kubernetes` provider's router: the generated Services are the whole routing, so there
/// is nothing to write and nothing to read back (the engine then never resumes a weight).
pub struct ServicesOnly;

impl Router for ServicesOnly {
    fn apply<'a>(
        &'a self,
        _: &'a Canary,
        _: &'a Plan,
        _: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async { Ok(()) })
    }

    fn current<'a>(
        &'a self,
        _: &'a Canary,
        _: &'a Plan,
    ) -> BoxFuture<'a, Result<Option<Routes>, RouterError>> {
        Box::pin(async { Ok(None) })
    }
}

/// One router per routing API, chosen per canary by `spec.provider`.
pub struct Routers {
    pub istio: IstioRouter,
    /// One per TrafficSplit version, in [`SmiVersion::ALL`]'s order.
    pub smi: [ObjectRouter; SmiVersion::ALL.len()],
    pub gateway_api: ObjectRouter,
    pub kuma: ObjectRouter,
    pub knative: knative::KnativeRouter,
    pub services_only: ServicesOnly,
}

impl Routers {
    pub fn new(client: &Client) -> Routers {
        Routers {
            istio: IstioRouter {
                client: client.clone(),
            },
            smi: SmiVersion::ALL.map(|version| smi::router(client, version)),
            gateway_api: gateway_api::router(client),
            kuma: kuma::router(client),
            knative: knative::KnativeRouter {
                client: client.clone(),
            },
            services_only: ServicesOnly,
        }
    }

    pub fn get(&self, kind: RouterKind) -> &dyn Router {
        match kind {
            RouterKind::Istio => &self.istio,
            RouterKind::Smi(version) => &self.smi[version as usize],
            RouterKind::Osm => &self.smi[SmiVersion::V1alpha2 as usize],
            RouterKind::GatewayApi => &self.gateway_api,
            RouterKind::Kubernetes => &self.services_only,
            RouterKind::Kuma => &self.kuma,
            RouterKind::Knative => &self.knative,
        }
    }

    /// Undoes, for a deleted canary, what garbage collection cannot: a cluster-scoped routing
    /// object is removed, and with `revertOnDeletion` a Knative Service's traffic goes back to
    /// its latest Revision.
    pub async fn on_delete(&self, kind: RouterKind, canary: &Canary) -> Result<(), RouterError> {
        // Whatever the provider is now: it may have been kuma before.
        self.kuma.delete_owned(canary).await?;
        match kind {
            RouterKind::Knative if canary.spec.revert_on_deletion => {
                self.knative.release(canary).await
            }
            _ => Ok(()),
        }
    }
}

/// Server-side applies `object` through `api`, taking over fields others set.
async fn write(
    api: &Api<DynamicObject>,
    kind: &'static str,
    object: Value,
) -> Result<(), RouterError> {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
    .map_err(|source| RouterError::Write { kind, name, source })
}

/// The `spec` of a routing object, or `None` when it does not exist.
async fn read_spec(
    api: &Api<DynamicObject>,
    kind: &'static str,
    name: &str,
) -> Result<Option<Value>, RouterError> {
    let found = api
        .get_opt(name)
        .await
        .map_err(|source| RouterError::Read {
            kind,
            name: name.to_string(),
            source,
        })?;
    Ok(found.map(|object| object.data["spec"].clone()))
}

/// Canaries for the routers' unit tests: `podinfo` in `test`, port 9898.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use crate::api::{
        Canary, CanaryAnalysis, CanaryService, CanarySpec, RequestMatch, StringMatch, TargetRef,
    };

    /// The canary's spec read as the controller reads it (Istio unless it names a provider).
    pub fn plan(canary: &Canary) -> crate::plan::Plan {
        crate::plan::plan(&canary.spec, Default::default()).expect("a valid fixture")
    }

    pub fn canary(service: CanaryService, analysis: Option<CanaryAnalysis>) -> Canary {
        let mut canary = Canary::new(
            "podinfo",
            CanarySpec {
                target_ref: TargetRef {
                    name: "podinfo".into(),
                    ..Default::default()
                },
                service: CanaryService {
                    port: 9898,
                    ..service
                },
                analysis,
                ..Default::default()
            },
        );
        canary.metadata.namespace = Some("test".into());
        canary.metadata.uid = Some("uid-1".into());
        canary
    }

    /// The A/B condition `x-canary: insider`.
    pub fn insider() -> RequestMatch {
        RequestMatch {
            headers: BTreeMap::from([(
                "x-canary".into(),
                StringMatch {
                    exact: Some("insider".into()),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        }
    }
}
