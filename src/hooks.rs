//! Webhooks: the HTTP calls a rollout makes to load testers, gates and listeners.
//!
//! A webhook with a `secretRef` is signed: `X-Aviary-Timestamp` carries the Unix time in
//! seconds and `X-Aviary-Signature` is `sha256=` followed by the hex HMAC-SHA256, under the
//! shared secret, of the timestamp, a dot and the exact body. Receivers recompute it, compare in
//! constant time and refuse old timestamps, so a captured request cannot be replayed later.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::api::HookType;
use crate::engine::HookOutcome;
use crate::plan::Webhook;

/// The JSON body every webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct HookPayload {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub checksum: String,
    pub metadata: BTreeMap<String, String>,
}

pub const TIMESTAMP_HEADER: &str = "x-aviary-timestamp";
pub const SIGNATURE_HEADER: &str = "x-aviary-signature";

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed (no {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header)")]
    Missing,
    #[error("{TIMESTAMP_HEADER} {0:?} is not a Unix time")]
    BadTimestamp(String),
    #[error("the signature is {0}s away from now, beyond the {1}s tolerance")]
    Stale(i64, i64),
    #[error("the signature does not match the body under the shared secret")]
    Mismatch,
}

/// Checks a signed request as a receiver would: fresh timestamp, matching HMAC.
pub fn verify(
    key: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp(timestamp.to_string()))?;
    let skew = now.abs_diff(sent);
    if skew > tolerance_seconds.unsigned_abs() {
        return Err(SignatureError::Stale(
            i64::try_from(skew).unwrap_or(i64::MAX),
            tolerance_seconds,
        ));
    }
    let hex = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Mismatch)?;
    let Some(claimed) = decode_hex(hex) else {
        return Err(SignatureError::Mismatch);
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(sent.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&claimed)
        .map_err(|_| SignatureError::Mismatch)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

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
}

impl Default for HookClient {
    fn default() -> Self {
        // Per-hook timeouts are applied per request; this one only bounds a runaway call.
        HookClient {
            http: crate::http_client::client(Duration::from_secs(300)),
        }
    }
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
            let mut request = self
                .http
                .post(hook.url.clone())
                .timeout(hook.timeout)
                .header(http::header::CONTENT_TYPE, "application/json");
            if let Some(key) = &key {
                // Signed per attempt, so a retry carries a fresh timestamp.
                let timestamp = jiff::Timestamp::now().as_second();
                request = request
                    .header(TIMESTAMP_HEADER, timestamp.to_string())
                    .header(SIGNATURE_HEADER, sign(key, timestamp, &bytes));
            }
            match request.body(bytes.clone()).send().await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_secret_only_and_only_while_fresh() {
        let body = br#"{"name":"podinfo"}"#;
        let header = sign(b"shared", 1_800_000_000, body);
        let check = |key: &[u8], body: &[u8], now| {
            verify(key, Some("1800000000"), Some(&header), body, now, 300)
        };
        assert_eq!(check(b"shared", body, 1_800_000_010), Ok(()));
        assert_eq!(
            check(b"another", body, 1_800_000_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(b"shared", br#"{"name":"evil"}"#, 1_800_000_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(b"shared", body, 1_800_001_000),
            Err(SignatureError::Stale(1000, 300))
        );
        assert_eq!(
            verify(b"shared", None, Some(&header), body, 0, 300),
            Err(SignatureError::Missing)
        );
    }
}
