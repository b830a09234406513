//! Routers write a mesh's routing objects. One trait, one implementation per mesh.

mod istio;

use futures::future::BoxFuture;

use crate::api::Canary;
use crate::engine::Routes;

pub use istio::{destination_rules, routes_of_virtual_service, virtual_service, IstioRouter};

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
}

/// Writes and reads back the routing of one canary.
pub trait Router: Send + Sync {
    /// Writes the objects that do not change with the weights (Istio's DestinationRules); called
    /// at bootstrap and promotion, not at every step.
    fn ensure<'a>(&'a self, canary: &'a Canary) -> BoxFuture<'a, Result<(), RouterError>>;
    /// Makes the mesh route as `routes` says (creating the route object when needed).
    fn apply<'a>(
        &'a self,
        canary: &'a Canary,
        routes: Routes,
    ) -> BoxFuture<'a, Result<(), RouterError>>;
    /// The routes in force, read from the mesh's objects; `None` when they do not exist yet.
    fn current<'a>(
        &'a self,
        canary: &'a Canary,
    ) -> BoxFuture<'a, Result<Option<Routes>, RouterError>>;
}
