//! `aviary controller`: Canary reconciliation in a cluster. Kubernetes is an adapter around the
//! same pure engine the standalone runner drives: state comes from watch-fed stores, actions
//! become server-side applies, and each canary is requeued at its own analysis interval.

mod alerts;
mod backoff;
pub mod configs;
mod decode;
mod deferred;
mod effects;
mod event_limits;
mod events;
mod finalizer;
mod flagger_signals;
mod index;
pub mod knative;
mod leader;
pub mod objects;
mod observe;
mod per_canary;
pub mod policies;
mod queue;
mod readiness;
mod reconcile;
mod referenced;
mod revert;
pub mod router;
mod scaled_object;
mod security;
mod server;
mod signals;
mod status_write;
pub mod watch;
pub mod workload;
mod world;
mod written;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::runtime::reflector;
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use crate::api::{Canary, MetricTemplate, RouterKind};
use crate::hooks::HookClient;
use crate::metrics::prometheus::MeshTelemetry;
use crate::plan::TargetKind;

pub use alerts::DefaultAlert;
pub use leader::LeaseSettings;
pub use readiness::is_ready;
pub use signals::ControllerMetrics;

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Prometheus address used when a Canary sets no `metricsServer`.
    pub metrics_server: String,
    /// Router of canaries that set no `spec.provider` (istio, linkerd, gatewayapi:v1).
    pub mesh: String,
    /// Telemetry the built-in checks of Gateway API canaries read (istio or linkerd); unset, it
    /// follows `mesh` (Linkerd for linkerd, else Istio).
    pub telemetry: Option<String>,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub listen: String,
    /// Only this namespace, or all.
    pub namespace: Option<String>,
    pub lease: Option<LeaseSettings>,
    /// Shortest analysis interval accepted (10s, as Flagger; tests lower it explicitly).
    pub min_interval: Duration,
    /// Alert provider of canaries that declare no `analysis.alerts`.
    pub default_alert: Option<DefaultAlert>,
    /// The proxies' Prometheus scrape interval (the comparative judge samples at it).
    pub scrape_interval: Duration,
    /// Meshes whose policy kinds are watched and copied for the primary's pods; a kind left
    /// out needs no RBAC.
    pub policy_meshes: Vec<policies::PolicyMesh>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("--mesh-provider: {0}")]
    UnsupportedMesh(#[from] crate::api::UnknownProvider),
    #[error("--telemetry {0:?} is not supported; use istio, linkerd or envoy")]
    UnsupportedTelemetry(String),
    #[error("cannot serve {address}: {source}")]
    Serve {
        address: String,
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Lease(String),
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub deployments: reflector::Store<Deployment>,
    pub daemon_sets: reflector::Store<DaemonSet>,
    pub config_maps: reflector::Store<ConfigMap>,
    pub secrets: reflector::Store<Secret>,
    pub canaries: reflector::Store<Canary>,
    pub templates: reflector::Store<MetricTemplate>,
    /// HTTP clients for MetricTemplate providers, one per TLS trust.
    pub template_pool: Arc<crate::metrics::templates::PrometheusPool>,
    pub routers: router::Routers,
    /// The policy kinds this cluster serves, watched for `-primary` copies.
    pub policies: Vec<security::WatchedPolicies>,
    /// Which canaries an object concerns, kept current by the watches.
    pub relations: Arc<index::RelationIndex>,
    /// What decides what a canary may do: the default router, the interval floor, the
    /// default Prometheus.
    pub settings: observe::Settings,
    pub hooks: HookClient,
    pub events: events::EventWriter,
    /// Event webhooks and alert providers.
    pub announcer: alerts::Announcer,
    /// One connection pool for every Prometheus query of every canary.
    pub prometheus_http: reqwest::Client,
    /// The telemetry built-in checks of Gateway API canaries read.
    pub gateway_telemetry: MeshTelemetry,
    pub metrics: Arc<ControllerMetrics>,
    /// What feeds `config_maps` and `secrets`: only the objects canaries refer to.
    pub held_maps: Arc<referenced::Referenced<ConfigMap>>,
    pub held_secrets: Arc<referenced::Referenced<Secret>>,
    /// Everything kept per canary outside the store, forgotten with it: webhook batches and
    /// metric queries that outlast a reconcile, its own last status writes, the canaries whose
    /// routes were read back, and the failures in a row for the error backoff.
    pub kept: Arc<per_canary::PerCanary>,
    /// Bounds the post-rollout and event hooks in flight.
    pub background_hooks: Arc<tokio::sync::Semaphore>,
    /// Whether this replica may write now.
    pub leadership: leader::Leadership,
}

impl Context {
    /// The watch-fed stores, as one reconcile reads them.
    pub fn stores(&self) -> observe::Stores<'_> {
        observe::Stores {
            deployments: &self.deployments,
            daemon_sets: &self.daemon_sets,
            config_maps: &self.config_maps,
            secrets: &self.secrets,
            canaries: &self.canaries,
            templates: &self.templates,
            relations: &self.relations,
        }
    }

    /// Whose proxy telemetry the built-in checks of a canary on `router` read.
    pub fn telemetry_for(&self, router: RouterKind) -> MeshTelemetry {
        match router {
            RouterKind::Istio => MeshTelemetry::Istio,
            RouterKind::Smi(_) => MeshTelemetry::Linkerd,
            RouterKind::GatewayApi => self.gateway_telemetry,
            RouterKind::Osm => MeshTelemetry::Osm,
            RouterKind::Kubernetes => MeshTelemetry::Application,
            RouterKind::Kuma => MeshTelemetry::Kuma,
            RouterKind::Knative => MeshTelemetry::Knative,
        }
    }
}

/// Runs the controller until a shutdown signal.
pub async fn run(config: ControllerConfig) -> Result<(), ControllerError> {
    crate::http_client::install_crypto_provider();
    let mut kubeconfig = kube::Config::infer()
        .await
        .map_err(|error| ControllerError::Client(kube::Error::InferConfig(error)))?;
    // Named by replica, so the API server's audit log tells which one wrote.
    let identity = config
        .lease
        .as_ref()
        .map_or("single", |l| l.identity.as_str());
    if let Ok(agent) = http::HeaderValue::from_str(&format!("aviary-controller/{identity}")) {
        kubeconfig.headers.push((http::header::USER_AGENT, agent));
    }
    let leadership = match config.lease {
        Some(_) => leader::Leadership::standby(),
        None => leader::Leadership::unelected(),
    };
    // Every write but the election's own goes through the fence.
    let client = leader::fenced_client(kubeconfig.clone(), leadership.clone())
        .map_err(ControllerError::Client)?;
    let default_router = RouterKind::parse(&config.mesh)?;
    let gateway_telemetry = match (config.telemetry.as_deref(), default_router) {
        (Some(name), _) => MeshTelemetry::parse(name)
            .ok_or_else(|| ControllerError::UnsupportedTelemetry(name.into()))?,
        (None, RouterKind::Smi(_)) => MeshTelemetry::Linkerd,
        (None, _) => MeshTelemetry::Istio,
    };
    let metrics = Arc::new(ControllerMetrics::new(&config.mesh));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let address = server::serve(&config.listen, metrics.clone(), ready.clone()).await?;
    // The first line of stdout, as every serving subcommand prints it: a caller that asked for
    // port 0 learns the port here.
    println!("listening {address}");
    tracing::info!(%address, "controller serving /healthz, /readyz and /metrics");

    // One watch per kind feeds the store reconciles read from, the index of which canaries an
    // object concerns, and the trigger that wakes those canaries.
    let relations = Arc::new(index::RelationIndex::default());
    let namespace = config.namespace.as_deref();
    let seen = relations.clone();
    let (deployments, deployment_events) =
        reflected::<Deployment>(&client, namespace, move |event| {
            seen.observe_workload(TargetKind::Deployment, event)
        });
    let seen = relations.clone();
    let (daemon_sets, daemon_set_events) =
        reflected::<DaemonSet>(&client, namespace, move |event| {
            seen.observe_workload(TargetKind::DaemonSet, event)
        });
    let held_maps = Arc::new(referenced::Referenced::<ConfigMap>::new(client.clone()));
    let held_secrets = Arc::new(referenced::Referenced::<Secret>::new(client.clone()));
    let config_map_events = metadata_of(&client, namespace, held_maps.clone());
    let secret_events = metadata_of(&client, namespace, held_secrets.clone());
    let (config_maps, secrets) = (held_maps.store().clone(), held_secrets.store().clone());
    let events = events::EventWriter::new(client.clone(), format!("aviary-{}", std::process::id()));
    let rejects = decode::Rejects::new(client.clone(), events.clone());
    let (templates, template_writer) = reflector::store();
    let template_events = reflector::reflector(
        template_writer,
        decode::watch::<MetricTemplate>(&client, namespace, rejects.clone()).modify(slim),
    )
    .default_backoff()
    .touched_objects();
    let (canaries, canary_writer) = reflector::store();
    let seen = relations.clone();
    // What the controller keeps per canary, forgotten with it. A webhook batch that outlasts
    // its reconcile wakes its canary when it ends.
    let (wake, woken) = deferred::wake_channel();
    let kept = Arc::new(per_canary::PerCanary::new(
        metrics.clone(),
        events.clone(),
        wake.clone(),
    ));
    let follows = kept.clone();
    let canary_events = reflector::reflector(
        canary_writer,
        decode::watch::<Canary>(&client, namespace, rejects).modify(slim),
    )
    .inspect_ok(move |event| {
        seen.observe_canary(event);
        // Deleted without a finalizer, a canary is never reconciled again: its state goes here.
        follows.observe(event);
    })
    .default_backoff()
    .touched_objects();
    // Bounded concurrency keeps a burst (thousands of canaries at start) from overwhelming the
    // API server; reconciles are short, so steps stay on schedule.
    let election = match &config.lease {
        Some(lease) => {
            let elections = Client::try_from(kubeconfig).map_err(ControllerError::Client)?;
            let (everyone, wake) = (canaries.clone(), wake.clone());
            // A new leader looks at every canary: a standby's reconciles did nothing.
            let on_elected = move || {
                for canary in everyone.state() {
                    let _ = wake.send(reflector::ObjectRef::from_obj(&*canary));
                }
            };
            let settings = (lease.clone(), leadership.clone());
            Some(leader::start(elections, settings.0, settings.1, on_elected))
        }
        None => None,
    };
    let controller = Controller::for_stream(canary_events, canaries.clone())
        .with_config(
            // Unbounded here: the reconcile waits for its place in [`queue`], where the waiting
            // are counted.
            kube::runtime::controller::Config::default().concurrency(0),
        )
        .reconcile_on(futures::stream::unfold(woken, |mut woken| async move {
            woken.recv().await.map(|canary| (canary, woken))
        }));
    let index = relations.clone();
    let controller = controller.watches_stream(deployment_events, move |deployment: Deployment| {
        let namespace = deployment.namespace().unwrap_or_default();
        index.for_workload(&namespace, &deployment.name_any())
    });
    let index = relations.clone();
    let controller = controller.watches_stream(daemon_set_events, move |daemon_set: DaemonSet| {
        let namespace = daemon_set.namespace().unwrap_or_default();
        index.for_workload(&namespace, &daemon_set.name_any())
    });
    let mut policies = Vec::new();
    let mut controller = controller;
    let chosen = policies::POLICY_KINDS
        .into_iter()
        .filter(|kind| config.policy_meshes.contains(&kind.mesh()));
    for kind in chosen {
        if !security::served(&client, &kind, config.namespace.as_deref()).await {
            continue;
        }
        let resource = kind.resource();
        let api: Api<DynamicObject> = match &config.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let events = reflector::reflector(
            writer,
            watch::relisting(api, watcher::Config::default().any_semantic()).modify(slim),
        )
        .default_backoff()
        .touched_objects();
        let index = relations.clone();
        // A policy change may concern any canary of its namespace; their reconciles compare
        // against the stores and write nothing when the copies are current.
        controller = controller.watches_stream_with(
            events,
            move |policy: DynamicObject| {
                index.in_namespace(&policy.namespace().unwrap_or_default())
            },
            resource,
        );
        policies.push(security::WatchedPolicies { kind, store });
    }
    let (by_template, by_map, by_secret) =
        (relations.clone(), relations.clone(), relations.clone());
    // A template change concerns the canaries whose metrics refer to it; a ConfigMap or Secret
    // change, the canaries whose target uses it.
    let controller = controller
        .watches_stream(template_events, move |template: MetricTemplate| {
            let namespace = template.namespace().unwrap_or_default();
            by_template.for_template(&namespace, &template.name_any())
        })
        .watches_stream(
            config_map_events,
            move |map: PartialObjectMeta<ConfigMap>| {
                let namespace = map.namespace().unwrap_or_default();
                by_map.for_config(&namespace, configs::ConfigKind::ConfigMap, &map.name_any())
            },
        )
        .watches_stream(secret_events, move |secret: PartialObjectMeta<Secret>| {
            let namespace = secret.namespace().unwrap_or_default();
            by_secret.for_config(&namespace, configs::ConfigKind::Secret, &secret.name_any())
        });
    // One connection pool for every webhook, whether the engine waits on it or not.
    let hooks = HookClient::default();
    let context = Arc::new(Context {
        client: client.clone(),
        deployments,
        daemon_sets,
        config_maps,
        secrets: secrets.clone(),
        held_maps,
        held_secrets,
        canaries,
        templates,
        template_pool: Arc::new(crate::metrics::templates::PrometheusPool::new(
            Duration::from_secs(30),
        )),
        routers: router::Routers::new(&client),
        policies,
        relations,
        settings: observe::Settings {
            default_router,
            min_interval: config.min_interval,
            metrics_server: config.metrics_server.clone(),
            sampling: crate::judge::sampling::SamplingModel {
                scrape_interval: config.scrape_interval,
            },
        },
        hooks,
        announcer: alerts::Announcer {
            client: client.clone(),
            notifier: crate::notify::Notifier::default(),
            default_alert: config.default_alert.clone(),
        },
        events,
        prometheus_http: crate::http_client::client(Duration::from_secs(30)),
        gateway_telemetry,
        metrics,
        kept,
        background_hooks: Arc::new(tokio::sync::Semaphore::new(effects::BACKGROUND_HOOKS)),
        leadership,
    });
    // Ready once the caches are listed, leader or standby: a standby must be Ready for a
    // rolling update of the replicas to complete.
    let synced = (context.clone(), ready.clone());
    tokio::spawn(async move {
        reconcile::caches_synced(&synced.0).await;
        synced.1.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    tracing::info!(mesh = %config.mesh, metrics_server = %config.metrics_server, "controller started");
    controller
        .shutdown_on_signal()
        .run(reconcile::reconcile, reconcile::error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        })
        .await;
    if let Some(election) = election {
        election.release().await;
    }
    tracing::info!("controller stopped");
    Ok(())
}

/// Reconciles running at once.
pub const RECONCILE_CONCURRENCY: usize = 128;

/// How long to wait before retrying after an error.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(5);

/// Drops what Aviary never reads before an object is stored: managedFields and the
/// last-applied annotation are often larger than the rest of the object.
fn slim<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The metadata watch of `K` (names and versions, no data) that keeps `held` current, and the
/// stream of objects it saw change.
fn metadata_of<K: referenced::Held>(
    client: &Client,
    namespace: Option<&str>,
    held: Arc<referenced::Referenced<K>>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static {
    // An Api of PartialObjectMeta asks for metadata only: no value is ever sent here.
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    watch::relisting(api, watcher::Config::default().any_semantic())
        .and_then(move |event| {
            let held = held.clone();
            // Read before the change wakes a canary, so its reconcile sees the new data.
            async move {
                held.changed(&event).await;
                Ok(event)
            }
        })
        .default_backoff()
        .touched_objects()
}

/// A watch-fed store of `K` and the stream of objects it saw change; `observe` sees every
/// watch event first (to keep an index current).
fn reflected<K>(
    client: &Client,
    namespace: Option<&str>,
    observe: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> (
    reflector::Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let events = reflector::reflector(
        writer,
        watch::relisting(api, watcher::Config::default().any_semantic()).modify(slim),
    )
    .inspect_ok(observe)
    .default_backoff()
    .touched_objects();
    (store, events)
}
