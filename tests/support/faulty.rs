//! A Prometheus in front of the real one that misbehaves on demand: it answers, accepts and
//! never answers, answers late, or flaps between answering and refusing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use parking_lot::Mutex;

#[derive(Clone, Copy, Debug)]
pub enum Fault {
    None,
    /// Takes every request and never answers.
    Blackhole,
    /// Answers each request after this long.
    Slow(Duration),
    /// Answers for one period, then refuses with 503 for the next.
    Flap(Duration),
}

struct Shared {
    upstream: String,
    fault: Mutex<Fault>,
    started: Instant,
    http: reqwest::Client,
}

pub struct FaultyPrometheus {
    shared: Arc<Shared>,
    /// Its base URL.
    pub url: String,
}

impl FaultyPrometheus {
    /// In front of the Prometheus at `upstream` (a base URL), with no fault yet.
    pub fn start(upstream: &str) -> FaultyPrometheus {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            fault: Mutex::new(Fault::None),
            started: Instant::now(),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let url = format!("http://{}", super::serve_on_own_thread(app));
        FaultyPrometheus { shared, url }
    }

    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock() = fault;
    }
}

async fn forward(State(shared): State<Arc<Shared>>, uri: Uri) -> (StatusCode, String) {
    let fault = *shared.fault.lock();
    match fault {
        Fault::None => {}
        Fault::Blackhole => futures::future::pending::<()>().await,
        Fault::Slow(delay) => tokio::time::sleep(delay).await,
        Fault::Flap(period) => {
            let phase = shared.started.elapsed().as_millis() / period.as_millis().max(1);
            if phase % 2 == 1 {
                return (StatusCode::SERVICE_UNAVAILABLE, "flapping".into());
            }
        }
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", shared.upstream);
    match shared.http.get(url).send().await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            (status, answer.text().await.unwrap_or_default())
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()),
    }
}
