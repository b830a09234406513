//! An HTTP receiver a test controls: it records every call (path, headers, body) and answers
//! each path with the status the test sets (200 by default). Paths under `/hang` never answer
//! in time.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
}

impl Call {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<Call>>,
    answers: Mutex<HashMap<String, (u16, String)>>,
}

#[derive(Clone)]
pub struct Receiver {
    /// `host:port`
    pub address: String,
    inner: Arc<Inner>,
}

async fn record(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    inner.calls.lock().push(Call {
        path: path.clone(),
        headers,
        body,
    });
    if path.starts_with("/hang") {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    let (code, text) = inner
        .answers
        .lock()
        .get(&path)
        .cloned()
        .unwrap_or((200, "ok".into()));
    (StatusCode::from_u16(code).unwrap(), text)
}

impl Receiver {
    pub fn start() -> Receiver {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(inner.clone());
        let address = super::serve_on_own_thread(app);
        Receiver { address, inner }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Answers `path` with `code` and `body` from now on.
    pub fn answer(&self, path: &str, code: u16, body: &str) {
        self.inner
            .answers
            .lock()
            .insert(path.to_string(), (code, body.to_string()));
    }

    pub fn calls(&self, path: &str) -> Vec<Call> {
        self.inner
            .calls
            .lock()
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }
}

impl Receiver {
    /// The calls to `path` once `done` holds for them, waiting up to `limit`: posts arrive
    /// concurrently, so a test asserts on a receiver only after waiting for that receiver.
    pub async fn calls_once(
        &self,
        path: &str,
        limit: Duration,
        done: impl Fn(&[Call]) -> bool,
    ) -> Vec<Call> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let calls = self.calls(path);
            if done(&calls) {
                return calls;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} did not hear what the test waits for within {limit:?}; it heard:\n{}",
                calls
                    .iter()
                    .map(Self::describe)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One call in a line, for assertion messages.
    pub fn describe(call: &Call) -> String {
        format!("{} {}", call.path, String::from_utf8_lossy(&call.body))
    }
}
