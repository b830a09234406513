//! New revisions, reverted revisions, a missing target, and calls that come early.

use super::*;

#[test]
fn failed_revision_is_not_retried_until_it_changes() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    sim.metric = Ok(10.0);
    sim.run_until(&[CanaryPhase::Failed], 10);
    let actions_before = sim.events.len();
    for _ in 0..5 {
        sim.tick();
    }
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
    assert_eq!(
        sim.events.len(),
        actions_before,
        "nothing happens for the same revision"
    );
    sim.metric = Ok(99.9);
    sim.target = "rev3".into();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    sim.run_until(&[CanaryPhase::Succeeded], 20);
    assert_eq!(sim.primary, "rev3");
}

#[test]
fn reverting_to_the_promoted_revision_is_not_a_rollout() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    sim.metric = Ok(10.0);
    sim.run_until(&[CanaryPhase::Failed], 10);
    sim.target = "rev1".into();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
    assert_eq!(sim.status.last_applied_spec.as_deref(), Some("rev1"));
    assert!(sim.has_event("RevisionUnchanged"));
}

#[test]
fn new_revision_mid_analysis_restarts_from_zero() {
    let mut sim = Sim::initialized(stepped(20, 100, 1));
    for _ in 0..4 {
        sim.tick();
    }
    assert!(sim.routes.canary_weight >= 40);
    sim.target = "rev3".into();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    assert_eq!(sim.routes.canary_weight, 0);
    assert_eq!(sim.status.last_applied_spec.as_deref(), Some("rev3"));
    assert!(sim.has_event("AnalysisRestarted"));
    assert_eq!(sim.weights_seen(20), vec![20, 40, 60, 80, 100, 0]);
    assert_eq!(sim.primary, "rev3");
}

#[test]
fn an_early_call_neither_repeats_nor_skips_a_step() {
    let mut sim = Sim::initialized(stepped(20, 100, 1));
    sim.tick();
    sim.tick();
    assert_eq!(sim.routes.canary_weight, 20);
    // A restarted controller calls again right away: nothing may move.
    sim.advance(Duration::from_secs(0));
    let requeue = sim.decide_now();
    assert_eq!(sim.routes.canary_weight, 40);
    let again = sim.decide_now();
    assert_eq!(sim.routes.canary_weight, 40, "same instant, same weight");
    assert!(again <= INTERVAL && requeue <= INTERVAL);
    sim.advance(Duration::from_secs(10));
    sim.decide_now();
    assert_eq!(sim.routes.canary_weight, 40, "not yet due");
    sim.advance(Duration::from_secs(20));
    sim.decide_now();
    assert_eq!(sim.routes.canary_weight, 60, "due again after one interval");
}

#[test]
fn missing_target_changes_nothing() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    let before = sim.status.clone();
    let observations = Observations::default();
    let plan = sim.plan();
    let step = decide(Input {
        name: "x",
        plan: &plan,
        status: &sim.status,
        observations: &observations,
        now: sim.now,
    });
    match step {
        Step::Decided(decision) => {
            assert_eq!(decision.status, before);
            assert!(decision.actions.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    sim.tick();
}
