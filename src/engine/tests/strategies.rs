//! A/B testing, blue/green, skipped analysis, readiness and suspension.

use super::*;

#[test]
fn ab_testing_routes_matches_for_iterations_then_promotes() {
    let mut sim = Sim::initialized(ab_spec(3));
    sim.tick(); // detect
    sim.tick(); // enter traffic
    assert!(sim.routes.match_to_canary);
    assert_eq!(sim.routes.canary_weight, 0);
    sim.tick();
    sim.tick();
    assert_eq!(sim.status.iterations, 2);
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Promoting);
    sim.run_until(&[CanaryPhase::Succeeded], 5);
    assert!(!sim.routes.match_to_canary);
    assert_eq!(sim.primary, "rev2");
}

#[test]
fn blue_green_switches_all_traffic_before_promoting() {
    let mut sim = Sim::initialized(canary_spec(CanaryAnalysis {
        iterations: Some(2),
        ..CanaryAnalysis::default()
    }));
    sim.tick();
    sim.tick();
    assert_eq!(sim.routes, Routes::primary_only(), "test traffic only");
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Promoting);
    assert_eq!(
        sim.routes.canary_weight, 100,
        "all traffic switched to the canary at once"
    );
    sim.run_until(&[CanaryPhase::Succeeded], 5);
    assert_eq!(sim.routes, Routes::primary_only());
}

#[test]
fn blue_green_with_mirror_copies_traffic_during_analysis() {
    let mut sim = Sim::initialized(canary_spec(CanaryAnalysis {
        iterations: Some(2),
        mirror: true,
        mirror_weight: Some(50),
        ..CanaryAnalysis::default()
    }));
    sim.tick();
    sim.tick();
    assert_eq!(sim.routes.mirror_percent, Some(50));
    assert_eq!(sim.routes.canary_weight, 0);
    sim.run_until(&[CanaryPhase::Succeeded], 10);
    assert_eq!(sim.routes.mirror_percent, None);
}

#[test]
fn skip_analysis_promotes_once_the_canary_is_ready() {
    let mut spec = stepped(20, 60, 1);
    spec.skip_analysis = true;
    let mut sim = Sim::initialized(spec);
    sim.canary_ready = false;
    sim.tick();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    sim.canary_ready = true;
    sim.run_until(&[CanaryPhase::Succeeded], 5);
    assert_eq!(sim.primary, "rev2");
    assert!(!sim.hooks_called.contains(&HookType::Rollout));
}

#[test]
fn missing_analysis_means_skip_analysis() {
    let mut spec = stepped(20, 60, 1);
    spec.analysis = None;
    let mut sim = Sim::initialized(spec);
    sim.run_until(&[CanaryPhase::Succeeded], 6);
}

#[test]
fn canary_not_ready_past_the_deadline_rolls_back() {
    let mut spec = stepped(20, 60, 1);
    spec.progress_deadline_seconds = Some(90);
    let mut sim = Sim::initialized(spec);
    sim.canary_ready = false;
    sim.run_until(&[CanaryPhase::Failed], 6);
    assert!(sim
        .events
        .iter()
        .any(|e| e.message.contains("progressDeadlineSeconds")));
}

#[test]
fn suspend_freezes_everything() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    sim.tick();
    sim.tick();
    sim.spec.suspend = true;
    let before = sim.status.clone();
    for _ in 0..5 {
        sim.tick();
    }
    assert_eq!(sim.status, before);
    sim.spec.suspend = false;
    sim.run_until(&[CanaryPhase::Succeeded], 10);
}
