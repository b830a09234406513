//! Webhooks: the HTTP calls a rollout makes to load testers, gates and listeners.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::api::{CanaryWebhook, HookType};
use crate::engine::HookOutcome;

/// The JSON body every webhook receives.
#[derive(Debug, Clone, Serialize)]
pub struct HookPayload {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub checksum: String,
    pub metadata: BTreeMap<String, String>,
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
    pub async fn call(&self, hook: &CanaryWebhook, payload: &HookPayload) -> HookOutcome {
        let mut body = payload.clone();
        for (key, value) in &hook.metadata {
            body.metadata
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        let attempts = 1 + hook.retries.unwrap_or(0).max(0) as usize;
        let mut message = String::new();
        for attempt in 1..=attempts {
            match self
                .http
                .post(&hook.url)
                .timeout(hook.timeout())
                .json(&body)
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
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
                    message = format!("no answer from {} within {:?}", hook.url, hook.timeout());
                }
                Err(error) => message = format!("{} unreachable: {error}", hook.url),
            }
            if attempt < attempts {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        tracing::debug!(hook = %hook.name, kind = hook.r#type.as_str(), %message, "webhook failed");
        HookOutcome {
            name: hook.name.clone(),
            ok: false,
            message,
        }
    }

    /// Calls every webhook of `kind` at once and returns their outcomes in spec order.
    pub async fn run(
        &self,
        hooks: &[CanaryWebhook],
        kind: HookType,
        payload: &HookPayload,
    ) -> Vec<HookOutcome> {
        let calls = hooks
            .iter()
            .filter(|hook| hook.r#type == kind)
            .map(|hook| self.call(hook, payload));
        futures::future::join_all(calls).await
    }
}
