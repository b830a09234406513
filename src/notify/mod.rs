//! Notifications: rollout events posted to Slack, Microsoft Teams, Discord, Google Chat or any
//! endpoint that takes JSON. Sending never holds a rollout up: every post runs on its own task
//! with a short timeout, and a full queue drops the post with a log line instead of waiting.

mod formats;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::api::AlertSeverity;

/// The AlertProvider types Aviary posts to (Rocket.Chat takes Slack's format).
pub const KINDS: [&str; 6] = ["slack", "rocket", "msteams", "discord", "gchat", "generic"];

/// How long one post may take before it is abandoned.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Posts in flight at once; beyond this, new ones are dropped (a hanging receiver cannot pile
/// up tasks without bound).
const MAX_IN_FLIGHT: usize = 64;

/// One event to tell people about.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub severity: AlertSeverity,
    pub reason: String,
    /// What happened and why: the engine's message carries metric values and failed hooks.
    pub message: String,
    /// Extra facts shown beside the message (weight, failed checks, revision).
    pub fields: Vec<(String, String)>,
}

/// Where one provider posts, with its secrets already read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Channel {
    /// One of [`KINDS`].
    pub kind: String,
    pub address: String,
    pub channel: Option<String>,
    pub username: Option<String>,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
    pub proxy: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("alert provider type {0:?} is not supported; use one of slack, rocket, msteams, discord, gchat, generic")]
    UnknownKind(String),
    #[error("proxy {0:?}: {1}")]
    Proxy(String, String),
    #[error("{address} did not answer within {POST_TIMEOUT:?}")]
    Timeout { address: String },
    #[error("{address}: {reason}")]
    Failed { address: String, reason: String },
}

/// An address as logs and errors may show it: Slack, Teams and Discord carry their secret in the
/// path (and a proxy may carry a password), so only the scheme, host and port are kept.
pub fn redacted(address: &str) -> String {
    let Ok(url) = reqwest::Url::parse(address) else {
        return "(an address that is not a URL)".to_string();
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let hidden = url.path() != "/" || url.query().is_some() || !url.username().is_empty();
    let host = url.host_str().unwrap_or_default();
    format!(
        "{}://{host}{port}{}",
        url.scheme(),
        if hidden { "/…" } else { "" }
    )
}

/// Posts notifications; cheap to clone, one HTTP client per proxy.
#[derive(Clone)]
pub struct Notifier {
    clients: Arc<Mutex<HashMap<Option<String>, reqwest::Client>>>,
    in_flight: Arc<Semaphore>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            clients: Default::default(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }
}

impl Notifier {
    fn client(&self, proxy: Option<&str>) -> Result<reqwest::Client, NotifyError> {
        let mut clients = self.clients.lock();
        let key = proxy.map(str::to_string);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = crate::http_client::builder(POST_TIMEOUT);
        if let Some(address) = proxy {
            let proxy = reqwest::Proxy::all(address)
                .map_err(|e| NotifyError::Proxy(redacted(address), e.to_string()))?;
            builder = builder.proxy(proxy);
        }
        let client = builder
            .build()
            .map_err(|e| NotifyError::Proxy(redacted(proxy.unwrap_or_default()), e.to_string()))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Posts one notification and waits for the answer (at most the post timeout).
    pub async fn post(&self, channel: &Channel, note: &Notification) -> Result<(), NotifyError> {
        if !KINDS.contains(&channel.kind.as_str()) {
            return Err(NotifyError::UnknownKind(channel.kind.clone()));
        }
        let client = self.client(channel.proxy.as_deref())?;
        let body = formats::body(&channel.kind, channel, note);
        let mut request = client.post(&channel.address).json(&body);
        if let Some(token) = &channel.token {
            request = request.bearer_auth(token);
        }
        let address = redacted(&channel.address);
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(NotifyError::Failed {
                address,
                reason: format!("status {}", response.status().as_u16()),
            }),
            Err(error) if error.is_timeout() => Err(NotifyError::Timeout { address }),
            Err(error) => Err(NotifyError::Failed {
                address,
                reason: error.without_url().to_string(),
            }),
        }
    }

    /// Posts in the background; failures are logged. Returns at once.
    pub fn send(&self, channel: Channel, note: Notification) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(address = %redacted(&channel.address), reason = %note.reason, "too many notifications in flight; dropping one");
            return;
        };
        let notifier = self.clone();
        tokio::spawn(async move {
            if let Err(error) = notifier.post(&channel, &note).await {
                tracing::warn!(%error, kind = %channel.kind, canary = %note.name, reason = %note.reason, "notification not delivered");
            }
            drop(permit);
        });
    }
}

/// Whether an alert configured at `minimum` hears an event of `severity`.
pub fn passes(minimum: AlertSeverity, severity: AlertSeverity) -> bool {
    severity >= minimum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_logs_and_errors_keep_no_secret() {
        let slack = "https://hooks.slack.com/services/T000/B000/s3cretToken";
        assert_eq!(redacted(slack), "https://hooks.slack.com/…");
        assert_eq!(
            redacted("http://user:pass@proxy:3128"),
            "http://proxy:3128/…"
        );
        assert_eq!(redacted("http://receiver:8080/"), "http://receiver:8080");
        assert!(!redacted("not a url s3cretToken").contains("s3cret"));
    }

    fn note(severity: AlertSeverity) -> Notification {
        Notification {
            name: "podinfo".into(),
            namespace: "test".into(),
            phase: "Failed".into(),
            severity,
            reason: "RolledBack".into(),
            message: "Rolled back podinfo.test: request-success-rate 91.2 < 99".into(),
            fields: vec![("Weight".into(), "0".into())],
        }
    }

    #[test]
    fn severity_is_a_minimum() {
        use AlertSeverity::*;
        assert!(passes(Info, Warn) && passes(Warn, Error) && passes(Error, Error));
        assert!(!passes(Warn, Info) && !passes(Error, Warn));
    }

    #[test]
    fn each_kind_carries_the_message_and_its_facts() {
        let channel = Channel {
            channel: Some("#deploys".into()),
            username: Some("aviary".into()),
            ..Channel::default()
        };
        let n = note(AlertSeverity::Error);
        for kind in KINDS {
            let text = formats::body(kind, &channel, &n).to_string();
            assert!(
                text.contains("request-success-rate 91.2 < 99"),
                "{kind}: {text}"
            );
            assert!(text.contains("Weight"), "{kind}: {text}");
        }
        let slack = formats::body("slack", &channel, &n);
        assert_eq!(slack["channel"], "#deploys");
        assert_eq!(slack["attachments"][0]["color"], "#a30200");
        let generic = formats::body("generic", &channel, &n);
        assert_eq!(generic["severity"], "error");
        assert_eq!(generic["metadata"]["Weight"], "0");
    }
}
