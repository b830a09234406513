//! Webhooks: the HTTP calls a rollout makes to load testers, gates and listeners.
//!
//! A webhook with a `secretRef` is signed ([`crate::signature`] says how).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::api::HookType;
use crate::engine::HookOutcome;
use crate::plan::Webhook;
use crate::signature;

/// The JSON body every webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct HookPayload {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub checksum: String,
    pub metadata: BTreeMap<String, String>,
}

pub use crate::signature::{
    verify, SignatureError, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

/// The signing key of a webhook: `Ok(None)` when it is not signed, `Err` when its Secret or
/// key cannot be read (the call then fails without being made).
pub type KeyLookup<'a> = &'a (dyn Fn(&Webhook) -> Result<Option<Vec<u8>>, String> + Sync);

/// Keys for runs without a cluster: a `secretRef` cannot be resolved there.
pub fn no_secrets(hook: &Webhook) -> Result<Option<Vec<u8>>, String> {
    match &hook.secret {
        None => Ok(None),
        Some((secret, _)) => Err(format!(
            "webhook {}: secretRef {secret} needs a cluster to read the Secret from",
            hook.name
        )),
    }
}

/// How much of a failing response body goes into the outcome message.
const BODY_EXCERPT: usize = 300;
/// Pause between retries of a failed call.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct HookClient {
    http: reqwest::Client,
    /// For hooks with `disableTLS`: the same, without verifying the receiver's certificate.
    unverified: reqwest::Client,
}

/// Per-hook timeouts are applied per request; this one only bounds a runaway call.
const RUNAWAY_CALL: Duration = Duration::from_secs(300);

impl Default for HookClient {
    fn default() -> Self {
        let unverified = crate::http_client::builder(RUNAWAY_CALL)
            .danger_accept_invalid_certs(true)
            .build()
            .expect("an HTTP client with a timeout, a redirect policy and no verification builds");
        HookClient {
            http: crate::http_client::client(RUNAWAY_CALL),
            unverified,
        }
    }
}

/// `request` with its signature headers, made per attempt, so a retry carries a fresh
/// timestamp and nonce (a receiver refuses a signature it has seen).
fn signed(
    request: reqwest::RequestBuilder,
    key: &[u8],
    url: &reqwest::Url,
    bytes: &[u8],
) -> reqwest::RequestBuilder {
    let (timestamp, nonce) = (jiff::Timestamp::now().as_second(), signature::nonce());
    let path = signature::request_path(url);
    let signed = signature::Signed {
        method: "POST",
        path: &path,
        timestamp,
        nonce: &nonce,
        body: bytes,
    };
    request
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(NONCE_HEADER, &nonce)
        .header(SIGNATURE_HEADER, signature::sign(key, &signed))
}

impl HookClient {
    /// Calls one webhook, with its retries; success is an answer with status 202 or lower.
    pub async fn call(
        &self,
        hook: &Webhook,
        payload: &HookPayload,
        keys: KeyLookup<'_>,
    ) -> HookOutcome {
        let mut body = payload.clone();
        for (key, value) in &hook.metadata {
            body.metadata
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        let failed = |message: String| HookOutcome {
            name: hook.name.clone(),
            ok: false,
            message,
        };
        let key = match keys(hook) {
            Ok(key) => key,
            Err(message) => return failed(message),
        };
        let bytes = match serde_json::to_vec(&body) {
            Ok(bytes) => bytes,
            Err(error) => return failed(format!("cannot encode the payload: {error}")),
        };
        let attempts = 1 + hook.retries as usize;
        let mut message = String::new();
        for attempt in 1..=attempts {
            let http = if hook.disable_tls {
                &self.unverified
            } else {
                &self.http
            };
            let mut request = http
                .post(hook.url.clone())
                .timeout(hook.timeout)
                .header(http::header::CONTENT_TYPE, "application/json");
            if let Some(key) = &key {
                request = signed(request, key, &hook.url, &bytes);
            }
            let sent = std::time::Instant::now();
            let answer = request.body(bytes.clone()).send().await;
            crate::latency::WEBHOOKS.observe(sent.elapsed());
            match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Only the start of an answer is kept; a huge one is not read on.
                    let body =
                        crate::http_client::read_limited(response, crate::http_client::MAX_BODY)
                            .await;
                    let text = body
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    if status <= 202 {
                        return HookOutcome {
                            name: hook.name.clone(),
                            ok: true,
                            message: format!("status {status}"),
                        };
                    }
                    let excerpt: String = text.trim().chars().take(BODY_EXCERPT).collect();
                    message = if excerpt.is_empty() {
                        format!("status {status}")
                    } else {
                        format!("status {status}: {excerpt}")
                    };
                }
                Err(error) if error.is_timeout() => {
                    message = format!("no answer from {} within {:?}", hook.url, hook.timeout);
                }
                Err(error) => message = format!("{} unreachable: {error}", hook.url),
            }
            if attempt < attempts {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        tracing::debug!(hook = %hook.name, kind = hook.kind.as_str(), %message, "webhook failed");
        failed(message)
    }

    /// Calls every webhook of `kind` at once and returns their outcomes in spec order.
    pub async fn run(
        &self,
        hooks: &[Webhook],
        kind: HookType,
        payload: &HookPayload,
        keys: KeyLookup<'_>,
    ) -> Vec<HookOutcome> {
        let calls = hooks
            .iter()
            .filter(|hook| hook.kind == kind)
            .map(|hook| self.call(hook, payload, keys));
        futures::future::join_all(calls).await
    }
}

impl HookPayload {
    /// What `event` webhooks receive: the payload plus the event, in Flagger's metadata keys.
    pub fn for_event(&self, kind: &str, message: &str, now: jiff::Timestamp) -> HookPayload {
        let mut payload = self.clone();
        payload
            .metadata
            .insert("eventMessage".into(), message.to_string());
        payload
            .metadata
            .insert("eventType".into(), kind.to_string());
        payload
            .metadata
            .insert("timestamp".into(), now.as_millisecond().to_string());
        payload
    }
}
