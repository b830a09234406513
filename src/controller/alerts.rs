//! Who hears about a rollout besides the Kubernetes Event and the `event` webhooks: the alert
//! providers of `analysis.alerts` (or the controller's default), and the signing keys of
//! webhooks. Notifications run on their own task, so a slow or broken receiver never delays a
//! reconcile.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::api::{
    AlertProvider, AlertSeverity, Canary, CanaryAlert, CanaryStatus, CrossNamespaceRef,
};
use crate::engine::Event;
use crate::notify::{self, Channel, Notification, Notifier};
use crate::plan::{Plan, Webhook};

/// The provider every canary without `analysis.alerts` reports to.
#[derive(Debug, Clone)]
pub struct DefaultAlert {
    pub provider: CrossNamespaceRef,
    pub severity: AlertSeverity,
}

#[derive(Clone)]
pub struct Announcer {
    pub client: Client,
    pub notifier: Notifier,
    pub default_alert: Option<DefaultAlert>,
}

/// The bytes of one key of a watched Secret.
fn secret_value(
    secrets: &Store<Secret>,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Vec<u8>, String> {
    let secret = secrets
        .get(&ObjectRef::new(name).within(namespace))
        .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.clone())
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key {key:?}"))
}

/// The signing key of `hook`, read from the canary's namespace.
pub fn webhook_key(
    secrets: &Store<Secret>,
    namespace: &str,
    hook: &Webhook,
) -> Result<Option<Vec<u8>>, String> {
    let Some((secret, key)) = &hook.secret else {
        return Ok(None);
    };
    let value = secret_value(secrets, namespace, secret, key)
        .map_err(|reason| format!("webhook {} secretRef: {reason}", hook.name))?;
    // Trimmed as the loadtester trims its secret file: a Secret made from a file often ends
    // in a newline that is not part of the secret.
    let key = value.trim_ascii().to_vec();
    if key.is_empty() {
        return Err(format!(
            "webhook {} secretRef: key {key:?} of Secret {secret} is empty",
            hook.name
        ));
    }
    Ok(Some(key))
}

impl Announcer {
    /// Sends `event` to the alert providers, in the background.
    pub fn announce(&self, canary: &Canary, plan: &Plan, status: &CanaryStatus, event: &Event) {
        let namespace = canary.namespace().unwrap_or_default();
        let alerts: Vec<CanaryAlert> = match plan.analysis.alerts.as_slice() {
            alerts if !alerts.is_empty() => alerts.to_vec(),
            _ => match &self.default_alert {
                Some(default) => vec![CanaryAlert {
                    name: "default".into(),
                    severity: default.severity,
                    provider_ref: default.provider.clone(),
                }],
                None => return,
            },
        };
        let alerts: Vec<CanaryAlert> = alerts
            .into_iter()
            .filter(|a| notify::passes(a.severity, event.severity))
            .collect();
        if alerts.is_empty() {
            return;
        }
        let note = Notification {
            name: canary.name_any(),
            namespace: namespace.clone(),
            phase: status.phase.as_str().to_string(),
            severity: event.severity,
            reason: event.reason.to_string(),
            message: event.message.clone(),
            fields: vec![
                ("Phase".into(), status.phase.as_str().into()),
                ("Canary weight".into(), status.canary_weight.to_string()),
                ("Failed checks".into(), status.failed_checks.to_string()),
                (
                    "Revision".into(),
                    status.last_applied_spec.clone().unwrap_or_default(),
                ),
            ],
        };
        let announcer = self.clone();
        tokio::spawn(async move {
            for alert in alerts {
                match announcer.channel(&namespace, &alert.provider_ref).await {
                    Ok(channel) => announcer.notifier.send(channel, note.clone()),
                    Err(reason) => {
                        tracing::warn!(canary = %note.name, alert = %alert.name, %reason, "cannot notify")
                    }
                }
            }
        });
    }

    /// An AlertProvider and its Secret, both read when an alert is sent (alerts are rare).
    async fn channel(
        &self,
        namespace: &str,
        reference: &CrossNamespaceRef,
    ) -> Result<Channel, String> {
        let namespace = reference.namespace.as_deref().unwrap_or(namespace);
        let api: Api<AlertProvider> = Api::namespaced(self.client.clone(), namespace);
        let provider = api
            .get_opt(&reference.name)
            .await
            .map_err(|e| format!("AlertProvider {namespace}/{}: {e}", reference.name))?
            .ok_or_else(|| format!("AlertProvider {namespace}/{} not found", reference.name))?;
        let spec = provider.spec;
        let mut from_secret = BTreeMap::new();
        if let Some(secret) = &spec.secret_ref {
            // Read when an alert is sent, never cached: it may hold a webhook URL's secret.
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            let not_found = || {
                format!(
                    "Secret {namespace}/{} of AlertProvider {} not found",
                    secret.name, reference.name
                )
            };
            let stored = secrets
                .get_opt(&secret.name)
                .await
                .map_err(|e| format!("Secret {namespace}/{}: {e}", secret.name))?
                .ok_or_else(not_found)?;
            for (key, value) in stored.data.clone().unwrap_or_default() {
                from_secret.insert(key, String::from_utf8_lossy(&value.0).trim().to_string());
            }
        }
        let pick = |key: &str, fallback: &Option<String>| {
            from_secret.get(key).cloned().or_else(|| fallback.clone())
        };
        let address = pick("address", &spec.address).ok_or_else(|| {
            format!(
                "AlertProvider {namespace}/{} has no address",
                reference.name
            )
        })?;
        Ok(Channel {
            kind: spec.r#type.clone(),
            address,
            channel: pick("channel", &spec.channel),
            username: pick("username", &spec.username),
            token: pick("token", &None),
            proxy: pick("proxy", &spec.proxy),
        })
    }
}
