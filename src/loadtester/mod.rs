//! `aviary loadtester`: the service `rollout` webhooks call to generate load, and the manual gates
//! people open and close. Unlike Flagger's, every state-changing endpoint needs a bearer token,
//! and every change is recorded with who made it (a Kubernetes Event on the Canary, or the log).
//! With a webhook secret, calls from the controller must also carry a valid signature.

mod audit;
mod gates;
mod load;
mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::watch;

use crate::api::Reason;

pub use audit::Audit;
pub use gates::{Gates, Switch};
pub use load::{LoadError, LoadRequest, RunRecord, Runs, Start};

/// How far a signed call's timestamp may be from now.
const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

pub struct LoadtesterConfig {
    pub listen: String,
    /// `(identity, token)`: who may open and close gates.
    pub tokens: Vec<(String, String)>,
    /// When set, webhook calls (load, checks) must be signed with it.
    pub webhook_secret: Option<Vec<u8>>,
    pub audit: Audit,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadtesterError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("token file line {line}: {reason}")]
    Tokens { line: usize, reason: String },
}

/// Reads `identity token` lines (blank lines and `#` comments skipped).
pub fn parse_tokens(text: &str) -> Result<Vec<(String, String)>, LoadtesterError> {
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(identity), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(LoadtesterError::Tokens {
                line: index + 1,
                reason: "expected `identity token`".into(),
            });
        };
        if token.len() < 16 {
            return Err(LoadtesterError::Tokens {
                line: index + 1,
                reason: format!("the token of {identity} is shorter than 16 characters"),
            });
        }
        tokens.push((identity.to_string(), token.to_string()));
    }
    Ok(tokens)
}

#[derive(Default)]
struct Counters {
    load_ok: AtomicU64,
    load_failed: AtomicU64,
    load_dropped: AtomicU64,
    loads_started: AtomicU64,
    loads_deduplicated: AtomicU64,
    unauthorized: AtomicU64,
    bad_signatures: AtomicU64,
    changes: AtomicU64,
}

struct Shared {
    tokens: Vec<(String, String)>,
    webhook_secret: Option<Vec<u8>>,
    gates: Arc<Gates>,
    runs: Arc<Runs>,
    counters: Arc<Counters>,
    /// The process's one metrics registry, reading the three above.
    registry: crate::exposition::Registry,
    audit: Audit,
    /// Dropped with the server: stops every run.
    stop: watch::Receiver<bool>,
}

/// A running loadtester; dropping it stops the server and every load.
pub struct LoadtesterHandle {
    pub address: SocketAddr,
    _stop: watch::Sender<bool>,
    shared: Arc<Shared>,
}

impl LoadtesterHandle {
    pub fn runs(&self) -> Vec<RunRecord> {
        self.shared.runs.all()
    }
}

pub async fn serve(config: LoadtesterConfig) -> Result<LoadtesterHandle, LoadtesterError> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| LoadtesterError::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| LoadtesterError::Listen {
            address: config.listen.clone(),
            source,
        })?;
    let (stop_tx, stop) = watch::channel(false);
    let (gates, started, counters) = (Arc::default(), Arc::default(), Arc::default());
    let registry = crate::exposition::registry_of(metrics::LoadtesterMetrics {
        gates: Arc::clone(&gates),
        runs: Arc::clone(&started),
        counters: Arc::clone(&counters),
    });
    let shared = Arc::new(Shared {
        tokens: config.tokens,
        webhook_secret: config.webhook_secret,
        gates,
        runs: started,
        counters,
        registry,
        audit: config.audit,
        stop: stop.clone(),
    });
    let app = Router::new()
        .route("/", post(start_load))
        .route("/gate/check", post(|s, h, b| check(s, h, b, Switch::Gate)))
        .route(
            "/rollback/check",
            post(|s, h, b| check(s, h, b, Switch::Rollback)),
        )
        .route("/gate/approve", post(|s, h, b| fixed(s, h, b, true)))
        .route("/gate/halt", post(|s, h, b| fixed(s, h, b, false)))
        .route(
            "/gate/open",
            post(|s, h, b| change(s, h, b, Switch::Gate, true)),
        )
        .route(
            "/gate/close",
            post(|s, h, b| change(s, h, b, Switch::Gate, false)),
        )
        .route(
            "/rollback/open",
            post(|s, h, b| change(s, h, b, Switch::Rollback, true)),
        )
        .route(
            "/rollback/close",
            post(|s, h, b| change(s, h, b, Switch::Rollback, false)),
        )
        .route("/runs", get(runs))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared.clone());
    let mut shutdown = stop;
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "loadtester stopped");
        }
    });
    tracing::info!(%address, "loadtester listening");
    Ok(LoadtesterHandle {
        address,
        _stop: stop_tx,
        shared,
    })
}

/// The parts of a webhook payload the loadtester reads.
#[derive(Debug, Deserialize)]
struct Incoming {
    name: String,
    namespace: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

impl Incoming {
    fn canary(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

fn answer(code: StatusCode, text: impl Into<String>) -> Response {
    (code, text.into()).into_response()
}

/// A call refused before anything changed.
struct Refusal {
    code: StatusCode,
    text: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if self.code == StatusCode::UNAUTHORIZED {
            (
                self.code,
                [(http::header::WWW_AUTHENTICATE, "Bearer")],
                self.text,
            )
                .into_response()
        } else {
            (self.code, self.text).into_response()
        }
    }
}

fn parse(body: &Bytes) -> Result<Incoming, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal {
        code: StatusCode::BAD_REQUEST,
        text: format!("the body must be a webhook payload with name and namespace: {e}"),
    })
}

/// Checks the controller's signature when a webhook secret is configured.
fn verify(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<(), Refusal> {
    let Some(secret) = &shared.webhook_secret else {
        return Ok(());
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    crate::hooks::verify(
        secret,
        header(crate::hooks::TIMESTAMP_HEADER),
        header(crate::hooks::SIGNATURE_HEADER),
        body,
        jiff::Timestamp::now().as_second(),
        SIGNATURE_TOLERANCE_SECONDS,
    )
    .map_err(|error| {
        shared
            .counters
            .bad_signatures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, "refused an unsigned or badly signed webhook call");
        Refusal {
            code: StatusCode::UNAUTHORIZED,
            text: error.to_string(),
        }
    })
}

/// A call from the controller: its signature checked (when a secret is set), then its payload.
fn signed_payload(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<Incoming, Refusal> {
    verify(shared, headers, body)?;
    parse(body)
}

/// Compares without stopping at the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The identity behind the request's bearer token.
fn caller(shared: &Shared, headers: &HeaderMap) -> Result<String, Refusal> {
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let found = presented.and_then(|token| {
        shared
            .tokens
            .iter()
            .find(|(_, known)| same(known.as_bytes(), token.as_bytes()))
            .map(|(identity, _)| identity.clone())
    });
    found.ok_or_else(|| {
        shared.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        let reason = if presented.is_some() {
            "the bearer token is not valid"
        } else {
            "a bearer token is required"
        };
        tracing::warn!(reason, "refused a state change");
        Refusal {
            code: StatusCode::UNAUTHORIZED,
            text: reason.into(),
        }
    })
}

async fn check(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
    switch: Switch,
) -> Response {
    let incoming = match signed_payload(&shared, &headers, &body) {
        Ok(incoming) => incoming,
        Err(refusal) => return refusal.into_response(),
    };
    let switches = shared.gates.get(&incoming.canary());
    let open = match switch {
        Switch::Gate => switches.gate_open,
        Switch::Rollback => switches.rollback_open,
    };
    if open {
        answer(StatusCode::OK, format!("{} open", switch.as_str()))
    } else {
        answer(StatusCode::FORBIDDEN, format!("{} closed", switch.as_str()))
    }
}

async fn fixed(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
    open: bool,
) -> Response {
    if let Err(refusal) = verify(&shared, &headers, &body) {
        return refusal.into_response();
    }
    if open {
        answer(StatusCode::OK, "approved")
    } else {
        answer(StatusCode::FORBIDDEN, "halted")
    }
}

async fn change(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
    switch: Switch,
    open: bool,
) -> Response {
    // Authentication first: an anonymous caller learns nothing, not even about the body.
    let who = match caller(&shared, &headers) {
        Ok(who) => who,
        Err(refusal) => return refusal.into_response(),
    };
    let incoming = match parse(&body) {
        Ok(incoming) => incoming,
        Err(refusal) => return refusal.into_response(),
    };
    let changed = shared.gates.set(&incoming.canary(), switch, open);
    let state = if open { "opened" } else { "closed" };
    shared.counters.changes.fetch_add(1, Ordering::Relaxed);
    let reason = match (switch, open) {
        (Switch::Gate, true) => Reason::GateOpened,
        (Switch::Gate, false) => Reason::GateClosed,
        (Switch::Rollback, true) => Reason::RollbackOpened,
        (Switch::Rollback, false) => Reason::RollbackClosed,
    };
    let note = format!(
        "{} {state} by {who} through the loadtester{}",
        switch.as_str(),
        if changed { "" } else { " (it already was)" }
    );
    shared
        .audit
        .record(&incoming.namespace, &incoming.name, reason, &note)
        .await;
    answer(StatusCode::OK, format!("{} {state}", switch.as_str()))
}

async fn start_load(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = match signed_payload(&shared, &headers, &body) {
        Ok(incoming) => incoming,
        Err(refusal) => return refusal.into_response(),
    };
    let request = match LoadRequest::from_metadata(&incoming.metadata) {
        Ok(request) => request,
        Err(error) => return answer(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let canary = incoming.canary();
    let key = request.key(&canary);
    match shared
        .runs
        .start(RunRecord::started(key.clone(), &canary, &request.plan))
    {
        Start::Started => {}
        Start::Deduplicated => {
            shared
                .counters
                .loads_deduplicated
                .fetch_add(1, Ordering::Relaxed);
            return answer(StatusCode::OK, "the same load is already running");
        }
        Start::Full => {
            return answer(
                StatusCode::TOO_MANY_REQUESTS,
                format!("{} loads are running already", load::MAX_RUNNING),
            )
        }
    }
    shared
        .counters
        .loads_started
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(canary = %canary, url = %request.plan.uri, rps = request.plan.rps, duration = ?request.plan.duration, "load started");
    let run = {
        let shared = shared.clone();
        let plan = request.plan.clone();
        async move {
            let report = crate::loadgen::run(plan, shared.stop.clone()).await;
            let counters = &shared.counters;
            counters.load_ok.fetch_add(report.ok, Ordering::Relaxed);
            counters
                .load_failed
                .fetch_add(report.failed, Ordering::Relaxed);
            counters
                .load_dropped
                .fetch_add(report.dropped, Ordering::Relaxed);
            let record = shared.runs.finish(&key, &report);
            tracing::info!(canary = %canary, ok = report.ok, failed = report.failed, dropped = report.dropped, "load finished");
            record
        }
    };
    // Always its own task: a caller that gives up on a blocking call must not cancel the run
    // halfway and leave it registered as running.
    let task = tokio::spawn(run);
    if request.blocking {
        match task.await {
            Ok(Some(record)) => (StatusCode::OK, Json(record)).into_response(),
            _ => answer(StatusCode::INTERNAL_SERVER_ERROR, "the run was lost"),
        }
    } else {
        answer(StatusCode::ACCEPTED, "load started")
    }
}

async fn runs(State(shared): State<Arc<Shared>>) -> Json<Vec<RunRecord>> {
    Json(shared.runs.all())
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = crate::exposition::render(&shared.registry);
    (
        [(http::header::CONTENT_TYPE, crate::exposition::CONTENT_TYPE)],
        text,
    )
        .into_response()
}
