//! The gateway's admin listener: `/metrics` for scrapers and `/healthz`.

use std::net::SocketAddr;

use axum::{extract::State, routing::get, Router};

use super::{GatewayError, GatewayHandle};

/// Serves the gateway's telemetry on `listen`; returns the bound address.
pub async fn serve_admin(gateway: GatewayHandle, listen: &str) -> Result<SocketAddr, GatewayError> {
    let (listener, address) = super::proxy::bind(listen).await?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(gateway);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "gateway admin listener stopped");
        }
    });
    Ok(address)
}

async fn metrics(State(gateway): State<GatewayHandle>) -> impl axum::response::IntoResponse {
    let content_type = [(http::header::CONTENT_TYPE, crate::exposition::CONTENT_TYPE)];
    (content_type, gateway.telemetry().render())
}
