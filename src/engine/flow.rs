//! The phase machine. One `Rollout` is built per call to `decide` and consumed by it.

mod operator;

use std::time::Duration;

use crate::api::{AlertSeverity, CanaryPhase, CanaryStatus, ConditionType, HookType, Reason};

use super::analysis::{self, Failure};
use super::strategy::{analysis_routes, next_promotion_weight};
use super::{Action, Decision, Event, HookOutcome, Input, Need, Routes, Step};
use crate::plan::windows::{self, WindowState};
use crate::plan::{Analysis, Strategy};

/// How soon to look again while waiting on readiness, when the interval is longer.
const READINESS_POLL: Duration = Duration::from_secs(5);

/// What one analysis step concluded.
enum Verdict {
    Pass,
    Fail(Failure),
    /// A comparative verdict of regression: roll back now.
    Decisive(Failure),
    Hold(String),
}

/// The comparative judge's records and sequential tests after one step.
type Judged = (
    Vec<crate::api::MetricJudgement>,
    std::collections::BTreeMap<String, crate::judge::SequentialState>,
);

/// `Err(Need)` unwinds a decision that lacks an observation; `?` carries it to `run`.
type Flow<T = ()> = Result<T, Need>;

pub(super) struct Rollout<'a> {
    input: Input<'a>,
    strategy: Strategy,
    status: CanaryStatus,
    actions: Vec<Action>,
}

impl<'a> Rollout<'a> {
    pub(super) fn new(input: Input<'a>) -> Self {
        Rollout {
            strategy: input.plan.strategy,
            status: input.status.clone(),
            actions: Vec::new(),
            input,
        }
    }

    pub(super) fn run(mut self) -> Step {
        match self.step() {
            Err(need) => Step::Need(need),
            Ok(()) => {
                let requeue_after = self.requeue_after();
                Step::Decided(Box::new(Decision {
                    status: self.status,
                    actions: self.actions,
                    requeue_after,
                }))
            }
        }
    }

    fn step(&mut self) -> Flow {
        if self.input.plan.suspend {
            return Ok(());
        }
        let Some(target) = self.input.observations.target_revision.clone() else {
            // Nothing can be decided without the target; the adapter reports the missing object.
            return Ok(());
        };
        if self.operator_request(&target) {
            return Ok(());
        }
        if self.status.paused_by.is_some() && self.status.phase.is_pausable() {
            return self.paused();
        }
        match self.status.phase {
            CanaryPhase::Initializing => {
                self.initialize(target);
                Ok(())
            }
            CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed => {
                self.detect_revision(target)
            }
            CanaryPhase::Waiting => self.confirm_rollout(target),
            CanaryPhase::Progressing | CanaryPhase::WaitingPromotion => self.progress(target),
            CanaryPhase::Promoting => {
                self.finish_promotion();
                Ok(())
            }
            CanaryPhase::Finalising => {
                self.finalise();
                Ok(())
            }
            CanaryPhase::Terminating | CanaryPhase::Terminated => Ok(()),
        }
    }

    // ---- phases -------------------------------------------------------------------------------

    fn initialize(&mut self, target: String) {
        let now = self.input.now;
        if self.status.last_transition_time.is_none() {
            self.status
                .set_phase(CanaryPhase::Initializing, "Creating the primary", now);
        }
        self.actions.push(Action::Bootstrap);
        self.actions.push(Action::SetRoutes(Routes::primary_only()));
        if self.input.observations.primary_ready {
            self.status.last_applied_spec = Some(target.clone());
            self.status.last_promoted_spec = Some(target);
            self.status.canary_weight = 0;
            self.actions.push(Action::ScaleTarget { up: false });
            self.set_phase(CanaryPhase::Initialized, "Primary is ready");
            self.event(
                AlertSeverity::Info,
                Reason::Initialized,
                format!(
                    "Initialization done: {} runs on its primary",
                    self.input.name
                ),
            );
        } else if self.deadline_passed() {
            self.set_phase(CanaryPhase::Failed, "Primary did not become ready");
            self.event(
                AlertSeverity::Error,
                Reason::InitializationFailed,
                format!(
                    "The primary of {} was not ready within progressDeadlineSeconds ({}s)",
                    self.input.name,
                    self.input.plan.progress_deadline.as_secs()
                ),
            );
        }
    }

    fn detect_revision(&mut self, target: String) -> Flow {
        if self.status.last_applied_spec.as_deref() == Some(target.as_str()) {
            // Already rolled out, or failed: a failed revision waits for a new one.
            return Ok(());
        }
        if self.status.last_promoted_spec.as_deref() == Some(target.as_str()) {
            // The target went back to what the primary runs: nothing to roll out.
            self.status.last_applied_spec = Some(target);
            self.actions.push(Action::ScaleTarget { up: false });
            self.event(
                AlertSeverity::Info,
                Reason::RevisionUnchanged,
                format!(
                    "{} is back on its promoted revision; nothing to roll out",
                    self.input.name
                ),
            );
            return Ok(());
        }
        self.confirm_rollout(target)
    }

    fn confirm_rollout(&mut self, target: String) -> Flow {
        if let Some(failure) = self.gate(HookType::ConfirmRollout)? {
            if self.status.phase != CanaryPhase::Waiting {
                self.set_phase(CanaryPhase::Waiting, &failure.0);
                self.event(
                    AlertSeverity::Info,
                    Reason::Waiting,
                    format!(
                        "Waiting for approval to roll out {}: {}",
                        self.input.name, failure.0
                    ),
                );
            }
            return Ok(());
        }
        self.start_rollout(target);
        Ok(())
    }

    fn start_rollout(&mut self, target: String) {
        self.reset_rollout(target.clone());
        self.set_phase(CanaryPhase::Progressing, "New revision detected");
        self.actions.push(Action::ScaleTarget { up: true });
        self.actions.push(Action::SetRoutes(Routes::primary_only()));
        self.event(
            AlertSeverity::Info,
            Reason::NewRevision,
            format!(
                "New revision {target} of {} detected; scaling up the canary",
                self.input.name
            ),
        );
    }

    fn restart(&mut self, target: String) {
        self.reset_rollout(target.clone());
        self.set_phase(CanaryPhase::Progressing, "New revision during analysis");
        self.actions.push(Action::ScaleTarget { up: true });
        self.actions.push(Action::SetRoutes(Routes::primary_only()));
        self.event(
            AlertSeverity::Warn,
            Reason::AnalysisRestarted,
            format!(
                "{} changed to revision {target} during analysis; restarting from weight 0",
                self.input.name
            ),
        );
    }

    fn reset_rollout(&mut self, target: String) {
        self.status.holding_since = None;
        // An approval was for the rollout it was given in.
        self.status.approved_by = None;
        self.status.last_checks.clear();
        self.status.judge_state.clear();
        self.status.judgements.clear();
        self.status.last_applied_spec = Some(target);
        self.status.canary_weight = 0;
        self.status.failed_checks = 0;
        self.status.iterations = 0;
        self.status.pre_rollout_passed = false;
        self.status.last_step_time = Some(self.input.now);
    }

    fn progress(&mut self, target: String) -> Flow {
        if self.status.last_applied_spec.as_deref() != Some(target.as_str()) {
            self.restart(target);
            return Ok(());
        }
        let rollback_outcomes = self.hooks(HookType::Rollback)?;
        if let Some(hook) = analysis::first_passing_hook(rollback_outcomes) {
            let reason = format!("rollback webhook {} asked for it", hook.name);
            self.rollback(&reason);
            return Ok(());
        }
        if !self.input.observations.canary_ready {
            if self.deadline_passed() {
                let reason = format!(
                    "the canary was not ready within progressDeadlineSeconds ({}s)",
                    self.input.plan.progress_deadline.as_secs()
                );
                self.rollback(&reason);
            }
            return Ok(());
        }
        if !self.step_due() {
            return Ok(());
        }
        let Some(analysis) = self.analysis() else {
            self.promote();
            return Ok(());
        };
        if self.status.failed_checks >= analysis.threshold {
            self.rollback("failed checks already at the threshold");
            return Ok(());
        }
        if !self.status.pre_rollout_passed {
            return self.enter_traffic(analysis);
        }
        let (verdict, (records, states)) = self.analyse(analysis)?;
        if let Some(outcomes) = self.input.observations.metrics.as_deref() {
            self.status.last_checks = analysis::check_records(analysis, outcomes);
        }
        if !records.is_empty() {
            self.status.judgements = records;
        }
        self.status.judge_state = states;
        match verdict {
            Verdict::Decisive(failure) => {
                self.status.holding_since = None;
                self.status.failed_checks += 1;
                self.rollback(&failure.0);
                return Ok(());
            }
            Verdict::Fail(failure) => {
                self.status.holding_since = None;
                self.count_failure(analysis, failure);
                return Ok(());
            }
            Verdict::Hold(reason) => {
                self.hold(&reason);
                return Ok(());
            }
            Verdict::Pass => self.status.holding_since = None,
        }
        self.status.last_step_time = Some(self.input.now);
        match self.strategy {
            Strategy::Canary if self.status.canary_weight < analysis.max_weight => {
                self.advance_weight(analysis)
            }
            Strategy::AbTesting | Strategy::BlueGreen
                if self.status.iterations + 1 < analysis.iterations =>
            {
                self.status.iterations += 1;
                self.event(
                    AlertSeverity::Info,
                    Reason::IterationPassed,
                    format!(
                        "{}: iteration {}/{} passed ({})",
                        self.input.name,
                        self.status.iterations,
                        analysis.iterations,
                        self.metric_summary()
                    ),
                );
                Ok(())
            }
            _ => {
                if matches!(self.strategy, Strategy::AbTesting | Strategy::BlueGreen) {
                    self.status.iterations = analysis.iterations;
                }
                self.promotion_gate(analysis)
            }
        }
    }

    /// Pre-rollout hooks, then the first traffic: the first weight, the A/B match or test traffic.
    fn enter_traffic(&mut self, analysis: &Analysis) -> Flow {
        if let Some(failure) = self.gate(HookType::PreRollout)? {
            self.count_failure(analysis, failure);
            return Ok(());
        }
        self.status.pre_rollout_passed = true;
        self.status.last_step_time = Some(self.input.now);
        let weight = match self.strategy {
            Strategy::Canary => analysis.next_weight(0),
            _ => 0,
        };
        self.status.canary_weight = weight;
        let routes = analysis_routes(self.strategy, analysis, weight);
        self.actions.push(Action::SetRoutes(routes));
        self.event(
            AlertSeverity::Info,
            Reason::AnalysisStarted,
            format!(
                "Starting analysis of {} at canary weight {weight}",
                self.input.name
            ),
        );
        Ok(())
    }

    fn advance_weight(&mut self, analysis: &Analysis) -> Flow {
        if let Some(failure) = self.gate(HookType::ConfirmTrafficIncrease)? {
            self.event(
                AlertSeverity::Info,
                Reason::TrafficIncreaseWaiting,
                format!(
                    "{} holds at weight {}: {}",
                    self.input.name, self.status.canary_weight, failure.0
                ),
            );
            return Ok(());
        }
        let weight = analysis.next_weight(self.status.canary_weight);
        self.status.canary_weight = weight;
        self.actions.push(Action::SetRoutes(analysis_routes(
            self.strategy,
            analysis,
            weight,
        )));
        self.event(
            AlertSeverity::Info,
            Reason::WeightAdvanced,
            format!(
                "Advanced {} to canary weight {weight} ({})",
                self.input.name,
                self.metric_summary()
            ),
        );
        Ok(())
    }

    fn promotion_gate(&mut self, analysis: &Analysis) -> Flow {
        match windows::state(&analysis.windows, self.input.now) {
            WindowState::Open => {}
            WindowState::Closed { opens_at } => {
                let until = match opens_at {
                    Some(at) => format!("until the next window opens at {at}"),
                    None => "with no window ever opening again".to_string(),
                };
                self.wait_promotion(format!(
                    "outside every promotion window; holding at weight {} {until}",
                    self.status.canary_weight
                ));
                return Ok(());
            }
        }
        if let Some(failure) = self.gate(HookType::ConfirmPromotion)? {
            self.wait_promotion(format!("waits for promotion approval: {}", failure.0));
            return Ok(());
        }
        self.promote();
        Ok(())
    }

    /// Holds a finished analysis in WaitingPromotion; the event is sent when the reason changes.
    fn wait_promotion(&mut self, reason: String) {
        let message_changed = self
            .status
            .conditions
            .iter()
            .find(|c| c.r#type == ConditionType::Promoted.as_str())
            .and_then(|c| c.message.as_deref())
            != Some(reason.as_str());
        if self.status.phase != CanaryPhase::WaitingPromotion || message_changed {
            self.set_phase(CanaryPhase::WaitingPromotion, &reason);
            self.event(
                AlertSeverity::Info,
                Reason::WaitingPromotion,
                format!("{} {reason}", self.input.name),
            );
        }
    }

    fn promote(&mut self) {
        if self.strategy == Strategy::BlueGreen {
            // Blue/green switches every request at once, before the primary is touched.
            self.status.canary_weight = 100;
            self.actions.push(Action::SetRoutes(Routes::weighted(100)));
        }
        self.status.last_step_time = Some(self.input.now);
        self.actions.push(Action::Promote);
        self.set_phase(CanaryPhase::Promoting, "Copying the canary to the primary");
        self.event(
            AlertSeverity::Info,
            Reason::Promoting,
            format!(
                "Promoting {}: copying the canary's template to the primary",
                self.input.name
            ),
        );
    }

    fn finish_promotion(&mut self) {
        let observations = self.input.observations;
        let primary_updated = observations.primary_revision == self.status.last_applied_spec;
        if !(primary_updated && observations.primary_ready) {
            if self.deadline_passed() {
                self.status.canary_weight = 0;
                self.actions.push(Action::SetRoutes(Routes::primary_only()));
                self.set_phase(
                    CanaryPhase::Failed,
                    "Primary did not become ready after promotion",
                );
                self.event(
                    AlertSeverity::Error,
                    Reason::PromotionFailed,
                    format!(
                        "The primary of {} was not ready with the new revision within progressDeadlineSeconds",
                        self.input.name
                    ),
                );
                self.post_rollout_hooks();
            }
            return;
        }
        let gradual_step_pending = self.status.canary_weight > 0
            && next_promotion_weight(&self.input.plan.analysis, self.status.canary_weight) > 0;
        if gradual_step_pending && !self.step_due() {
            return;
        }
        let weight = next_promotion_weight(&self.input.plan.analysis, self.status.canary_weight);
        self.status.canary_weight = weight;
        self.status.last_step_time = Some(self.input.now);
        self.actions
            .push(Action::SetRoutes(Routes::weighted(weight)));
        if weight == 0 {
            self.set_phase(
                CanaryPhase::Finalising,
                "All traffic is back on the primary",
            );
            self.event(
                AlertSeverity::Info,
                Reason::RoutedToPrimary,
                format!(
                    "Routing all traffic of {} to the promoted primary",
                    self.input.name
                ),
            );
        }
    }

    fn finalise(&mut self) {
        self.status.approved_by = None;
        self.actions.push(Action::ScaleTarget { up: false });
        self.status.last_promoted_spec = self.status.last_applied_spec.clone();
        self.status.canary_weight = 0;
        self.status.failed_checks = 0;
        self.status.iterations = 0;
        self.set_phase(
            CanaryPhase::Succeeded,
            "Canary analysis completed successfully",
        );
        self.event(
            AlertSeverity::Info,
            Reason::Succeeded,
            format!(
                "Promotion of {} completed: revision {} is live",
                self.input.name,
                self.status.last_applied_spec.as_deref().unwrap_or("?")
            ),
        );
        self.post_rollout_hooks();
    }

    fn rollback(&mut self, reason: &str) {
        self.status.holding_since = None;
        self.status.approved_by = None;
        self.status.paused_by = None;
        self.status.canary_weight = 0;
        self.status.last_step_time = Some(self.input.now);
        self.actions.push(Action::SetRoutes(Routes::primary_only()));
        self.actions.push(Action::ScaleTarget { up: false });
        self.set_phase(CanaryPhase::Failed, reason);
        self.event(
            AlertSeverity::Error,
            Reason::RolledBack,
            format!("Rolled back {}: {reason}", self.input.name),
        );
        self.post_rollout_hooks();
    }

    fn count_failure(&mut self, analysis: &Analysis, failure: Failure) {
        self.status.failed_checks += 1;
        self.status.last_step_time = Some(self.input.now);
        let threshold = analysis.threshold;
        if self.status.failed_checks >= threshold {
            let reason = format!(
                "{} failed checks reached the threshold of {threshold}; last: {}",
                self.status.failed_checks, failure.0
            );
            self.rollback(&reason);
        } else {
            self.event(
                AlertSeverity::Warn,
                Reason::CheckFailed,
                format!(
                    "Halting {} at weight {} ({}/{threshold} failed checks): {}",
                    self.input.name,
                    self.status.canary_weight,
                    self.status.failed_checks,
                    failure.0
                ),
            );
        }
    }

    // ---- observations -------------------------------------------------------------------------

    /// Outcomes of the hooks of `kind`; asks for them when the spec has some and they are missing.
    fn hooks(&self, kind: HookType) -> Flow<&'a [HookOutcome]> {
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
    fn check(&self, kind: HookType) -> Flow<Option<Failure>> {
        Ok(analysis::failed_hook(kind, self.hooks(kind)?))
    }

    /// A gate: like `check`, except that an operator's approval (`aviary promote`) passes one
    /// closed confirm-* gate.
    fn gate(&mut self, kind: HookType) -> Flow<Option<Failure>> {
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
    fn analyse(&self, analysis: &Analysis) -> Flow<(Verdict, Judged)> {
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
        let judgement = analysis::judge_metrics(analysis, outcomes, &self.status.judge_state);
        let judged = (judgement.records, judgement.states);
        if !judgement.decisive.is_empty() {
            let joined = judgement
                .decisive
                .into_iter()
                .map(|f| f.0)
                .collect::<Vec<_>>()
                .join("; ");
            return Ok((Verdict::Decisive(Failure(joined)), judged));
        }
        if !judgement.failures.is_empty() {
            let joined = judgement
                .failures
                .into_iter()
                .map(|f| f.0)
                .collect::<Vec<_>>()
                .join("; ");
            return Ok((Verdict::Fail(Failure(joined)), judged));
        }
        if !judgement.holds.is_empty() {
            return Ok((Verdict::Hold(judgement.holds.join("; ")), judged));
        }
        Ok((Verdict::Pass, judged))
    }

    /// No verdict this step: neither advance nor count a failure, until the progress deadline.
    fn hold(&mut self, reason: &str) {
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

    fn metric_summary(&self) -> String {
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

    // ---- helpers ------------------------------------------------------------------------------

    fn analysis(&self) -> Option<&'a Analysis> {
        match self.strategy {
            Strategy::SkipAnalysis => None,
            _ => Some(&self.input.plan.analysis),
        }
    }

    fn interval(&self) -> Duration {
        self.input.plan.interval
    }

    fn since(&self, then: Option<jiff::Timestamp>) -> Option<Duration> {
        let elapsed = self.input.now.duration_since(then?);
        Some(Duration::try_from(elapsed).unwrap_or(Duration::ZERO))
    }

    fn step_due(&self) -> bool {
        self.since(self.status.last_step_time)
            .is_none_or(|elapsed| elapsed >= self.interval())
    }

    fn deadline_passed(&self) -> bool {
        self.since(self.status.last_transition_time)
            .is_some_and(|elapsed| elapsed >= self.input.plan.progress_deadline)
    }

    fn requeue_after(&self) -> Duration {
        let interval = self.interval();
        let waiting_on_readiness = match self.status.phase {
            CanaryPhase::Initializing | CanaryPhase::Promoting => true,
            CanaryPhase::Progressing => !self.input.observations.canary_ready,
            _ => false,
        };
        if waiting_on_readiness {
            return interval.min(READINESS_POLL);
        }
        if self.status.phase.is_active() || self.status.phase == CanaryPhase::Waiting {
            if let Some(elapsed) = self.since(self.status.last_step_time) {
                return interval
                    .saturating_sub(elapsed)
                    .max(Duration::from_millis(1));
            }
        }
        interval
    }

    fn post_rollout_hooks(&mut self) {
        if self.input.plan.analysis.has_hooks(HookType::PostRollout) {
            self.actions.push(Action::RunHooks(HookType::PostRollout));
        }
    }

    fn set_phase(&mut self, phase: CanaryPhase, message: &str) {
        self.status.set_phase(phase, message, self.input.now);
    }

    fn event(&mut self, severity: AlertSeverity, reason: Reason, message: String) {
        self.actions.push(Action::Event(Event {
            severity,
            reason,
            message,
        }));
    }
}
