//! `aviary wait`: block until the rollout of the target's current revision ends, for CI.
//!
//! "Promoted" and "failed" refer to the revision the target runs now, so a pipeline that sets a
//! new image and waits at once never mistakes the previous rollout's outcome for this one's.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use super::CliError;
use crate::api::{Canary, CanaryPhase, CanaryStatus};
use crate::controller::configs::{self, ConfigKind};
use crate::controller::workload;

#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    Promoted,
    Failed,
    Phase(CanaryPhase),
}

impl std::str::FromStr for WaitFor {
    type Err = CliError;

    fn from_str(text: &str) -> Result<Self, CliError> {
        match text {
            "promoted" => Ok(WaitFor::Promoted),
            "failed" => Ok(WaitFor::Failed),
            other => {
                let phase = other
                    .strip_prefix("phase=")
                    .ok_or_else(|| CliError::BadCondition(text.into()))?;
                let phase: CanaryPhase = serde_json::from_value(serde_json::json!(phase))
                    .map_err(|_| CliError::BadCondition(text.into()))?;
                Ok(WaitFor::Phase(phase))
            }
        }
    }
}

/// Watch errors in a row after which waiting is given up.
const WATCH_ERRORS: u32 = 5;

/// How a wait ended; the process exits with `code()`.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitOutcome {
    Promoted(CanaryStatus),
    Failed(CanaryStatus),
    /// The awaited phase was reached (`--for phase=X`).
    Reached(CanaryStatus),
    TimedOut(Option<CanaryStatus>),
}

impl WaitOutcome {
    pub fn code(&self) -> u8 {
        match self {
            WaitOutcome::Promoted(_) | WaitOutcome::Reached(_) => 0,
            WaitOutcome::Failed(_) => 1,
            WaitOutcome::TimedOut(_) => 2,
        }
    }

    pub fn status(&self) -> Option<&CanaryStatus> {
        match self {
            WaitOutcome::Promoted(s) | WaitOutcome::Failed(s) | WaitOutcome::Reached(s) => Some(s),
            WaitOutcome::TimedOut(s) => s.as_ref(),
        }
    }
}

/// The revision the controller computes for the target as it is now.
async fn current_revision(
    client: &Client,
    namespace: &str,
    canary: &Canary,
) -> Result<Option<String>, CliError> {
    let Some(kind) = crate::plan::target_kind(&canary.spec) else {
        return Ok(None);
    };
    let name = &canary.spec.target_ref.name;
    let Some(target) = workload::fetch(client, namespace, kind, name).await? else {
        return Ok(None);
    };
    let Some(template) = target.template() else {
        return Ok(None);
    };
    let mut checksums = std::collections::BTreeMap::new();
    for (kind, name) in configs::referenced(&template) {
        let checksum = match kind {
            ConfigKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&name)
                .await?
                .map(|m| configs::config_map_checksum(&m)),
            ConfigKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&name)
                .await?
                .map(|s| configs::secret_checksum(&s)),
        };
        if let Some(checksum) = checksum {
            checksums.insert(configs::checksum_key(kind, &name), checksum);
        }
    }
    let template = crate::controller::objects::revision(&template);
    Ok(Some(configs::combined_revision(&template, &checksums)))
}

fn verdict(
    condition: &WaitFor,
    status: &CanaryStatus,
    revision: Option<&str>,
) -> Option<WaitOutcome> {
    let of_current = revision.is_some() && status.last_applied_spec.as_deref() == revision;
    match condition {
        WaitFor::Phase(phase) if status.phase == *phase => {
            Some(WaitOutcome::Reached(status.clone()))
        }
        WaitFor::Phase(_) => None,
        WaitFor::Promoted | WaitFor::Failed => {
            let live = of_current && status.last_promoted_spec.as_deref() == revision;
            match status.phase {
                // Live is live, whatever a later failure left in the phase (a target set back
                // to the promoted revision keeps the phase of the failed rollout).
                CanaryPhase::Succeeded | CanaryPhase::Initialized | CanaryPhase::Failed if live => {
                    Some(WaitOutcome::Promoted(status.clone()))
                }
                CanaryPhase::Failed if of_current => Some(WaitOutcome::Failed(status.clone())),
                _ => None,
            }
        }
    }
}

/// Waits for `condition`, calling `progress` on every change; ends at the verdict or `limit`.
pub async fn wait(
    client: &Client,
    namespace: &str,
    name: &str,
    condition: WaitFor,
    limit: Duration,
    mut progress: impl FnMut(&Canary),
) -> Result<WaitOutcome, CliError> {
    let api: Api<Canary> = Api::namespaced(client.clone(), namespace);
    if api.get_opt(name).await?.is_none() {
        return Err(CliError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
        });
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = crate::controller::watch::relisting(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut errors_in_a_row = 0;
    let deadline = tokio::time::Instant::now() + limit;
    let mut last: Option<CanaryStatus> = None;
    loop {
        let next = tokio::time::timeout_at(deadline, changes.next()).await;
        let canary = match next {
            Err(_) => return Ok(WaitOutcome::TimedOut(last)),
            Ok(None) => return Ok(WaitOutcome::TimedOut(last)),
            // A watch error is retried with backoff; one that persists (say, no right to
            // watch) ends the wait as an error, not as a timeout.
            Ok(Some(Err(error))) => {
                errors_in_a_row += 1;
                tracing::debug!(%error, "watch interrupted");
                if errors_in_a_row >= WATCH_ERRORS {
                    return Err(CliError::Watch(error.to_string()));
                }
                continue;
            }
            Ok(Some(Ok(canary))) => {
                errors_in_a_row = 0;
                canary
            }
        };
        let status = canary.status.clone().unwrap_or_default();
        if last.as_ref() != Some(&status) {
            progress(&canary);
        }
        // Read per change: the target may have changed since the wait began.
        let revision = current_revision(client, namespace, &canary).await?;
        if let Some(outcome) = verdict(&condition, &status, revision.as_deref()) {
            return Ok(outcome);
        }
        last = Some(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: CanaryPhase, applied: &str, promoted: &str) -> CanaryStatus {
        CanaryStatus {
            phase,
            last_applied_spec: Some(applied.into()),
            last_promoted_spec: Some(promoted.into()),
            ..CanaryStatus::default()
        }
    }

    #[test]
    fn only_the_current_revision_counts() {
        let done = status(CanaryPhase::Succeeded, "old", "old");
        assert_eq!(verdict(&WaitFor::Promoted, &done, Some("new")), None);
        let done = status(CanaryPhase::Succeeded, "new", "new");
        assert!(matches!(
            verdict(&WaitFor::Promoted, &done, Some("new")),
            Some(WaitOutcome::Promoted(_))
        ));
        let failed = status(CanaryPhase::Failed, "new", "old");
        assert!(matches!(
            verdict(&WaitFor::Promoted, &failed, Some("new")),
            Some(WaitOutcome::Failed(_))
        ));
        let old_failure = status(CanaryPhase::Failed, "old", "older");
        assert_eq!(verdict(&WaitFor::Failed, &old_failure, Some("new")), None);
        let back_on_promoted = status(CanaryPhase::Failed, "new", "new");
        assert!(matches!(
            verdict(&WaitFor::Promoted, &back_on_promoted, Some("new")),
            Some(WaitOutcome::Promoted(_))
        ));
    }

    #[test]
    fn conditions_parse_or_say_what_is_accepted() {
        assert_eq!(
            "phase=Progressing".parse::<WaitFor>().unwrap(),
            WaitFor::Phase(CanaryPhase::Progressing)
        );
        assert!("phase=Flying".parse::<WaitFor>().is_err());
        assert!("done".parse::<WaitFor>().is_err());
    }
}
