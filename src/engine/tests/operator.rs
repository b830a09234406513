//! Operator requests and promotion windows on the simulated clock.

use super::*;
use crate::api::{OperatorRequest, PromotionWindow, Verb};

impl Sim {
    fn ask(&mut self, id: &str, verb: Verb) {
        self.request = Some(OperatorRequest {
            id: id.into(),
            verb,
            by: "alice".into(),
            at: None,
        });
    }

    fn event_message(&self, reason: &str) -> String {
        self.events
            .iter()
            .rev()
            .find(|e| e.reason.as_str() == reason)
            .unwrap_or_else(|| panic!("no {reason} event in {:?}", self.events))
            .message
            .clone()
    }
}

#[test]
fn promote_passes_one_closed_gate_and_names_who_approved() {
    let spec = with_hooks(stepped(50, 50, 1), &[HookType::ConfirmPromotion]);
    let mut sim = Sim::initialized(spec);
    sim.refusing = vec![HookType::ConfirmPromotion];
    sim.run_until(&[CanaryPhase::WaitingPromotion], 6);
    sim.ask("r1", Verb::Promote);
    sim.run_until(&[CanaryPhase::Succeeded], 6);
    assert!(sim.event_message("GateApproved").contains("alice"));
    assert_eq!(sim.status.approved_by, None, "an approval is used once");
}

#[test]
fn promote_full_skips_the_remaining_steps() {
    let mut sim = Sim::initialized(stepped(10, 90, 1));
    sim.tick();
    sim.tick();
    assert_eq!(sim.routes.canary_weight, 10);
    sim.ask("r1", Verb::PromoteFull);
    sim.decide_now();
    assert_eq!(sim.status.phase, CanaryPhase::Promoting);
    assert!(sim.event_message("PromotedByOperator").contains("alice"));
    sim.run_until(&[CanaryPhase::Succeeded], 6);
}

#[test]
fn abort_rolls_back_now_and_a_request_is_acted_on_once() {
    let mut sim = Sim::initialized(stepped(10, 90, 5));
    sim.tick();
    sim.tick();
    sim.ask("r1", Verb::Abort);
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
    assert_eq!(sim.routes.canary_weight, 0);
    assert!(sim.event_message("RolledBack").contains("aborted by alice"));
    // Retry the failed revision; the same abort request, still on the canary, is not redone.
    sim.ask("r2", Verb::Retry);
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    sim.run_until(&[CanaryPhase::Succeeded], 20);
    assert_eq!(sim.primary, "rev2");
}

#[test]
fn abort_while_waiting_keeps_the_revision_from_starting_on_its_own() {
    let spec = with_hooks(stepped(50, 50, 1), &[HookType::ConfirmRollout]);
    let mut sim = Sim::initialized(spec);
    sim.refusing = vec![HookType::ConfirmRollout];
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Waiting);
    sim.ask("r1", Verb::Abort);
    sim.tick();
    sim.refusing.clear();
    sim.tick();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
}

#[test]
fn pause_holds_the_weight_until_resume() {
    let mut sim = Sim::initialized(stepped(10, 50, 1));
    sim.tick();
    sim.tick();
    sim.ask("r1", Verb::Pause);
    for _ in 0..5 {
        sim.tick();
    }
    assert_eq!(sim.routes.canary_weight, 10, "no step while paused");
    assert_eq!(sim.status.paused_by.as_deref(), Some("alice"));
    sim.ask("r2", Verb::Resume);
    sim.run_until(&[CanaryPhase::Succeeded], 20);
    assert!(sim.has_event("Resumed"));
}

#[test]
fn requests_that_do_not_apply_are_answered_not_acted_on() {
    let mut sim = Sim::initialized(stepped(10, 50, 1));
    sim.run_until(&[CanaryPhase::Succeeded], 20);
    sim.ask("r1", Verb::Abort);
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Succeeded);
    assert!(sim.event_message("RequestIgnored").contains("abort"));
}

fn windowed(schedule: &str, duration: &str) -> CanarySpec {
    let mut spec = stepped(50, 50, 1);
    spec.analysis.as_mut().unwrap().promotion_windows = vec![PromotionWindow {
        schedule: schedule.into(),
        duration: duration.into(),
        time_zone: Some("Europe/Berlin".into()),
    }];
    spec
}

#[test]
fn a_closed_promotion_window_holds_in_waiting_promotion_until_it_opens() {
    // Every day 09:00-10:00 Berlin (08:00-09:00 UTC in winter).
    let mut sim = Sim::initialized(windowed("0 9 * * *", "1h"));
    sim.now = "2026-11-27T05:00:00Z".parse().unwrap();
    sim.run_until(&[CanaryPhase::WaitingPromotion], 6);
    assert_eq!(sim.routes.canary_weight, 50, "holds at its current weight");
    let message = sim.event_message("WaitingPromotion");
    assert!(
        message.contains("2026-11-27T08:00:00Z"),
        "says until when: {message}"
    );
    // Still closed an hour later: analysis goes on, nothing is promoted.
    for _ in 0..120 {
        sim.tick();
    }
    assert_eq!(sim.status.phase, CanaryPhase::WaitingPromotion);
    sim.now = "2026-11-27T08:00:10Z".parse().unwrap();
    sim.run_until(&[CanaryPhase::Succeeded], 6);
}

#[test]
fn an_open_window_promotes_as_usual() {
    let mut sim = Sim::initialized(windowed("0 9 * * *", "1h"));
    sim.now = "2026-11-27T08:10:00Z".parse().unwrap();
    sim.run_until(&[CanaryPhase::Succeeded], 6);
    assert!(!sim.has_event("WaitingPromotion"));
}

#[test]
fn an_approval_never_outlives_its_rollout() {
    let spec = with_hooks(stepped(50, 50, 1), &[HookType::ConfirmRollout]);
    let mut sim = Sim::initialized(spec);
    sim.target = "rev1".into();
    sim.ask("r1", Verb::Promote);
    sim.tick();
    assert!(sim.event_message("RequestIgnored").contains("promote"));
    assert_eq!(sim.status.approved_by, None);
    sim.target = "rev2".into();
    sim.refusing = vec![HookType::ConfirmRollout];
    sim.tick();
    sim.tick();
    assert_eq!(
        sim.status.phase,
        CanaryPhase::Waiting,
        "the gate is still closed"
    );
}

#[test]
fn promote_full_refuses_a_revision_not_analysed_yet() {
    let mut sim = Sim::initialized(stepped(10, 90, 1));
    sim.tick();
    sim.tick();
    sim.target = "rev3".into();
    sim.ask("r1", Verb::PromoteFull);
    sim.decide_now();
    assert_ne!(sim.status.phase, CanaryPhase::Promoting);
    assert!(sim
        .event_message("RequestIgnored")
        .contains("not been analysed"));
}

#[test]
fn pause_applies_to_waiting_or_progressing_rollouts_and_rollback_hooks_still_work() {
    let spec = with_hooks(stepped(10, 50, 1), &[HookType::Rollback]);
    let mut sim = Sim::initialized(spec);
    sim.refusing = vec![HookType::Rollback];
    sim.tick();
    sim.tick();
    sim.ask("r1", Verb::Pause);
    sim.tick();
    assert!(sim.status.paused_by.is_some());
    sim.refusing.clear();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
    assert_eq!(sim.status.paused_by, None);
    sim.ask("r2", Verb::Pause);
    sim.tick();
    assert!(sim.event_message("RequestIgnored").contains("pause"));
    assert_eq!(sim.status.paused_by, None);
}
