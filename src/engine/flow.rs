//! The phase machine. One `Rollout` is built per call to `decide` and consumed by it.

mod judging;
mod operator;
mod steps;

use std::time::Duration;

use crate::api::{AlertSeverity, CanaryPhase, CanaryStatus, HookType, Reason};

use super::analysis::{self, Failure};
use super::{Action, Decision, Event, Input, Need, Routes, Step};
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
type Judged = (Vec<crate::api::MetricJudgement>, crate::judge::Tests);

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
                self.finish_promotion(target);
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
        self.status.sample_tests.clear();
        self.status.judgements.clear();
        self.name_session_cookies(&target);
        self.status.last_applied_spec = Some(target);
        self.status.canary_weight = 0;
        self.status.failed_checks = 0;
        self.status.iterations = 0;
        self.status.pre_rollout_passed = false;
        self.status.last_step_time = Some(self.input.now);
    }

    /// Each run's session cookies carry a value of their own (the revision), so a user pinned
    /// to an earlier run's canary is not pinned to this one.
    fn name_session_cookies(&mut self, revision: &str) {
        let value: String = revision
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        let affinity = self.input.plan.analysis.session_affinity.as_ref();
        let cookie = |name: &str| format!("{name}={value}");
        let status = &mut self.status;
        if status.session_affinity_cookie.is_some() {
            status.previous_session_affinity_cookie = status.session_affinity_cookie.take();
        }
        status.session_affinity_cookie = affinity.map(|a| cookie(&a.cookie_name));
        status.primary_session_affinity_cookie =
            affinity.and_then(|a| a.primary_cookie_name.as_deref().map(cookie));
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

    /// Stores the intent of a transition before its first side effect, announcing it: a
    /// controller that stops halfway leaves the transition stored, and the next one finishes
    /// it (see [`super::admission::settle`]) rather than deciding from the status before it.
    fn store_intent(&mut self) {
        self.actions.push(Action::StoreStatus);
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
