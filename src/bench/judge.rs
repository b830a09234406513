//! `aviary bench judge`: simulated traffic with known truth, judged two ways — Flagger-style
//! thresholds (thresholdRange, threshold 5) and the comparative judge — over the same seeded
//! runs, so false rollbacks, missed regressions and time to a decision can be compared.
//!
//! Each run is one analysis of `INTERVALS` one-minute intervals. Requests arrive at the
//! scenario's rate, split by the canary's weight; each fails with its side's error probability
//! and takes a log-normal time (median 100 ms, σ 0.5, so P99 ≈ 320 ms), scaled by the side's
//! latency factor and, in noisy scenarios, by a per-5-second noise factor drawn independently
//! for each side.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::judge::{self, Counts, Direction, SequentialState, Settings, Verdict};

const INTERVALS: u32 = 10;
const INTERVAL_SECONDS: f64 = 60.0;
/// Sub-intervals per interval whose P99s feed the Mann–Whitney test.
const SUB_INTERVALS: usize = 12;
const MEDIAN_MS: f64 = 100.0;
const SIGMA: f64 = 0.5;
/// Flagger-style thresholds a user of that baseline would write.
const MIN_SUCCESS_RATE: f64 = 98.0;
const MAX_P99_MS: f64 = 500.0;
const FAILED_CHECKS: u32 = 5;

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    regression: bool,
    rps: f64,
    canary_weight: f64,
    primary_errors: f64,
    canary_errors: f64,
    canary_latency: f64,
    noise: f64,
}

const SCENARIOS: [Scenario; 8] = [
    Scenario {
        name: "healthy",
        regression: false,
        rps: 100.0,
        canary_weight: 0.5,
        primary_errors: 0.01,
        canary_errors: 0.01,
        canary_latency: 1.0,
        noise: 0.0,
    },
    Scenario {
        name: "error rate 1% -> 5%",
        regression: true,
        rps: 100.0,
        canary_weight: 0.5,
        primary_errors: 0.01,
        canary_errors: 0.05,
        canary_latency: 1.0,
        noise: 0.0,
    },
    Scenario {
        name: "P99 +50%",
        regression: true,
        rps: 100.0,
        canary_weight: 0.5,
        primary_errors: 0.01,
        canary_errors: 0.01,
        canary_latency: 1.5,
        noise: 0.0,
    },
    Scenario {
        name: "noisy latency, no change",
        regression: false,
        rps: 100.0,
        canary_weight: 0.5,
        primary_errors: 0.01,
        canary_errors: 0.01,
        canary_latency: 1.0,
        noise: 0.35,
    },
    Scenario {
        name: "low traffic (2 rps), healthy",
        regression: false,
        rps: 2.0,
        canary_weight: 0.5,
        primary_errors: 0.01,
        canary_errors: 0.01,
        canary_latency: 1.0,
        noise: 0.0,
    },
    Scenario {
        name: "low traffic (2 rps), error rate 1% -> 5%",
        regression: true,
        rps: 2.0,
        canary_weight: 0.5,
        primary_errors: 0.01,
        canary_errors: 0.05,
        canary_latency: 1.0,
        noise: 0.0,
    },
    Scenario {
        name: "canary at 10% weight, healthy",
        regression: false,
        rps: 100.0,
        canary_weight: 0.1,
        primary_errors: 0.01,
        canary_errors: 0.01,
        canary_latency: 1.0,
        noise: 0.0,
    },
    Scenario {
        name: "canary at 10% weight, error rate 1% -> 5%",
        regression: true,
        rps: 100.0,
        canary_weight: 0.1,
        primary_errors: 0.01,
        canary_errors: 0.05,
        canary_latency: 1.0,
        noise: 0.0,
    },
];

/// One side's traffic in one interval.
struct Interval {
    requests: f64,
    errors: f64,
    /// P99 of each sub-interval that saw requests.
    sub_p99: Vec<f64>,
    /// P99 of the whole interval.
    p99: f64,
}

fn standard_normal(rng: &mut StdRng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean > 50.0 {
        return (mean + mean.sqrt() * standard_normal(rng)).round().max(0.0) as u64;
    }
    // Knuth's method for small means.
    let limit = (-mean).exp();
    let (mut count, mut product) = (0, rng.random::<f64>());
    while product > limit {
        count += 1;
        product *= rng.random::<f64>();
    }
    count
}

fn p99(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64) * 0.99).ceil() as usize;
    values[index.clamp(1, values.len()) - 1]
}

fn simulate(rng: &mut StdRng, rps: f64, error_rate: f64, latency: f64, noise: f64) -> Interval {
    let per_sub = rps * INTERVAL_SECONDS / SUB_INTERVALS as f64;
    let (mut requests, mut errors) = (0.0, 0.0);
    let mut all = Vec::new();
    let mut sub_p99 = Vec::new();
    for _ in 0..SUB_INTERVALS {
        let count = poisson(rng, per_sub);
        let factor = latency * (noise * standard_normal(rng)).exp();
        let mut times: Vec<f64> = (0..count)
            .map(|_| MEDIAN_MS * factor * (SIGMA * standard_normal(rng)).exp())
            .collect();
        errors += (0..count)
            .filter(|_| rng.random::<f64>() < error_rate)
            .count() as f64;
        requests += count as f64;
        all.extend_from_slice(&times);
        if !times.is_empty() {
            sub_p99.push(p99(&mut times));
        }
    }
    let p99 = if all.is_empty() { 0.0 } else { p99(&mut all) };
    Interval {
        requests,
        errors,
        sub_p99,
        p99,
    }
}

/// When a method decided in one run: the interval and whether it rolled back.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    interval: u32,
    rolled_back: bool,
}

fn settings(direction: Direction, allowed_increase: f64) -> Settings {
    Settings {
        confidence: 0.99,
        allowed_increase,
        allowed_decrease: 0.2,
        direction,
        looks: INTERVALS,
    }
}

fn run_once(rng: &mut StdRng, scenario: &Scenario) -> (Outcome, Outcome) {
    let mut threshold: Option<Outcome> = None;
    let mut judged: Option<Outcome> = None;
    let mut failed_checks = 0;
    let mut errors = SequentialState::default();
    // Latency may rise 20 % before it counts; any rise of the error rate counts.
    let latency_settings = settings(Direction::Increase, 0.2);
    let error_settings = settings(Direction::Increase, 0.0);
    for interval in 1..=INTERVALS {
        let canary_rps = scenario.rps * scenario.canary_weight;
        let canary = simulate(
            rng,
            canary_rps,
            scenario.canary_errors,
            scenario.canary_latency,
            scenario.noise,
        );
        let primary = simulate(
            rng,
            scenario.rps - canary_rps,
            scenario.primary_errors,
            1.0,
            scenario.noise,
        );
        if threshold.is_none() {
            // Flagger: an interval without requests has no value, which is a failed check.
            let success = if canary.requests > 0.0 {
                100.0 * (1.0 - canary.errors / canary.requests)
            } else {
                0.0
            };
            if success < MIN_SUCCESS_RATE || canary.requests == 0.0 || canary.p99 > MAX_P99_MS {
                failed_checks += 1;
            }
            if failed_checks >= FAILED_CHECKS {
                threshold = Some(Outcome {
                    interval,
                    rolled_back: true,
                });
            }
        }
        if judged.is_none() {
            let counts = judge::judge_counts(
                &error_settings,
                Counts {
                    requests: canary.requests,
                    errors: canary.errors,
                },
                Counts {
                    requests: primary.requests,
                    errors: primary.errors,
                },
                &mut errors,
            );
            let samples =
                judge::judge_samples(&latency_settings, &canary.sub_p99, &primary.sub_p99);
            if counts.verdict == Verdict::Fail || samples.verdict == Verdict::Fail {
                judged = Some(Outcome {
                    interval,
                    rolled_back: true,
                });
            }
        }
        if threshold.is_some() && judged.is_some() {
            break;
        }
    }
    let promoted = Outcome {
        interval: INTERVALS,
        rolled_back: false,
    };
    (threshold.unwrap_or(promoted), judged.unwrap_or(promoted))
}

#[derive(Default)]
struct Tally {
    rollbacks: u32,
    intervals: u64,
    runs: u32,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        self.runs += 1;
        self.rollbacks += u32::from(outcome.rolled_back);
        self.intervals += u64::from(outcome.interval);
    }

    fn rollback_rate(&self) -> f64 {
        f64::from(self.rollbacks) / f64::from(self.runs.max(1))
    }

    fn mean_intervals(&self) -> f64 {
        self.intervals as f64 / f64::from(self.runs.max(1))
    }
}

/// Runs every scenario `runs` times from `seed` and reports one JSON object.
pub fn judge_bench(runs: u32, seed: u64) -> Value {
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut scenarios = Vec::new();
    let (mut healthy, mut regressions) = (
        [Tally::default(), Tally::default()],
        [Tally::default(), Tally::default()],
    );
    for scenario in &SCENARIOS {
        let (mut threshold, mut judged) = (Tally::default(), Tally::default());
        for _ in 0..runs {
            let (t, j) = run_once(&mut rng, scenario);
            threshold.add(t);
            judged.add(j);
            let pool = if scenario.regression {
                &mut regressions
            } else {
                &mut healthy
            };
            pool[0].add(t);
            pool[1].add(j);
        }
        let rate_name = if scenario.regression {
            "missed_regression_rate"
        } else {
            "false_rollback_rate"
        };
        let rate = |tally: &Tally| {
            let rolled = tally.rollback_rate();
            super::round(if scenario.regression {
                1.0 - rolled
            } else {
                rolled
            })
        };
        scenarios.push(json!({
            "scenario": scenario.name,
            "truth": if scenario.regression { "regression" } else { "healthy" },
            "canary_rps": scenario.rps * scenario.canary_weight,
            "thresholds": { rate_name: rate(&threshold), "mean_intervals_to_decision": super::round(threshold.mean_intervals()) },
            "judge": { rate_name: rate(&judged), "mean_intervals_to_decision": super::round(judged.mean_intervals()) },
        }));
    }
    let summary = |index: usize| {
        json!({
            "false_rollback_rate": super::round(healthy[index].rollback_rate()),
            "missed_regression_rate": super::round(1.0 - regressions[index].rollback_rate()),
            "mean_intervals_to_decision_on_regressions": super::round(regressions[index].mean_intervals()),
            "mean_intervals_to_decision_on_healthy": super::round(healthy[index].mean_intervals()),
        })
    };
    let speedup = regressions[1].mean_intervals() / regressions[0].mean_intervals().max(1e-9);
    json!({
        "benchmark": "judge",
        "seed": seed,
        "runs_per_scenario": runs,
        "intervals_per_analysis": INTERVALS,
        "methods": {
            "thresholds": format!("request-success-rate >= {MIN_SUCCESS_RATE}, request-duration P99 <= {MAX_P99_MS} ms, rollback at {FAILED_CHECKS} failed checks"),
            "judge": "compare: primary; confidence 0.99; sequential test on error counts (any increase), Mann-Whitney U on 5 s P99s (allowed increase 20%)",
        },
        "scenarios": scenarios,
        "summary": { "thresholds": summary(0), "judge": summary(1) },
        "judge_vs_thresholds_interval_ratio_on_regressions": super::round(speedup),
        "targets": {
            "false_rollback_rate_at_most_0.01": healthy[1].rollback_rate() <= 0.01,
            "missed_regression_rate_at_most_0.05": 1.0 - regressions[1].rollback_rate() <= 0.05,
            "intervals_at_most_half_of_thresholds": speedup <= 0.5,
        },
        "elapsed_seconds": super::round(started.elapsed().as_secs_f64()),
        "machine": super::machine("pure simulation on one core; the numbers depend only on the seed"),
    })
}
