//! The steps of a rollout in progress: judging each interval, moving traffic, promoting and
//! rolling back.

use crate::api::{AlertSeverity, CanaryPhase, ConditionType, HookType, Reason};
use crate::plan::windows::{self, WindowState};
use crate::plan::{Analysis, Strategy};

use super::super::analysis::{self, Failure};
use super::super::strategy::{analysis_routes, next_promotion_weight};
use super::super::{Action, Routes};
use super::{Flow, Rollout, Verdict};

impl Rollout<'_> {
    pub(super) fn progress(&mut self, target: String) -> Flow {
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
        self.analysis_step(analysis)
    }

    /// One due step of an analysis: judge it, then move on when it passed.
    pub(super) fn analysis_step(&mut self, analysis: &Analysis) -> Flow {
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
        self.status.judge_state = states.counts;
        self.status.sample_tests = states.samples;
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
        self.advance(analysis)
    }

    /// After a passed step: the next weight, the next iteration, or the promotion gate.
    pub(super) fn advance(&mut self, analysis: &Analysis) -> Flow {
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
    pub(super) fn enter_traffic(&mut self, analysis: &Analysis) -> Flow {
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

    pub(super) fn advance_weight(&mut self, analysis: &Analysis) -> Flow {
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

    pub(super) fn promotion_gate(&mut self, analysis: &Analysis) -> Flow {
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
    pub(super) fn wait_promotion(&mut self, reason: String) {
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

    pub(super) fn promote(&mut self) {
        self.status.last_step_time = Some(self.input.now);
        self.set_phase(CanaryPhase::Promoting, "Copying the canary to the primary");
        self.event(
            AlertSeverity::Info,
            Reason::Promoting,
            format!(
                "Promoting {}: copying the canary's template to the primary",
                self.input.name
            ),
        );
        self.store_intent();
        if self.strategy == Strategy::BlueGreen {
            // Blue/green switches every request at once, before the primary is touched.
            self.status.canary_weight = 100;
            self.actions.push(Action::SetRoutes(Routes::weighted(100)));
        }
        self.actions.push(Action::Promote);
    }

    pub(super) fn finish_promotion(&mut self, target: String) {
        let observations = self.input.observations;
        let primary_updated = observations.primary_revision == self.status.last_applied_spec;
        let target_analysed = self.status.last_applied_spec.as_deref() == Some(target.as_str());
        if !primary_updated && !target_analysed {
            // The primary never took the analysed revision and the target moved on: copying
            // it now would promote a revision nobody analysed.
            self.restart(target);
            return;
        }
        if !(primary_updated && observations.primary_ready) {
            if self.deadline_passed() {
                self.promotion_failed();
            } else if !primary_updated {
                // The promotion was stored before the primary was written: a controller that
                // stopped in between, or a write that failed, leaves it to be written again.
                self.actions.push(Action::Promote);
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
            // Stored first: a restart must not write the last promotion weight back.
            self.store_intent();
        }
        self.actions
            .push(Action::SetRoutes(Routes::weighted(weight)));
    }

    fn promotion_failed(&mut self) {
        self.status.canary_weight = 0;
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
        self.store_intent();
        self.actions.push(Action::SetRoutes(Routes::primary_only()));
        // No traffic reaches the canary now; as after a rollback, it is scaled to zero.
        self.actions.push(Action::ScaleTarget { up: false });
        self.post_rollout_hooks();
    }

    pub(super) fn finalise(&mut self) {
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

    pub(super) fn rollback(&mut self, reason: &str) {
        self.status.holding_since = None;
        self.status.approved_by = None;
        self.status.paused_by = None;
        self.status.canary_weight = 0;
        self.status.last_step_time = Some(self.input.now);
        self.set_phase(CanaryPhase::Failed, reason);
        self.event(
            AlertSeverity::Error,
            Reason::RolledBack,
            format!("Rolled back {}: {reason}", self.input.name),
        );
        // Stored first: a restart must not write the analysis weight back to a canary that
        // is being scaled to zero.
        self.store_intent();
        self.actions.push(Action::SetRoutes(Routes::primary_only()));
        self.actions.push(Action::ScaleTarget { up: false });
        self.post_rollout_hooks();
    }

    pub(super) fn count_failure(&mut self, analysis: &Analysis, failure: Failure) {
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
}
