//! Webhooks: gates, pre-rollout and rollout hooks, rollback hooks, post-rollout hooks.

use super::*;

#[test]
fn confirm_rollout_gate_holds_in_waiting() {
    let spec = with_hooks(stepped(50, 50, 1), &[HookType::ConfirmRollout]);
    let mut sim = Sim::initialized(spec);
    sim.refusing = vec![HookType::ConfirmRollout];
    sim.tick();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Waiting);
    assert!(!sim.target_up, "nothing scaled up while waiting");
    sim.refusing.clear();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    sim.run_until(&[CanaryPhase::Succeeded], 10);
}

#[test]
fn pre_rollout_failure_counts_a_failed_check() {
    let spec = with_hooks(stepped(50, 50, 2), &[HookType::PreRollout]);
    let mut sim = Sim::initialized(spec);
    sim.refusing = vec![HookType::PreRollout];
    sim.tick();
    sim.tick();
    assert_eq!(sim.status.failed_checks, 1);
    assert_eq!(
        sim.routes.canary_weight, 0,
        "no traffic before pre-rollout passes"
    );
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
}

#[test]
fn rollout_hook_failure_is_a_failed_check_and_metrics_are_not_asked() {
    let spec = with_hooks(stepped(20, 60, 1), &[HookType::Rollout]);
    let mut sim = Sim::initialized(spec);
    sim.tick();
    sim.tick();
    sim.refusing = vec![HookType::Rollout];
    sim.metric = Err(Unmeasured::Failed("must not be read".into()));
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
    let message = sim.message_of(Reason::RolledBack);
    assert!(message.contains("rollout webhook"), "{message}");
}

#[test]
fn confirm_traffic_increase_holds_weight_without_failing() {
    let spec = with_hooks(stepped(20, 60, 1), &[HookType::ConfirmTrafficIncrease]);
    let mut sim = Sim::initialized(spec);
    sim.tick();
    sim.tick();
    sim.refusing = vec![HookType::ConfirmTrafficIncrease];
    for _ in 0..3 {
        sim.tick();
    }
    assert_eq!(sim.routes.canary_weight, 20);
    assert_eq!(sim.status.failed_checks, 0);
    sim.refusing.clear();
    sim.tick();
    assert_eq!(sim.routes.canary_weight, 40);
}

#[test]
fn confirm_promotion_waits_while_analysis_continues() {
    let spec = with_hooks(stepped(50, 50, 1), &[HookType::ConfirmPromotion]);
    let mut sim = Sim::initialized(spec);
    sim.refusing = vec![HookType::ConfirmPromotion];
    sim.run_until(&[CanaryPhase::WaitingPromotion], 6);
    assert_eq!(sim.routes.canary_weight, 50);
    sim.metric = Ok(1.0);
    sim.tick();
    assert_eq!(
        sim.status.phase,
        CanaryPhase::Failed,
        "analysis goes on while waiting"
    );
}

#[test]
fn confirm_promotion_opens_and_promotes() {
    let spec = with_hooks(stepped(50, 50, 1), &[HookType::ConfirmPromotion]);
    let mut sim = Sim::initialized(spec);
    sim.refusing = vec![HookType::ConfirmPromotion];
    sim.run_until(&[CanaryPhase::WaitingPromotion], 6);
    sim.refusing.clear();
    sim.run_until(&[CanaryPhase::Succeeded], 6);
}

#[test]
fn rollback_hook_aborts_at_once() {
    let spec = with_hooks(stepped(20, 100, 5), &[HookType::Rollback]);
    let mut sim = Sim::initialized(spec);
    sim.refusing = vec![HookType::Rollback]; // a refusing rollback hook means "do not roll back"
    sim.tick();
    sim.tick();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    sim.refusing.clear();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
}

#[test]
fn post_rollout_hooks_run_after_success_and_failure() {
    let spec = with_hooks(stepped(50, 50, 1), &[HookType::PostRollout]);
    let mut sim = Sim::initialized(spec.clone());
    sim.run_until(&[CanaryPhase::Succeeded], 10);
    assert!(sim.hooks_called.contains(&HookType::PostRollout));
    let mut sim = Sim::initialized(spec);
    sim.metric = Ok(0.0);
    sim.run_until(&[CanaryPhase::Failed], 10);
    assert!(sim.hooks_called.contains(&HookType::PostRollout));
}
