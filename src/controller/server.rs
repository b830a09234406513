//! `/healthz`, `/readyz` and `/metrics` of the controller.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::{extract::State, http::StatusCode, routing::get, Router};

use super::{ControllerError, ControllerMetrics};

#[derive(Clone)]
struct Shared {
    metrics: Arc<ControllerMetrics>,
    ready: Arc<AtomicBool>,
}

pub async fn serve(
    listen: &str,
    metrics: Arc<ControllerMetrics>,
    ready: Arc<AtomicBool>,
) -> Result<std::net::SocketAddr, ControllerError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ControllerError::Serve {
            address: listen.to_string(),
            source,
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| ControllerError::Serve {
            address: listen.to_string(),
            source,
        })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(shared): State<Shared>| async move {
                if shared.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(shared): State<Shared>| async move {
                let content_type = [(http::header::CONTENT_TYPE, crate::exposition::CONTENT_TYPE)];
                (content_type, shared.metrics.render())
            }),
        )
        .with_state(Shared { metrics, ready });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "controller HTTP server stopped");
        }
    });
    Ok(address)
}
