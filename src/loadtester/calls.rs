//! How a call to the loadtester is read and who may make it: the body within its limits, the
//! controller's signature (accepted once), a token's holder.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::Shared;

/// How far a signed call's timestamp may be from now.
const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;
/// The largest request body read; a webhook payload is a few hundred bytes.
const MAX_REQUEST_BODY: usize = 64 * 1024;
/// How long a caller may take to send its body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The parts of a webhook payload the loadtester reads.
#[derive(Debug, Deserialize)]
pub(super) struct Incoming {
    pub(super) name: String,
    pub(super) namespace: String,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, String>,
}

impl Incoming {
    pub(super) fn canary(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

pub(super) fn answer(code: StatusCode, text: impl Into<String>) -> Response {
    (code, text.into()).into_response()
}

/// A call refused before anything changed.
pub(super) struct Refusal {
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

pub(super) fn parse(body: &Bytes) -> Result<Incoming, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal {
        code: StatusCode::BAD_REQUEST,
        text: format!("the body must be a webhook payload with name and namespace: {e}"),
    })
}

pub(super) fn refused(code: StatusCode, text: impl Into<String>) -> Refusal {
    Refusal {
        code,
        text: text.into(),
    }
}

/// One call as received: what a signature covers, with the body read within its size and
/// time limits (a slow or huge body is refused, never waited on).
pub(super) struct Call {
    method: String,
    path: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

impl Call {
    pub(super) async fn read(request: Request) -> Result<Call, Refusal> {
        let (parts, body) = request.into_parts();
        let read = axum::body::to_bytes(body, MAX_REQUEST_BODY);
        let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) => {
                let text = format!("the body must be at most {MAX_REQUEST_BODY} bytes");
                return Err(refused(StatusCode::PAYLOAD_TOO_LARGE, text));
            }
            Err(_) => {
                return Err(refused(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body was too slow",
                ))
            }
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        Ok(Call {
            method: parts.method.to_string(),
            path: path.to_string(),
            headers: parts.headers,
            body,
        })
    }
}

/// Checks the controller's signature when a webhook secret is configured; a signature is
/// accepted once.
pub(super) fn verify(shared: &Shared, call: &Call) -> Result<(), Refusal> {
    let Some(secret) = &shared.webhook_secret else {
        return Ok(());
    };
    let header = |name: &str| call.headers.get(name).and_then(|v| v.to_str().ok());
    let presented = crate::signature::Presented {
        timestamp: header(crate::signature::TIMESTAMP_HEADER),
        nonce: header(crate::signature::NONCE_HEADER),
        signature: header(crate::signature::SIGNATURE_HEADER),
    };
    let now = jiff::Timestamp::now().as_second();
    let tolerance = SIGNATURE_TOLERANCE_SECONDS;
    crate::signature::verify(
        secret,
        presented,
        &call.method,
        &call.path,
        &call.body,
        now,
        tolerance,
    )
    .and_then(|()| {
        let signature = presented.signature.unwrap_or_default();
        shared
            .replays
            .first_use(signature, now, now + 2 * tolerance)
    })
    .map_err(|error| {
        shared
            .counters
            .bad_signatures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, "refused an unsigned, badly signed or replayed webhook call");
        refused(StatusCode::UNAUTHORIZED, error.to_string())
    })
}

/// A call from the controller: its signature checked (when a secret is set), then its payload.
pub(super) fn signed_payload(shared: &Shared, call: &Call) -> Result<Incoming, Refusal> {
    verify(shared, call)?;
    parse(&call.body)
}

/// Who may start a load: a signed call when a secret is set; else a token's holder; else
/// anyone, only when the operator said so.
pub(super) fn load_caller(shared: &Shared, call: &Call) -> Result<Incoming, Refusal> {
    if shared.webhook_secret.is_some() {
        return signed_payload(shared, call);
    }
    if !shared.allow_unsigned_load {
        caller(shared, &call.headers).map_err(|refusal| Refusal {
            text: format!("{}: POST / needs a signed call (--webhook-secret-file) or a bearer token; --insecure-allow-unsigned-load serves anyone", refusal.text),
            ..refusal
        })?;
    }
    parse(&call.body)
}

/// Compares without stopping at the first differing byte.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The identity behind the request's bearer token.
pub(super) fn caller(shared: &Shared, headers: &HeaderMap) -> Result<String, Refusal> {
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
