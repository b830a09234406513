//! `spec.analysis.webhooks[]`: each hook's URL, timeout and retries, read.

use std::time::Duration;

use crate::api::{parse_duration, CanaryWebhook};

use super::{Findings, Webhook};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub use crate::api::{MAX_WEBHOOK_RETRIES as MAX_RETRIES, MAX_WEBHOOK_TIMEOUT as MAX_TIMEOUT};

/// Every webhook read; a call never waits longer than `interval`.
pub(super) fn webhooks(
    declared: &[CanaryWebhook],
    interval: Duration,
    findings: &mut Findings,
) -> Vec<Webhook> {
    let mut seen = std::collections::BTreeSet::new();
    let mut read = Vec::new();
    for (index, hook) in declared.iter().enumerate() {
        let base = format!("spec.analysis.webhooks[{index}]");
        if !seen.insert(&hook.name) {
            findings.error(
                &format!("{base}.name"),
                format!("webhook name {:?} is used twice", hook.name),
            );
        }
        if let Some(mut webhook) = read_webhook(hook, &base, findings) {
            if webhook.timeout > interval {
                let message = format!("timeout {:?} is longer than the analysis interval {interval:?}: calls give up after the interval", webhook.timeout);
                findings.warning(&format!("{base}.timeout"), message);
                webhook.timeout = interval;
            }
            read.push(webhook);
        }
    }
    read
}

fn read_webhook(hook: &CanaryWebhook, base: &str, findings: &mut Findings) -> Option<Webhook> {
    let timeout = match &hook.timeout {
        None => DEFAULT_TIMEOUT,
        Some(text) => match parse_duration(text) {
            Ok(timeout) if timeout <= MAX_TIMEOUT => timeout,
            Ok(_) => {
                let message = format!(
                    "timeout {text:?} is longer than the {MAX_TIMEOUT:?} a webhook may take"
                );
                findings.error(&format!("{base}.timeout"), message);
                DEFAULT_TIMEOUT
            }
            Err(error) => {
                findings.error(&format!("{base}.timeout"), error.to_string());
                DEFAULT_TIMEOUT
            }
        },
    };
    let retries = match hook.retries {
        Some(retries) if !(0..=MAX_RETRIES).contains(&retries) => {
            let message = format!("retries {retries} is not between 0 and {MAX_RETRIES}");
            findings.error(&format!("{base}.retries"), message);
            0
        }
        retries => retries.unwrap_or(0) as u32,
    };
    if hook
        .secret_ref
        .as_ref()
        .is_some_and(|s| s.name.trim().is_empty())
    {
        findings.error(
            &format!("{base}.secretRef.name"),
            "secretRef.name must name a Secret in the Canary's namespace",
        );
    }
    let url = match reqwest::Url::parse(&hook.url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        Ok(url) => {
            findings.error(
                &format!("{base}.url"),
                format!("scheme {:?} is not http or https", url.scheme()),
            );
            return None;
        }
        Err(error) => {
            findings.error(
                &format!("{base}.url"),
                format!("{:?} is not a URL: {error}", hook.url),
            );
            return None;
        }
    };
    Some(Webhook {
        name: hook.name.clone(),
        kind: hook.r#type,
        url,
        timeout,
        retries,
        metadata: hook.metadata.clone(),
        mute_alert: hook.mute_alert,
        disable_tls: hook.disable_tls,
        secret: hook
            .secret_ref
            .as_ref()
            .map(|s| (s.name.clone(), s.key().to_string())),
    })
}
