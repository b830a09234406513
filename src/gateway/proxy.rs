//! The proxy itself: accepts HTTP/1.1, picks an upstream per request, forwards, records.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::routing::{MatchError, RouteTable};
use super::telemetry::Telemetry;
use crate::engine::Routes;
use crate::plan::RouteMatch;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// How long an upstream may take before the client gets a 504.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Match(#[from] MatchError),
}

/// Shared state of a running gateway.
pub struct Gateway {
    table: RwLock<Arc<RouteTable>>,
    telemetry: Telemetry,
    client: Client<HttpConnector, ProxyBody>,
}

impl Gateway {
    fn new(table: RouteTable) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Gateway {
            table: RwLock::new(Arc::new(table)),
            telemetry: Telemetry::default(),
            client,
        }
    }

    fn table(&self) -> Arc<RouteTable> {
        // A poisoned lock only means a writer panicked after swapping a whole table in.
        self.table.read().clone()
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<ProxyBody> {
        let table = self.table();
        let (parts, body) = request.into_parts();
        let upstream = table.choose(&parts, rand::random_range(0..100));
        let mirror = table.mirrors(upstream, rand::random_range(0..100));
        let body: ProxyBody = if mirror {
            // A mirrored request needs its body twice, so it is read whole first.
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return plain(StatusCode::BAD_REQUEST, "unreadable request body"),
            };
            let copy = build_request(&parts, table.canary, full(bytes.clone()));
            let gateway = self.clone();
            tokio::spawn(async move {
                gateway.telemetry.record_mirror();
                if let Ok(copy) = copy {
                    let _ =
                        tokio::time::timeout(UPSTREAM_TIMEOUT, gateway.client.request(copy)).await;
                }
            });
            full(bytes)
        } else {
            body.boxed()
        };
        let Ok(outgoing) = build_request(&parts, table.address(upstream), body) else {
            return plain(StatusCode::BAD_REQUEST, "request cannot be forwarded");
        };
        let started = Instant::now();
        match tokio::time::timeout(UPSTREAM_TIMEOUT, self.client.request(outgoing)).await {
            Ok(Ok(response)) => {
                self.telemetry
                    .record(upstream, response.status().as_u16(), started.elapsed());
                response.map(BodyExt::boxed)
            }
            Ok(Err(error)) => {
                self.telemetry
                    .record_connect_error(upstream, started.elapsed());
                tracing::debug!(upstream = upstream.as_str(), %error, "upstream unreachable");
                plain(
                    StatusCode::BAD_GATEWAY,
                    &format!("{} upstream unreachable", upstream.as_str()),
                )
            }
            Err(_) => {
                self.telemetry.record(upstream, 504, started.elapsed());
                plain(StatusCode::GATEWAY_TIMEOUT, "upstream timed out")
            }
        }
    }
}

/// Binds `listen` and reports the address actually bound (for `:0`).
pub(super) async fn bind(listen: &str) -> Result<(TcpListener, SocketAddr), GatewayError> {
    let failed = |source| GatewayError::Bind {
        address: listen.to_string(),
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(failed)?;
    let address = listener.local_addr().map_err(failed)?;
    Ok((listener, address))
}

fn build_request(
    parts: &http::request::Parts,
    address: SocketAddr,
    body: ProxyBody,
) -> Result<Request<ProxyBody>, http::Error> {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://{address}{path}"));
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            builder = builder.header(name, value);
        }
    }
    builder.body(body)
}

fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn plain(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response
}

/// A running gateway: its addresses, its routes and its telemetry.
#[derive(Clone)]
pub struct GatewayHandle {
    pub address: SocketAddr,
    gateway: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
}

impl GatewayHandle {
    /// Starts serving on `listen` with all traffic on the primary.
    pub async fn start(
        listen: &str,
        primary: SocketAddr,
        canary: SocketAddr,
    ) -> Result<GatewayHandle, GatewayError> {
        let (listener, address) = bind(listen).await?;
        let gateway = Arc::new(Gateway::new(RouteTable::new(primary, canary)));
        let (shutdown, mut stopped) = watch::channel(false);
        let serving = gateway.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        let gateway = serving.clone();
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |request| {
                                let gateway = gateway.clone();
                                async move { Ok::<_, Infallible>(gateway.handle(request).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
        });
        tracing::info!(%address, %primary, %canary, "embedded gateway listening");
        Ok(GatewayHandle {
            address,
            gateway,
            shutdown,
        })
    }

    /// Replaces the routes; requests already in flight finish where they were sent.
    pub fn set_routes(&self, routes: Routes, matches: &[RouteMatch]) -> Result<(), MatchError> {
        let next = self.gateway.table().with_routes(routes, matches)?;
        *self.gateway.table.write() = Arc::new(next);
        Ok(())
    }

    /// Points the primary route at another address (standalone promotion of external upstreams).
    pub fn set_primary_address(&self, primary: SocketAddr) {
        let mut next = (*self.gateway.table()).clone();
        next.primary = primary;
        *self.gateway.table.write() = Arc::new(next);
    }

    pub fn routes(&self) -> Routes {
        self.gateway.table().routes
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.gateway.telemetry
    }

    /// Stops accepting; connections already open finish their requests.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}
