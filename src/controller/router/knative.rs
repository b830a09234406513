//! Knative: the target Knative Service's own `spec.traffic`, split between the primary Revision
//! (named in its annotation) and the latest Revision. No match, mirror or session rules
//! (validation refuses them).

use futures::future::BoxFuture;
use kube::{Client, ResourceExt};

use super::{Router, RouterError};
use crate::api::Canary;
use crate::controller::knative::{self, KnativeService};
use crate::engine::Routes;
use crate::plan::Plan;

const KIND: &str = "Knative Service";

pub struct KnativeRouter {
    pub client: Client,
}

impl KnativeRouter {
    async fn service(&self, canary: &Canary) -> Result<Option<KnativeService>, RouterError> {
        let namespace = canary.namespace().unwrap_or_default();
        let name = &canary.spec.target_ref.name;
        knative::fetch(&self.client, &namespace, name)
            .await
            .map_err(|source| RouterError::Read {
                kind: KIND,
                name: name.clone(),
                source,
            })
    }
}

impl KnativeRouter {
    /// All traffic to the latest Revision, as Knative routes a Service with no traffic block,
    /// and the primary annotations taken away. A Service already gone needs nothing.
    pub async fn release(&self, canary: &Canary) -> Result<(), RouterError> {
        let namespace = canary.namespace().unwrap_or_default();
        let name = canary.spec.target_ref.name.clone();
        // Only a Service whose primary this canary named: a refused canary (its target
        // claimed by another) gives back nothing it never took.
        let uid = canary.uid().unwrap_or_default();
        let service = self.service(canary).await?;
        if service.is_none_or(|s| s.primary_revision(&uid).is_none()) {
            return Ok(());
        }
        let latest = serde_json::json!([{ "latestRevision": true, "percent": 100 }]);
        let written = async {
            knative::write_traffic(&self.client, &namespace, &name, latest).await?;
            knative::set_primary(&self.client, &namespace, &name, None).await
        };
        written.await.map_err(|source| RouterError::Write {
            kind: KIND,
            name,
            source,
        })
    }
}

impl Router for KnativeRouter {
    fn apply<'a>(
        &'a self,
        canary: &'a Canary,
        _: &'a Plan,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>> {
        Box::pin(async move {
            let name = canary.spec.target_ref.name.clone();
            let service = self.service(canary).await?;
            let uid = canary.uid().unwrap_or_default();
            let primary = service
                .as_ref()
                .and_then(|s| s.primary_revision(&uid))
                .cloned();
            let (Some(service), Some(primary)) = (service, primary) else {
                return Err(RouterError::Missing {
                    kind: KIND,
                    name,
                    what: knative::PRIMARY_REVISION_ANNOTATION,
                });
            };
            // The Revision under analysis, as the status names it; the latest before any.
            let analysed = canary
                .status
                .as_ref()
                .and_then(|s| s.last_applied_spec.clone());
            let canary_revision = analysed
                .or(service.latest_created)
                .unwrap_or_else(|| primary.clone());
            let traffic = knative::traffic(&primary, &canary_revision, routes);
            let namespace = canary.namespace().unwrap_or_default();
            knative::write_traffic(&self.client, &namespace, &name, traffic)
                .await
                .map_err(|source| RouterError::Write {
                    kind: KIND,
                    name,
                    source,
                })
        })
    }

    fn current<'a>(
        &'a self,
        canary: &'a Canary,
        _: &'a Plan,
    ) -> BoxFuture<'a, Result<Option<Routes>, RouterError>> {
        Box::pin(async move {
            let service = self.service(canary).await?;
            let uid = canary.uid().unwrap_or_default();
            Ok(service.and_then(|s| {
                let primary = s.primary_revision(&uid)?;
                knative::routes_of_traffic(&s.traffic, primary)
            }))
        })
    }
}
