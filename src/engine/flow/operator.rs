//! Operator requests (`aviary promote|abort|pause|resume|retry`): each is acted on once, and
//! every one of them, honoured or not, is answered with an Event naming who asked.

use crate::api::{AlertSeverity, CanaryPhase, HookType, OperatorRequest, Reason, Verb};

use super::{analysis, Flow, Rollout};

impl Rollout<'_> {
    /// While paused nothing advances, but an open rollback hook still rolls back.
    pub(super) fn paused(&mut self) -> Flow {
        if self.status.phase != CanaryPhase::Waiting {
            let outcomes = self.hooks(HookType::Rollback)?;
            if let Some(hook) = analysis::first_passing_hook(outcomes) {
                let reason = format!("rollback webhook {} asked for it while paused", hook.name);
                self.rollback(&reason);
            }
        }
        Ok(())
    }

    /// Acts on a request not handled yet; `true` when it decided this step (an abort, a full
    /// promotion).
    pub(super) fn operator_request(&mut self, target: &str) -> bool {
        let Some(Ok(request)) = self.input.observations.request.clone() else {
            return false;
        };
        if self.status.handled_request.as_deref() == Some(request.id.as_str()) {
            return false;
        }
        self.status.handled_request = Some(request.id.clone());
        let OperatorRequest { verb, by, .. } = request;
        let name = self.input.name;
        let phase = self.status.phase;
        match verb {
            Verb::Pause if !phase.is_pausable() => {
                self.ignored(
                    &by,
                    verb,
                    "only a waiting or progressing rollout can be paused",
                );
                false
            }
            Verb::Pause => {
                self.status.paused_by = Some(by.clone());
                self.event(
                    AlertSeverity::Warn,
                    Reason::Paused,
                    format!(
                        "{name} paused by {by} in {phase} at weight {}",
                        self.status.canary_weight
                    ),
                );
                false
            }
            Verb::Resume => {
                let reason = if self.status.paused_by.take().is_some() {
                    // The paused time counts toward neither the progress deadline nor a hold,
                    // and the next step is a whole interval away.
                    let now = self.input.now;
                    self.status.last_transition_time = Some(now);
                    self.status.last_step_time = Some(now);
                    if self.status.holding_since.is_some() {
                        self.status.holding_since = Some(now);
                    }
                    Reason::Resumed
                } else {
                    Reason::ResumeIgnored
                };
                self.event(
                    AlertSeverity::Info,
                    reason,
                    format!("{name} resumed by {by} in {phase}"),
                );
                false
            }
            Verb::Abort => {
                if matches!(
                    phase,
                    CanaryPhase::Waiting | CanaryPhase::Progressing | CanaryPhase::WaitingPromotion
                ) {
                    self.status.paused_by = None;
                    // A revision aborted before it started must not start again on its own.
                    self.status.last_applied_spec = Some(target.to_string());
                    self.rollback(&format!("aborted by {by}"));
                    true
                } else {
                    self.ignored(&by, verb, "no rollout under way to abort");
                    false
                }
            }
            Verb::Retry => {
                if phase == CanaryPhase::Failed {
                    self.status.last_applied_spec = None;
                    self.status.paused_by = None;
                    self.event(
                        AlertSeverity::Info,
                        Reason::Retrying,
                        format!("{name}: {by} asked to roll out revision {target} again"),
                    );
                } else {
                    self.ignored(&by, verb, "only a failed rollout can be retried");
                }
                false
            }
            Verb::Promote if !phase.is_pausable() => {
                self.ignored(&by, verb, "no rollout is waiting or progressing");
                false
            }
            Verb::Promote => {
                self.status.approved_by = Some(by.clone());
                self.event(
                    AlertSeverity::Info,
                    Reason::PromotionApproved,
                    format!("{name}: {by} approved passing the next closed gate (in {phase})"),
                );
                false
            }
            Verb::PromoteFull => match phase {
                CanaryPhase::Progressing | CanaryPhase::WaitingPromotion
                    if self.status.last_applied_spec.as_deref() != Some(target) =>
                {
                    self.ignored(
                        &by,
                        verb,
                        "the target changed to a revision that has not been analysed yet",
                    );
                    false
                }
                CanaryPhase::Progressing | CanaryPhase::WaitingPromotion => {
                    self.status.paused_by = None;
                    self.event(
                        AlertSeverity::Warn,
                        Reason::PromotedByOperator,
                        format!(
                            "{name}: {by} skipped the remaining steps at weight {}",
                            self.status.canary_weight
                        ),
                    );
                    self.promote();
                    true
                }
                CanaryPhase::Waiting => {
                    self.status.approved_by = Some(by.clone());
                    self.event(
                        AlertSeverity::Info,
                        Reason::PromotionApproved,
                        format!(
                            "{name}: {by} approved the waiting rollout; analysis runs as usual"
                        ),
                    );
                    false
                }
                _ => {
                    self.ignored(&by, verb, "no analysis under way to skip");
                    false
                }
            },
        }
    }

    fn ignored(&mut self, by: &str, verb: Verb, why: &str) {
        let message = format!(
            "{}: {} asked by {by} ignored in {}: {why}",
            self.input.name,
            verb.as_str(),
            self.status.phase
        );
        self.event(AlertSeverity::Warn, Reason::RequestIgnored, message);
    }
}
