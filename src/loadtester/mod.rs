//! `aviary loadtester`: the service `rollout` webhooks call to generate load, and the manual gates
//! people open and close. Unlike Flagger's, every state-changing endpoint needs a bearer token,
//! and every change is recorded with who made it (a Kubernetes Event on the Canary, or the log).
//! With a webhook secret, calls from the controller must also carry a valid signature, and a
//! signature is accepted once. `POST /` needs that signature or a token unless
//! `--insecure-allow-unsigned-load` says otherwise, and sends load only to allowed targets
//! ([`targets`]).

mod audit;
mod calls;
mod gates;
mod load;
mod metrics;
mod targets;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::watch;

use crate::api::Reason;

pub use audit::Audit;
pub use gates::{Gates, Switch};
pub use load::{LoadError, LoadRequest, RunRecord, Runs, Start};
pub use targets::Targets;

use calls::{answer, caller, load_caller, parse, signed_payload, verify, Call};

/// Signatures remembered for replay refusal (each for the tolerance).
const REPLAY_MEMORY: usize = 100_000;

pub struct LoadtesterConfig {
    pub listen: String,
    /// `(identity, token)`: who may open and close gates.
    pub tokens: Vec<(String, String)>,
    /// When set, webhook calls (load, checks) must be signed with it.
    pub webhook_secret: Option<Vec<u8>>,
    /// Where loads may go.
    pub targets: Targets,
    /// `POST /` without a signature or token is served (an explicit, insecure choice).
    pub allow_unsigned_load: bool,
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
    targets: Targets,
    allow_unsigned_load: bool,
    replays: crate::signature::ReplayGuard,
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
        targets: config.targets,
        allow_unsigned_load: config.allow_unsigned_load,
        replays: crate::signature::ReplayGuard::new(REPLAY_MEMORY),
        gates,
        runs: started,
        counters,
        registry,
        audit: config.audit,
        stop: stop.clone(),
    });
    let app = Router::new()
        .route("/", post(start_load))
        .route("/gate/check", post(|s, r| check(s, r, Switch::Gate)))
        .route(
            "/rollback/check",
            post(|s, r| check(s, r, Switch::Rollback)),
        )
        .route("/gate/approve", post(|s, r| fixed(s, r, true)))
        .route("/gate/halt", post(|s, r| fixed(s, r, false)))
        .route("/gate/open", post(|s, r| change(s, r, Switch::Gate, true)))
        .route(
            "/gate/close",
            post(|s, r| change(s, r, Switch::Gate, false)),
        )
        .route(
            "/rollback/open",
            post(|s, r| change(s, r, Switch::Rollback, true)),
        )
        .route(
            "/rollback/close",
            post(|s, r| change(s, r, Switch::Rollback, false)),
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

async fn check(State(shared): State<Arc<Shared>>, request: Request, switch: Switch) -> Response {
    let incoming = match Call::read(request).await {
        Ok(call) => signed_payload(&shared, &call),
        Err(refusal) => Err(refusal),
    };
    let incoming = match incoming {
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

async fn fixed(State(shared): State<Arc<Shared>>, request: Request, open: bool) -> Response {
    let verified = match Call::read(request).await {
        Ok(call) => verify(&shared, &call),
        Err(refusal) => Err(refusal),
    };
    if let Err(refusal) = verified {
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
    request: Request,
    switch: Switch,
    open: bool,
) -> Response {
    // Authentication first: an anonymous caller learns nothing, not even about the body.
    let (parts, body) = request.into_parts();
    let who = match caller(&shared, &parts.headers) {
        Ok(who) => who,
        Err(refusal) => return refusal.into_response(),
    };
    let incoming = match Call::read(Request::from_parts(parts, body)).await {
        Ok(call) => parse(&call.body),
        Err(refusal) => Err(refusal),
    };
    let incoming = match incoming {
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

async fn start_load(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let incoming = match Call::read(request).await {
        Ok(call) => load_caller(&shared, &call),
        Err(refusal) => Err(refusal),
    };
    let incoming = match incoming {
        Ok(incoming) => incoming,
        Err(refusal) => return refusal.into_response(),
    };
    let request = match LoadRequest::from_metadata(&incoming.metadata) {
        Ok(request) => request,
        Err(error) => return answer(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let host = request.plan.uri.host().unwrap_or_default();
    let port = request.plan.uri.port_u16().unwrap_or(80);
    if let Err(reason) = shared.targets.check(host, port).await {
        tracing::warn!(%reason, "refused a load target");
        return answer(StatusCode::FORBIDDEN, format!("metadata.url: {reason}"));
    }
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
