//! What every decision carries besides the rollout step: obstacles, conditions, restarts,
//! configs and unreadable requests.

use super::*;
use crate::api::{ConditionType, Reason};

fn decided(sim: &Sim, observations: &Observations) -> Decision {
    let plan = sim.plan();
    let step = decide(Input {
        name: "podinfo.test",
        plan: &plan,
        status: &sim.status,
        observations,
        now: sim.now,
    });
    match step {
        Step::Decided(decision) => *decision,
        other => panic!("unexpected {other:?}"),
    }
}

fn events(decision: &Decision) -> Vec<Reason> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(event) => Some(event.reason),
            _ => None,
        })
        .collect()
}

#[test]
fn a_blocked_canary_says_why_once_and_touches_nothing() {
    let sim = Sim::initialized(stepped(20, 60, 1));
    let missing = Obstacle::TargetNotFound("Deployment test/podinfo".into());
    let first = blocked(&sim.status, (&missing, INTERVAL), sim.now);
    assert_eq!(events(&first), [Reason::TargetNotFound]);
    assert_eq!(
        first.actions.len(),
        1,
        "only the event: {:?}",
        first.actions
    );
    assert_eq!(
        first.requeue_after, INTERVAL,
        "a blocked canary is looked at each interval"
    );
    let ready = first.status.condition(ConditionType::Ready).expect("Ready");
    assert_eq!(ready.status, "False");
    let waiting = first.status.condition(ConditionType::Reconciling);
    assert!(waiting.is_some(), "a missing target may yet be applied");
    assert!(first.status.condition(ConditionType::Stalled).is_none());
    let again = blocked(&first.status, (&missing, INTERVAL), sim.now);
    assert!(again.actions.is_empty(), "the same reason is not repeated");
    assert_eq!(again.status, first.status);
    let claimed = Obstacle::TargetClaimed {
        target: "podinfo".into(),
        owner: "older".into(),
    };
    assert_eq!(
        events(&blocked(&again.status, (&claimed, INTERVAL), sim.now)),
        [Reason::TargetClaimed]
    );
}

#[test]
fn a_runnable_canary_clears_ready_and_records_mtls_and_configs() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    let metric = Obstacle::InvalidMetric("x".into());
    sim.status = blocked(&sim.status, (&metric, BLOCKED_RECHECK), sim.now).status;
    sim.target = "rev1".into();
    let observations = Observations {
        mtls: Some((Reason::MTLSStrict, "STRICT".into())),
        configs: [("configmap/settings".to_string(), "abc".to_string())].into(),
        ..sim.observations()
    };
    let decision = decided(&sim, &observations);
    let ready = decision
        .status
        .condition(ConditionType::Ready)
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("Initialized")),
        "the obstacle is gone from Ready"
    );
    assert!(decision.status.condition(ConditionType::Stalled).is_none());
    let mtls = decision
        .status
        .condition(ConditionType::MTLS)
        .expect("MTLS");
    assert_eq!(mtls.status, "True");
    assert_eq!(decision.status.tracked_configs, observations.configs);
    sim.target = "rev2".into();
    let moved = decided(
        &sim,
        &Observations {
            ..sim.observations()
        },
    );
    assert!(
        moved.status.tracked_configs.is_empty(),
        "configs of a revision not applied"
    );
}

#[test]
fn routes_that_disagree_after_a_restart_are_written_again_first() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    for _ in 0..10 {
        if sim.status.canary_weight > 0 {
            break;
        }
        sim.tick();
    }
    let weight = sim.status.canary_weight;
    assert!(weight > 0);
    let mesh = Routes {
        mirror_percent: Some(5),
        ..Routes::weighted(weight + 20)
    };
    let healthy = MetricOutcome {
        name: "request-success-rate".into(),
        value: Ok(99.9),
        comparison: None,
    };
    let observations = Observations {
        mesh_routes: Some(mesh),
        metrics: Some(vec![healthy]),
        ..sim.observations()
    };
    let decision = decided(&sim, &observations);
    assert_eq!(
        decision.actions.first(),
        Some(&Action::SetRoutes(Routes {
            mirror_percent: Some(5),
            ..Routes::weighted(weight)
        }))
    );
    assert!(events(&decision).contains(&Reason::RoutesResumed));
    assert_eq!(
        resumed_routes(&sim.status, Some(Routes::weighted(weight))),
        None
    );
    let mut idle = sim.status.clone();
    idle.phase = CanaryPhase::Succeeded;
    assert_eq!(
        resumed_routes(&idle, Some(mesh)),
        None,
        "only an active rollout resumes"
    );
}

#[test]
fn an_unreadable_request_is_answered_once() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    let unreadable = Unreadable {
        marker: "unreadable-0a0b".into(),
        message: "annotation aviary.dev/request is not a request".into(),
    };
    let observations = Observations {
        request: Some(Err(unreadable.clone())),
        ..sim.observations()
    };
    let first = decided(&sim, &observations);
    assert!(events(&first).contains(&Reason::RequestIgnored));
    assert_eq!(
        first.status.handled_request.as_deref(),
        Some("unreadable-0a0b")
    );
    sim.status = first.status;
    let again = decided(&sim, &observations);
    assert!(!events(&again).contains(&Reason::RequestIgnored));
}
