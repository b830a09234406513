//! What a step asks of the world: hook outcomes and metric values, and how they are judged.

use crate::api::{AlertSeverity, HookType, Reason};
use crate::plan::Analysis;

use super::super::analysis::{self, Failure};
use super::super::{HookOutcome, Need};
use super::{Flow, Judged, Rollout, Verdict};

impl<'a> Rollout<'a> {
    /// Outcomes of the hooks of `kind`; asks for them when the spec has some and they are missing.
    pub(super) fn hooks(&self, kind: HookType) -> Flow<&'a [HookOutcome]> {
        let declared = self.analysis().is_some_and(|a| a.has_hooks(kind));
        if !declared {
            return Ok(&[]);
        }
        match self.input.observations.hooks.get(&kind) {
            Some(outcomes) => Ok(outcomes.as_slice()),
            None => Err(Need::Hooks(kind)),
        }
    }

    /// `Some(failure)` when any hook of `kind` refused.
    pub(super) fn check(&self, kind: HookType) -> Flow<Option<Failure>> {
        Ok(analysis::failed_hook(kind, self.hooks(kind)?))
    }

    /// A gate: like `check`, except that an operator's approval (`aviary promote`) passes one
    /// closed confirm-* gate.
    pub(super) fn gate(&mut self, kind: HookType) -> Flow<Option<Failure>> {
        let refused = self.check(kind)?;
        let approvable = matches!(
            kind,
            HookType::ConfirmRollout
                | HookType::ConfirmTrafficIncrease
                | HookType::ConfirmPromotion
        );
        if let (Some(failure), true) = (&refused, approvable) {
            if let Some(by) = self.status.approved_by.take() {
                self.event(
                    AlertSeverity::Info,
                    Reason::GateApproved,
                    format!(
                        "{}: closed {} gate passed on the approval of {by} ({})",
                        self.input.name,
                        kind.as_str(),
                        failure.0
                    ),
                );
                return Ok(None);
            }
        }
        Ok(refused)
    }

    /// One analysis step: rollout hooks (load tests) first, then the metrics.
    pub(super) fn analyse(&self, analysis: &Analysis) -> Flow<(Verdict, Judged)> {
        if let Some(failure) = self.check(HookType::Rollout)? {
            return Ok((Verdict::Fail(failure), Judged::default()));
        }
        if analysis.metrics.is_empty() {
            return Ok((Verdict::Pass, Judged::default()));
        }
        let outcomes = self
            .input
            .observations
            .metrics
            .as_deref()
            .ok_or(Need::Metrics)?;
        let tests = crate::judge::Tests {
            counts: self.status.judge_state.clone(),
            samples: self.status.sample_tests.clone(),
        };
        let judgement = analysis::judge_metrics(analysis, outcomes, tests);
        let judged = (judgement.records, judgement.states);
        let joined = |failures: Vec<Failure>| {
            let reasons: Vec<String> = failures.into_iter().map(|f| f.0).collect();
            Failure(reasons.join("; "))
        };
        if !judgement.decisive.is_empty() {
            return Ok((Verdict::Decisive(joined(judgement.decisive)), judged));
        }
        if !judgement.failures.is_empty() {
            return Ok((Verdict::Fail(joined(judgement.failures)), judged));
        }
        if !judgement.holds.is_empty() {
            return Ok((Verdict::Hold(judgement.holds.join("; ")), judged));
        }
        Ok((Verdict::Pass, judged))
    }

    /// No verdict this step: neither advance nor count a failure, until the progress deadline.
    pub(super) fn hold(&mut self, reason: &str) {
        let now = self.input.now;
        self.status.last_step_time = Some(now);
        let since = *self.status.holding_since.get_or_insert(now);
        let held = self.since(Some(since)).unwrap_or_default();
        if held >= self.input.plan.progress_deadline {
            let message = format!(
                "no verdict for {}s (progressDeadlineSeconds): {reason}",
                held.as_secs()
            );
            self.rollback(&message);
            return;
        }
        self.event(
            AlertSeverity::Warn,
            Reason::AnalysisHeld,
            format!(
                "Holding {} at weight {} without a verdict: {reason}",
                self.input.name, self.status.canary_weight
            ),
        );
    }

    pub(super) fn metric_summary(&self) -> String {
        let values = match self.input.observations.metrics.as_deref() {
            Some(outcomes) if !outcomes.is_empty() => analysis::summarise_metrics(outcomes),
            _ => "no metrics".to_string(),
        };
        // The comparative judge's verdicts carry their numbers into the event.
        let judged: Vec<String> = self
            .status
            .judgements
            .iter()
            .map(|j| format!("{} judged {:?}: {}", j.metric, j.verdict, j.detail))
            .collect();
        if judged.is_empty() {
            values
        } else {
            format!("{values}; {}", judged.join("; "))
        }
    }
}
