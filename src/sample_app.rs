//! A sample HTTP service whose version, error rate and latency can be set: the workload of the
//! demo and of the tests. `aviary sample-app` runs one on its own.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::Duration;

use axum::{extract::State, http::StatusCode, routing::get, Json, Router};
use serde_json::json;

/// How a version behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    pub version: String,
    /// Fraction of requests answered with a 500, from 0 to 1.
    pub error_rate: f64,
    /// Time taken by every answer.
    pub latency: Duration,
}

impl Behaviour {
    pub fn healthy(version: &str) -> Self {
        Behaviour {
            version: version.to_string(),
            error_rate: 0.0,
            latency: Duration::from_millis(2),
        }
    }
}

/// A running sample app; cloning shares it.
#[derive(Clone)]
pub struct SampleApp {
    pub address: SocketAddr,
    behaviour: Arc<RwLock<Behaviour>>,
}

impl SampleApp {
    pub async fn start(listen: &str, behaviour: Behaviour) -> std::io::Result<SampleApp> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(RwLock::new(behaviour));
        let app = Router::new()
            .route("/", get(answer))
            .route("/healthz", get(|| async { "ok\n" }))
            .fallback(answer)
            .with_state(shared.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "sample app stopped");
            }
        });
        Ok(SampleApp {
            address,
            behaviour: shared,
        })
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour.read().clone()
    }

    /// Deploys another version in place.
    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.write() = behaviour;
    }
}

async fn answer(
    State(behaviour): State<Arc<RwLock<Behaviour>>>,
) -> (StatusCode, Json<serde_json::Value>) {
    let current = behaviour.read().clone();
    if !current.latency.is_zero() {
        tokio::time::sleep(current.latency).await;
    }
    if rand::random::<f64>() < current.error_rate {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "version": current.version, "error": "injected failure" })),
        );
    }
    (StatusCode::OK, Json(json!({ "version": current.version })))
}
