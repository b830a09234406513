//! Metrics without a number (no data, a provider down) and the comparative judge.

use super::*;

fn with_no_data_policy(policy: crate::api::NoDataPolicy) -> CanarySpec {
    let mut spec = stepped(20, 60, 1);
    spec.progress_deadline_seconds = Some(120);
    spec.analysis.as_mut().unwrap().metrics[0].on_no_data = Some(policy);
    spec
}

#[test]
fn a_provider_that_is_down_holds_the_step_and_never_passes() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    sim.tick();
    sim.tick();
    sim.metric = Err(Unmeasured::ProviderDown(
        "prometheus provider failed: http://prom:9090 (unreachable)".into(),
    ));
    sim.tick();
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    assert_eq!(
        sim.status.failed_checks, 0,
        "an outage is not the canary's fault"
    );
    assert_eq!(sim.routes.canary_weight, 20, "and not a pass either");
    let held = sim
        .events
        .iter()
        .rev()
        .find(|e| e.reason == Reason::AnalysisHeld)
        .unwrap();
    assert!(
        held.message.contains("http://prom:9090"),
        "{}",
        held.message
    );
    sim.metric = Ok(99.9);
    sim.tick();
    assert_eq!(sim.routes.canary_weight, 40);
    assert_eq!(sim.status.holding_since, None);
}

#[test]
fn on_no_data_hold_waits_then_fails_at_the_progress_deadline() {
    let mut sim = Sim::initialized(with_no_data_policy(crate::api::NoDataPolicy::Hold));
    sim.tick();
    sim.tick();
    sim.metric = Err(Unmeasured::NoData(
        "no traffic reached podinfo in the last 60s".into(),
    ));
    sim.tick();
    assert_eq!(
        (sim.status.phase, sim.status.failed_checks),
        (CanaryPhase::Progressing, 0)
    );
    sim.run_until(&[CanaryPhase::Failed], 10);
    let message = sim.message_of(Reason::RolledBack);
    for part in ["progressDeadlineSeconds", "no traffic reached podinfo"] {
        assert!(message.contains(part), "{message}");
    }
}

#[test]
fn on_no_data_pass_advances_and_fail_is_the_default() {
    let mut sim = Sim::initialized(with_no_data_policy(crate::api::NoDataPolicy::Pass));
    sim.metric = Err(Unmeasured::NoData("no traffic".into()));
    sim.run_until(&[CanaryPhase::Succeeded], 20);
    let mut sim = Sim::initialized(with_no_data_policy(crate::api::NoDataPolicy::Fail));
    sim.metric = Err(Unmeasured::NoData("no traffic".into()));
    sim.run_until(&[CanaryPhase::Failed], 10);
}

fn compared_spec() -> CanarySpec {
    let mut spec = stepped(25, 50, 5);
    let analysis = spec.analysis.as_mut().unwrap();
    analysis.metrics[0].compare = Some(crate::api::CompareWith::Primary);
    spec
}

fn counts(canary_errors: f64) -> Comparison {
    Comparison::Counts {
        canary: crate::judge::Counts {
            requests: 3000.0,
            errors: canary_errors,
        },
        primary: crate::judge::Counts {
            requests: 3000.0,
            errors: 30.0,
        },
        through: 0,
    }
}

#[test]
fn the_comparative_judge_rolls_back_a_regression_at_the_first_look() {
    let mut sim = Sim::initialized(compared_spec());
    sim.comparison = Some(counts(150.0));
    sim.run_until(&[CanaryPhase::Succeeded, CanaryPhase::Failed], 20);
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
    assert_eq!(
        sim.status.failed_checks, 1,
        "one decisive verdict, not threshold 5"
    );
    let judged = &sim.status.judgements[0];
    assert_eq!(judged.verdict, crate::judge::Verdict::Fail);
    assert!(judged.effect.unwrap() > 4.0, "{judged:?}");
    let message = sim.message_of(Reason::RolledBack);
    for part in ["judged against the primary", "error-rate ratio"] {
        assert!(message.contains(part), "{message}");
    }
}

#[test]
fn the_comparative_judge_passes_equal_error_rates_and_keeps_its_evidence() {
    let mut sim = Sim::initialized(compared_spec());
    sim.comparison = Some(counts(30.0));
    sim.run_until(&[CanaryPhase::Succeeded, CanaryPhase::Failed], 20);
    assert_eq!(sim.status.phase, CanaryPhase::Succeeded);
    assert_eq!(sim.status.failed_checks, 0);
    let judged = &sim.status.judgements[0];
    assert_eq!(judged.verdict, crate::judge::Verdict::Pass, "{judged:?}");
    assert!(judged.evidence.unwrap() < 1.0);
}
