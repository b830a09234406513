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
        match verb {
            Verb::Pause => self.pause(&by),
            Verb::Resume => self.resume(&by),
            Verb::Abort => return self.abort(&by, target),
            Verb::Retry => self.retry(&by, target),
            Verb::Promote => self.approve(&by),
            Verb::PromoteFull => return self.promote_now(&by, target),
        }
        false
    }

    fn pause(&mut self, by: &str) {
        let phase = self.status.phase;
        if !phase.is_pausable() {
            let why = "only a waiting or progressing rollout can be paused";
            return self.ignored(by, Verb::Pause, why);
        }
        self.status.paused_by = Some(by.to_string());
        let message = format!(
            "{} paused by {by} in {phase} at weight {}",
            self.input.name, self.status.canary_weight
        );
        self.event(AlertSeverity::Warn, Reason::Paused, message);
    }

    fn resume(&mut self, by: &str) {
        let reason = if self.status.paused_by.take().is_some() {
            // The paused time counts toward neither the progress deadline nor a hold, and the
            // next step is a whole interval away.
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
        let message = format!(
            "{} resumed by {by} in {}",
            self.input.name, self.status.phase
        );
        self.event(AlertSeverity::Info, reason, message);
    }

    fn abort(&mut self, by: &str, target: &str) -> bool {
        let under_way = matches!(
            self.status.phase,
            CanaryPhase::Waiting | CanaryPhase::Progressing | CanaryPhase::WaitingPromotion
        );
        if !under_way {
            self.ignored(by, Verb::Abort, "no rollout under way to abort");
            return false;
        }
        self.status.paused_by = None;
        // A revision aborted before it started must not start again on its own.
        self.status.last_applied_spec = Some(target.to_string());
        self.rollback(&format!("aborted by {by}"));
        true
    }

    fn retry(&mut self, by: &str, target: &str) {
        if self.status.phase != CanaryPhase::Failed {
            return self.ignored(by, Verb::Retry, "only a failed rollout can be retried");
        }
        self.status.last_applied_spec = None;
        self.status.paused_by = None;
        let message = format!(
            "{}: {by} asked to roll out revision {target} again",
            self.input.name
        );
        self.event(AlertSeverity::Info, Reason::Retrying, message);
    }

    /// `aviary promote`: the next closed gate passes.
    fn approve(&mut self, by: &str) {
        let phase = self.status.phase;
        if !phase.is_pausable() {
            return self.ignored(by, Verb::Promote, "no rollout is waiting or progressing");
        }
        self.status.approved_by = Some(by.to_string());
        let message = format!(
            "{}: {by} approved passing the next closed gate (in {phase})",
            self.input.name
        );
        self.event(AlertSeverity::Info, Reason::PromotionApproved, message);
    }

    /// `aviary promote --full`: skip the remaining steps of an analysed revision.
    fn promote_now(&mut self, by: &str, target: &str) -> bool {
        let name = self.input.name;
        match self.status.phase {
            CanaryPhase::Progressing | CanaryPhase::WaitingPromotion
                if self.status.last_applied_spec.as_deref() != Some(target) =>
            {
                let why = "the target changed to a revision that has not been analysed yet";
                self.ignored(by, Verb::PromoteFull, why);
                false
            }
            CanaryPhase::Progressing | CanaryPhase::WaitingPromotion => {
                self.status.paused_by = None;
                let message = format!(
                    "{name}: {by} skipped the remaining steps at weight {}",
                    self.status.canary_weight
                );
                self.event(AlertSeverity::Warn, Reason::PromotedByOperator, message);
                self.promote();
                true
            }
            CanaryPhase::Waiting => {
                self.status.approved_by = Some(by.to_string());
                let message =
                    format!("{name}: {by} approved the waiting rollout; analysis runs as usual");
                self.event(AlertSeverity::Info, Reason::PromotionApproved, message);
                false
            }
            _ => {
                self.ignored(by, Verb::PromoteFull, "no analysis under way to skip");
                false
            }
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
