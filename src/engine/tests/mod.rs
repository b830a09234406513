//! Engine tests on a simulated clock: every phase transition and every strategy.

mod admission;
mod crashes;
mod hooks;
mod judging;
mod operator;
mod revisions;
mod strategies;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::api::{
    CanaryAnalysis, CanaryMetric, CanaryPhase, CanaryService, CanarySpec, CanaryStatus,
    CanaryWebhook, Reason, RequestMatch, StringMatch, TargetRef, ThresholdRange,
};

const INTERVAL: Duration = Duration::from_secs(30);

/// A canary driven by hand: the test sets what the world looks like, the sim answers the engine's
/// needs from that, applies actions to its small model of the world, and moves the clock.
struct Sim {
    spec: CanarySpec,
    status: CanaryStatus,
    now: Timestamp,
    target: String,
    primary: String,
    primary_ready: bool,
    canary_ready: bool,
    target_up: bool,
    routes: Routes,
    /// Value returned for every metric; `Err` simulates no data or a provider failure.
    metric: Result<f64, Unmeasured>,
    /// What comparative metrics see of both sides.
    comparison: Option<Comparison>,
    /// Which hook types currently refuse.
    refusing: Vec<HookType>,
    hooks_called: Vec<HookType>,
    events: Vec<Event>,
    /// The operator request the canary carries.
    request: Option<crate::api::OperatorRequest>,
    /// Each status a decision stored ahead of its effects.
    stored: Vec<CanaryStatus>,
    /// Decisions made so far.
    decisions: usize,
    /// Crash in decision `.0` after its first `.1` actions: keep only what was stored.
    crash: Option<(usize, usize)>,
    /// The next decision is the first of a new controller: it reads the mesh back.
    resuming: bool,
    /// Every moment traffic was routed to a target scaled to zero.
    unserved: Vec<String>,
}

impl Sim {
    fn new(spec: CanarySpec) -> Sim {
        Sim {
            spec,
            status: CanaryStatus::default(),
            now: Timestamp::from_second(1_800_000_000).unwrap(),
            target: "rev1".into(),
            primary: "none".into(),
            primary_ready: false,
            canary_ready: true,
            target_up: true,
            routes: Routes::default(),
            metric: Ok(99.9),
            comparison: None,
            refusing: Vec::new(),
            hooks_called: Vec::new(),
            events: Vec::new(),
            request: None,
            stored: Vec::new(),
            decisions: 0,
            crash: None,
            resuming: false,
            unserved: Vec::new(),
        }
    }

    /// A sim whose primary already runs rev1, with rev2 just deployed to the target.
    fn initialized(spec: CanarySpec) -> Sim {
        let mut sim = Sim::new(spec);
        sim.tick();
        sim.primary_ready = true;
        sim.tick();
        assert_eq!(sim.status.phase, CanaryPhase::Initialized);
        sim.target = "rev2".into();
        sim
    }

    /// The spec read as the controller reads it; the tests write only valid specs.
    fn plan(&self) -> crate::plan::Plan {
        let options = crate::plan::Options {
            allow_short_intervals: true,
            ..Default::default()
        };
        crate::plan::plan(&self.spec, options).expect("a valid spec")
    }

    fn observations(&self) -> Observations {
        Observations {
            target_revision: Some(self.target.clone()),
            primary_revision: Some(self.primary.clone()),
            primary_ready: self.primary_ready,
            canary_ready: self.canary_ready && self.target_up,
            request: self.request.clone().map(Ok),
            mesh_routes: self.resuming.then_some(self.routes),
            ..Observations::default()
        }
    }

    /// One call of the engine at the current time, answering its needs; returns the requeue delay.
    fn decide_now(&mut self) -> Duration {
        let mut observations = self.observations();
        let decision = loop {
            let plan = self.plan();
            let input = Input {
                name: "podinfo.test",
                plan: &plan,
                status: &self.status,
                observations: &observations,
                now: self.now,
            };
            match decide(input) {
                Step::Decided(decision) => break *decision,
                Step::Need(Need::Hooks(kind)) => {
                    self.hooks_called.push(kind);
                    let ok = !self.refusing.contains(&kind);
                    observations.hooks.insert(
                        kind,
                        vec![HookOutcome {
                            name: format!("{}-hook", kind.as_str()),
                            ok,
                            message: "status 403".into(),
                        }],
                    );
                }
                Step::Need(Need::Metrics) => {
                    let outcomes = self
                        .spec
                        .analysis
                        .iter()
                        .flat_map(|a| a.metrics.iter())
                        .map(|m| MetricOutcome {
                            name: m.name.clone(),
                            value: self.metric.clone(),
                            comparison: self.comparison.clone().map(|c| match c {
                                // Each step's counts are new: they end now.
                                Comparison::Counts {
                                    canary, primary, ..
                                } => Comparison::Counts {
                                    canary,
                                    primary,
                                    through: self.now.as_millisecond(),
                                },
                                other => other,
                            }),
                        })
                        .collect();
                    observations.metrics = Some(outcomes);
                }
            }
        };
        let crash = self.crash.filter(|(at, _)| *at == self.decisions);
        self.decisions += 1;
        let made = crash.map_or(decision.actions.len(), |(_, after)| after);
        let mut stored = None;
        for action in decision.actions.iter().take(made) {
            if *action == Action::StoreStatus {
                // As the driver stores it.
                let intent = CanaryStatus {
                    effects_pending: true,
                    ..decision.status.clone()
                };
                stored = Some(intent);
            }
            self.apply(action, &decision.status);
        }
        self.resuming = crash.is_some();
        match (crash, stored) {
            (Some(_), None) => {}
            (Some(_), Some(intent)) => self.status = intent,
            (None, _) => self.status = decision.status,
        }
        decision.requeue_after
    }

    fn apply(&mut self, action: &Action, status: &CanaryStatus) {
        match action {
            Action::StoreStatus => self.stored.push(status.clone()),
            Action::Bootstrap => self.primary = self.target.clone(),
            Action::SetRoutes(routes) => self.routes = *routes,
            Action::ScaleTarget { up } => self.target_up = *up,
            Action::Promote => self.primary = self.target.clone(),
            Action::RunHooks(kind) => self.hooks_called.push(*kind),
            Action::Event(event) => self.events.push(event.clone()),
        }
        let routed = self.routes.canary_weight > 0 || self.routes.match_to_canary;
        if routed && !self.target_up {
            let moment = format!("decision {} after {action:?}", self.decisions);
            self.unserved.push(moment);
        }
    }

    /// Calls the engine, then moves the clock by one interval.
    fn tick(&mut self) {
        self.decide_now();
        self.advance(INTERVAL);
    }

    fn advance(&mut self, by: Duration) {
        self.now = self
            .now
            .checked_add(jiff::SignedDuration::try_from(by).unwrap())
            .unwrap();
    }

    /// Ticks until the phase is one of `phases`, at most `limit` times; returns the ticks taken.
    fn run_until(&mut self, phases: &[CanaryPhase], limit: usize) -> usize {
        for taken in 1..=limit {
            self.tick();
            if phases.contains(&self.status.phase) {
                return taken;
            }
        }
        panic!(
            "phase {:?} not reached in {limit} ticks; at {:?}",
            phases, self.status
        );
    }

    fn weights_seen(&mut self, limit: usize) -> Vec<i32> {
        let mut weights = Vec::new();
        for _ in 0..limit {
            self.tick();
            if weights.last() != Some(&self.routes.canary_weight) {
                weights.push(self.routes.canary_weight);
            }
            if matches!(
                self.status.phase,
                CanaryPhase::Succeeded | CanaryPhase::Failed
            ) {
                break;
            }
        }
        weights
    }

    /// The message of the first event with `reason`.
    fn message_of(&self, reason: Reason) -> &str {
        let found = self.events.iter().find(|e| e.reason == reason);
        &found.unwrap_or_else(|| panic!("no {reason} event")).message
    }

    fn has_event(&self, reason: &str) -> bool {
        self.events.iter().any(|e| e.reason.as_str() == reason)
    }
}

fn success_rate_metric() -> CanaryMetric {
    CanaryMetric {
        name: "request-success-rate".into(),
        threshold_range: Some(ThresholdRange {
            min: Some(99.0),
            max: None,
        }),
        interval: Some("1m".into()),
        ..CanaryMetric::default()
    }
}

fn canary_spec(analysis: CanaryAnalysis) -> CanarySpec {
    CanarySpec {
        target_ref: TargetRef {
            name: "podinfo".into(),
            ..TargetRef::default()
        },
        service: CanaryService {
            port: 9898,
            ..CanaryService::default()
        },
        analysis: Some(CanaryAnalysis {
            interval: Some("30s".into()),
            metrics: vec![success_rate_metric()],
            ..analysis
        }),
        ..CanarySpec::default()
    }
}

/// An A/B test of `iterations` for requests with `x-canary: insider`.
fn ab_spec(iterations: i32) -> CanarySpec {
    canary_spec(CanaryAnalysis {
        iterations: Some(iterations),
        r#match: vec![RequestMatch {
            headers: BTreeMap::from([(
                "x-canary".to_string(),
                StringMatch {
                    exact: Some("insider".into()),
                    ..StringMatch::default()
                },
            )]),
            ..RequestMatch::default()
        }],
        ..CanaryAnalysis::default()
    })
}

fn stepped(step: i32, max: i32, threshold: i32) -> CanarySpec {
    canary_spec(CanaryAnalysis {
        step_weight: Some(step),
        max_weight: Some(max),
        threshold: Some(threshold),
        ..CanaryAnalysis::default()
    })
}

fn hook(kind: HookType) -> CanaryWebhook {
    CanaryWebhook {
        name: format!("{}-hook", kind.as_str()),
        r#type: kind,
        url: "http://127.0.0.1:1/".into(),
        ..CanaryWebhook::default()
    }
}

fn with_hooks(mut spec: CanarySpec, kinds: &[HookType]) -> CanarySpec {
    let analysis = spec.analysis.as_mut().unwrap();
    analysis.webhooks = kinds.iter().map(|k| hook(*k)).collect();
    spec
}

#[test]
fn bootstrap_waits_for_primary_then_initializes() {
    let mut sim = Sim::new(stepped(20, 60, 2));
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Initializing);
    assert_eq!(sim.routes, Routes::primary_only());
    sim.primary_ready = true;
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Initialized);
    assert_eq!(sim.status.last_applied_spec.as_deref(), Some("rev1"));
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev1"));
    assert!(
        !sim.target_up,
        "target is scaled to zero once the primary serves"
    );
    let promoted = sim
        .status
        .conditions
        .iter()
        .find(|c| c.r#type == "Promoted")
        .unwrap();
    assert_eq!(promoted.status, "True");
}

#[test]
fn initialization_fails_after_progress_deadline() {
    let mut spec = stepped(20, 60, 2);
    spec.progress_deadline_seconds = Some(60);
    let mut sim = Sim::new(spec);
    sim.run_until(&[CanaryPhase::Failed], 5);
    assert!(sim.has_event("InitializationFailed"));
}

#[test]
fn healthy_canary_steps_to_max_weight_and_is_promoted() {
    let mut sim = Sim::initialized(stepped(20, 60, 2));
    let weights = sim.weights_seen(20);
    assert_eq!(weights, vec![0, 20, 40, 60, 0]);
    assert_eq!(sim.status.phase, CanaryPhase::Succeeded);
    assert_eq!(sim.primary, "rev2");
    assert_eq!(sim.status.last_promoted_spec.as_deref(), Some("rev2"));
    assert!(!sim.target_up);
    assert!(
        sim.hooks_called.is_empty(),
        "no hooks declared, none called"
    );
    let promoted = sim
        .status
        .conditions
        .iter()
        .find(|c| c.r#type == "Promoted")
        .unwrap();
    assert_eq!(
        (promoted.status.as_str(), promoted.reason.as_deref()),
        ("True", Some("Succeeded"))
    );
}

#[test]
fn phases_of_a_promotion_in_order() {
    let mut sim = Sim::initialized(stepped(50, 50, 1));
    let mut phases = vec![];
    for _ in 0..10 {
        sim.tick();
        if phases.last() != Some(&sim.status.phase) {
            phases.push(sim.status.phase);
        }
    }
    assert_eq!(
        phases,
        vec![
            CanaryPhase::Progressing,
            CanaryPhase::Promoting,
            CanaryPhase::Finalising,
            CanaryPhase::Succeeded
        ]
    );
}

#[test]
fn step_weights_are_followed_and_last_is_the_max() {
    let mut sim = Sim::initialized(canary_spec(CanaryAnalysis {
        step_weights: vec![1, 2, 10, 80],
        ..CanaryAnalysis::default()
    }));
    assert_eq!(sim.weights_seen(20), vec![0, 1, 2, 10, 80, 0]);
    assert_eq!(sim.status.phase, CanaryPhase::Succeeded);
}

#[test]
fn step_weight_promotion_shifts_back_gradually() {
    let mut spec = stepped(50, 100, 1);
    spec.analysis.as_mut().unwrap().step_weight_promotion = Some(40);
    let mut sim = Sim::initialized(spec);
    assert_eq!(sim.weights_seen(20), vec![0, 50, 100, 60, 20, 0]);
    assert_eq!(sim.status.phase, CanaryPhase::Succeeded);
}

#[test]
fn rollback_is_decided_in_the_interval_that_reaches_the_threshold() {
    let mut sim = Sim::initialized(stepped(20, 60, 2));
    sim.tick(); // new revision -> Progressing
    sim.tick(); // traffic enters at 20
    assert_eq!(sim.routes.canary_weight, 20);
    sim.metric = Ok(80.0);
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Progressing);
    assert_eq!(sim.status.failed_checks, 1);
    assert_eq!(
        sim.routes.canary_weight, 20,
        "a failed check halts advancement"
    );
    sim.tick();
    assert_eq!(sim.status.failed_checks, 2);
    assert_eq!(
        sim.status.phase,
        CanaryPhase::Failed,
        "rolled back in the same interval"
    );
    assert_eq!(sim.routes, Routes::primary_only());
    assert!(!sim.target_up);
    assert_eq!(sim.primary, "rev1", "primary untouched");
    assert!(sim.has_event("RolledBack"));
    let message = sim.message_of(Reason::RolledBack);
    assert!(message.contains("request-success-rate = 80"), "{message}");
}

#[test]
fn successes_do_not_reset_failed_checks() {
    let mut sim = Sim::initialized(stepped(10, 100, 2));
    sim.tick();
    sim.tick();
    sim.metric = Ok(50.0);
    sim.tick();
    assert_eq!(sim.status.failed_checks, 1);
    sim.metric = Ok(99.9);
    sim.tick();
    sim.tick();
    assert_eq!(sim.status.failed_checks, 1);
    sim.metric = Ok(50.0);
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
}

#[test]
fn no_data_is_a_failed_check_not_a_pass() {
    let mut sim = Sim::initialized(stepped(20, 60, 1));
    sim.tick();
    sim.tick();
    sim.metric = Err(Unmeasured::NoData(
        "no traffic reached podinfo-canary".into(),
    ));
    sim.tick();
    assert_eq!(sim.status.phase, CanaryPhase::Failed);
    assert!(sim
        .events
        .iter()
        .any(|e| e.message.contains("no traffic reached")));
}
