//! A controller that stops after any action of any decision: the next one, starting from what
//! was stored and reading the mesh back, ends the rollout as an uninterrupted run does, and no
//! request is ever routed to a target scaled to zero.

use super::*;

/// A rollout to drive from its start, and what its uninterrupted run ends in.
struct Scenario {
    name: &'static str,
    spec: fn() -> CanarySpec,
    metric: Result<f64, Unmeasured>,
    /// The largest rise of the canary's weight from one route write to the next.
    max_rise: i32,
}

fn scenarios() -> Vec<Scenario> {
    let ab = || ab_spec(2);
    let blue_green = || {
        canary_spec(CanaryAnalysis {
            iterations: Some(2),
            ..CanaryAnalysis::default()
        })
    };
    let gradual = || {
        let mut spec = stepped(50, 100, 1);
        spec.analysis.as_mut().unwrap().step_weight_promotion = Some(40);
        spec
    };
    let good = Ok(99.9);
    let bad = Ok(1.0);
    vec![
        Scenario {
            name: "canary promoted",
            spec: || stepped(20, 60, 1),
            metric: good.clone(),
            max_rise: 20,
        },
        Scenario {
            name: "canary rolled back",
            spec: || stepped(20, 60, 1),
            metric: bad.clone(),
            max_rise: 20,
        },
        Scenario {
            name: "gradual promotion",
            spec: gradual,
            metric: good.clone(),
            max_rise: 50,
        },
        Scenario {
            name: "blue/green promoted",
            spec: blue_green,
            metric: good.clone(),
            max_rise: 100,
        },
        Scenario {
            name: "A/B rolled back",
            spec: ab,
            metric: bad,
            max_rise: 0,
        },
        Scenario {
            name: "A/B promoted",
            spec: ab,
            metric: good,
            max_rise: 0,
        },
    ]
}

/// Runs `scenario` from a new revision to its end, crashing where `crash` says; returns the
/// sim and the canary weights routed, in order.
fn run(scenario: &Scenario, crash: Option<(usize, usize)>) -> (Sim, Vec<i32>) {
    let mut sim = Sim::initialized((scenario.spec)());
    sim.metric = scenario.metric.clone();
    sim.decisions = 0;
    sim.crash = crash;
    let mut weights = vec![sim.routes.canary_weight];
    for _ in 0..40 {
        sim.tick();
        if weights.last() != Some(&sim.routes.canary_weight) {
            weights.push(sim.routes.canary_weight);
        }
        let settled = matches!(
            sim.status.phase,
            CanaryPhase::Succeeded | CanaryPhase::Failed
        );
        if settled && !sim.resuming {
            break;
        }
    }
    (sim, weights)
}

#[test]
fn a_crash_after_any_action_ends_the_rollout_as_an_uninterrupted_run_does() {
    let mut crash_points = 0;
    for scenario in scenarios() {
        let (clean, _) = run(&scenario, None);
        assert!(
            clean.unserved.is_empty(),
            "{}: {:?}",
            scenario.name,
            clean.unserved
        );
        let decisions = clean.decisions;
        for at in 0..decisions {
            // Past a decision's last action is the same crash as right after it.
            for after in 0..=8 {
                crash_points += 1;
                let (sim, weights) = run(&scenario, Some((at, after)));
                let case = format!(
                    "{} crashed in decision {at} after {after} actions",
                    scenario.name
                );
                assert_eq!(
                    sim.status.phase, clean.status.phase,
                    "{case}: {:?}",
                    sim.status
                );
                assert_eq!(sim.primary, clean.primary, "{case}");
                assert_eq!(sim.routes, Routes::primary_only(), "{case}");
                assert!(!sim.target_up, "{case}: the target is left running");
                assert!(!sim.status.effects_pending, "{case}");
                assert!(sim.unserved.is_empty(), "{case}: {:?}", sim.unserved);
                let rises = weights.windows(2).map(|w| w[1] - w[0]);
                assert!(
                    rises.clone().all(|rise| rise <= scenario.max_rise),
                    "{case}: weights {weights:?}"
                );
            }
        }
    }
    assert!(crash_points > 50, "only {crash_points} crash points tried");
}

#[test]
fn a_promotion_cut_short_never_copies_a_revision_that_moved_on_since() {
    let scenario = &scenarios()[0];
    // The decision that stores the promotion.
    let mut probe = Sim::initialized((scenario.spec)());
    probe.decisions = 0;
    while probe.status.phase != CanaryPhase::Promoting {
        assert!(probe.decisions < 40, "never promoted");
        probe.tick();
    }
    let promoting = probe.decisions - 1;
    let mut sim = Sim::initialized((scenario.spec)());
    sim.decisions = 0;
    sim.crash = Some((promoting, 2));
    for _ in 0..=promoting {
        sim.tick();
    }
    assert_eq!(
        sim.status.phase,
        CanaryPhase::Promoting,
        "decision {promoting}: {:?}",
        sim.events
    );
    assert_eq!(
        sim.primary, "rev1",
        "stopped before the primary was written"
    );
    sim.target = "rev3".into();
    sim.tick();
    assert_eq!(sim.primary, "rev1", "rev3 was never analysed");
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    assert_eq!(sim.status.last_applied_spec.as_deref(), Some("rev3"));
}
