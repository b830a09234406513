//! `aviary bench judge`: simulated traffic with known truth, judged two ways — Flagger-style
//! thresholds (thresholdRange, threshold 5) and the comparative judge — over the same seeded
//! runs, so false rollbacks, missed regressions and time to a decision can be compared.
//!
//! Each run is one analysis of `INTERVALS` one-minute intervals. Requests arrive each second
//! at the scenario's rate, split by the canary's weight; each fails with its side's error
//! probability and takes a log-normal time (median 100 ms, σ 0.5, so P99 ≈ 320 ms), scaled by
//! the side's latency factor and by a per-5-second noise factor of each side's own. Prometheus
//! is simulated too: Istio's histogram buckets, a scrape every 15 s at each side's own
//! offset, and `rate()`, `increase()` and `histogram_quantile()` as PromQL computes them. The
//! judge samples exactly what the controller samples: the sub-intervals and query windows of
//! [`crate::judge::sampling`], at each step's time.

mod scenarios;
mod traffic;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::judge::histogram::{merged_pairs, Buckets};
use crate::judge::sampling::SamplingModel;
use crate::judge::stats::{normal_cdf, normal_quantile};
use crate::judge::{self, Counts, Direction, PairedState, SequentialState, Settings, Verdict};
use scenarios::{Scenario, SCENARIOS};
use traffic::Scraped;

const INTERVALS: u32 = 10;
const INTERVAL_SECONDS: u32 = 60;
const SCRAPE_SECONDS: u32 = 15;
/// Flagger-style thresholds a user of that baseline would write.
const MIN_SUCCESS_RATE: f64 = 98.0;
const MAX_P99_MS: f64 = 500.0;
const FAILED_CHECKS: u32 = 5;
/// The judge's allowance on latency; any rise of the error rate counts.
const LATENCY_ALLOWANCE: f64 = 0.2;
/// Regressions this many times the allowance or more, on a canary with at least
/// `TARGET_RPS`, must be caught (the missed-regression target).
const TARGET_EFFECT: f64 = 1.5;
const TARGET_RPS: f64 = 10.0;

/// When a method decided in one run: the interval and whether it rolled back.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    interval: u32,
    rolled_back: bool,
}

fn settings(allowed_increase: f64) -> Settings {
    Settings {
        confidence: 0.99,
        allowed_increase,
        allowed_decrease: 0.2,
        direction: Direction::Increase,
    }
}

/// Flagger's checks at the end of an interval: the canary's success rate and P99 over it.
fn threshold_fails(canary: &Scraped, now: f64) -> bool {
    let (success, p99) = canary.success_and_p99(now, f64::from(INTERVAL_SECONDS));
    // An interval without requests has no value, which is a failed check.
    success.is_none_or(|s| s < MIN_SUCCESS_RATE) || p99.is_none_or(|p| p > MAX_P99_MS)
}

/// The comparative judge at the end of an interval, sampling as the controller does.
struct Judge {
    model: SamplingModel,
    errors: SequentialState,
    samples: PairedState,
}

impl Judge {
    fn fails(&mut self, (canary, primary): (&Scraped, &Scraped), now: f64) -> bool {
        // As the controller counts: since the last look, over one scrape more, unstretched.
        let now_ms = (now * 1000.0) as i64;
        let since = self
            .errors
            .counted_until
            .map_or(f64::from(INTERVAL_SECONDS), |until| {
                (now_ms - until) as f64 / 1000.0
            });
        let scrape = self.model.scrape_interval.as_secs_f64();
        let counts = |side: &Scraped| {
            let (requests, errors) = side.counts(now, since + scrape);
            let unstretch = since / (since + scrape);
            Counts {
                requests: requests * unstretch,
                errors: errors * unstretch,
            }
        };
        let on_errors = judge::judge_counts(
            &settings(0.0),
            (counts(canary), counts(primary)),
            now_ms,
            &mut self.errors,
        );
        let interval = Duration::from_secs(u64::from(INTERVAL_SECONDS));
        let sub = self.model.sub_interval(interval);
        let width = self.model.query_window(sub).as_secs_f64();
        let looks = self
            .model
            .pending(sub, self.samples.sampled_until, now_ms, interval);
        let (pairs, through) = match looks {
            Some(looks) => {
                // As the controller reads them: rate() per second over the query window,
                // counted as requests over the sub-interval (`per`).
                let read = |side: &Scraped| -> BTreeMap<i64, Buckets> {
                    let at = |end: i64| end as f64 / 1000.0;
                    let rate = |b: Buckets| b.into_iter().map(|(le, n)| (le, n / width)).collect();
                    let histograms = looks.ends().map(|end| (end, side.buckets(at(end), width)));
                    histograms
                        .filter_map(|(end, b)| Some((end, rate(b?))))
                        .collect()
                };
                let (canary, primary) = (read(canary), read(primary));
                let start = looks.first_end - looks.step;
                let per = sub.as_secs_f64();
                let (pairs, through) = merged_pairs(looks.ends(), (&canary, &primary), per, start);
                (pairs, Some(through))
            }
            None => (Vec::new(), self.samples.sampled_until),
        };
        let sampled = judge::Sampled {
            pairs: &pairs,
            through,
            medians: true,
        };
        let on_latency =
            judge::judge_pairs(&settings(LATENCY_ALLOWANCE), sampled, &mut self.samples);
        on_errors.verdict == Verdict::Fail || on_latency.verdict == Verdict::Fail
    }
}

fn run_once(rng: &mut StdRng, scenario: &Scenario) -> (Outcome, Outcome) {
    let seconds = INTERVALS * INTERVAL_SECONDS;
    let scrape = |rng: &mut StdRng, side| {
        let offset = rng.random_range(0..SCRAPE_SECONDS);
        traffic::simulate(
            rng,
            &side,
            (seconds, SCRAPE_SECONDS, offset),
            scenario.incident,
        )
    };
    let canary = scrape(rng, scenario.canary());
    let primary = scrape(rng, scenario.primary());
    let mut judge = Judge {
        model: SamplingModel {
            scrape_interval: Duration::from_secs(u64::from(SCRAPE_SECONDS)),
        },
        errors: SequentialState::default(),
        samples: PairedState::default(),
    };
    let (mut threshold, mut judged, mut failed_checks) = (None, None, 0);
    for interval in 1..=INTERVALS {
        let now = f64::from(interval * INTERVAL_SECONDS);
        if threshold.is_none() {
            failed_checks += u32::from(threshold_fails(&canary, now));
            if failed_checks >= FAILED_CHECKS {
                threshold = Some(Outcome {
                    interval,
                    rolled_back: true,
                });
            }
        }
        if judged.is_none() && judge.fails((&canary, &primary), now) {
            judged = Some(Outcome {
                interval,
                rolled_back: true,
            });
        }
    }
    let promoted = Outcome {
        interval: INTERVALS,
        rolled_back: false,
    };
    (threshold.unwrap_or(promoted), judged.unwrap_or(promoted))
}

#[derive(Default, Clone, Copy)]
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

    fn merge(&mut self, other: &Tally) {
        self.rollbacks += other.rollbacks;
        self.intervals += other.intervals;
        self.runs += other.runs;
    }

    fn rollback_rate(&self) -> f64 {
        f64::from(self.rollbacks) / f64::from(self.runs.max(1))
    }

    fn mean_intervals(&self) -> f64 {
        self.intervals as f64 / f64::from(self.runs.max(1))
    }
}

/// The noise-free P99 of a side, by bisection on its time distribution.
fn true_p99(side: &traffic::Side) -> f64 {
    let (mut low, mut high) = (1.0_f64, 100_000.0_f64);
    for _ in 0..100 {
        let middle = (low * high).sqrt();
        if traffic::time_cdf(side, 1.0, middle) < 0.99 {
            low = middle;
        } else {
            high = middle;
        }
    }
    low
}

/// Whether the missed-regression target covers a scenario: a regression the judge is asked
/// to catch, big enough against its allowance, on a canary with enough traffic.
fn targeted(scenario: &Scenario, p99_ratio: f64) -> bool {
    let slower = p99_ratio - 1.0 >= TARGET_EFFECT * LATENCY_ALLOWANCE;
    let erring = scenario.canary_errors > scenario.primary_errors;
    scenario.regression && scenario.canary_rps() >= TARGET_RPS && (slower || erring)
}

/// The least share of runs that any test must miss of a latency regression that moves every
/// request alike, when its false alarms stay within α at the allowance's boundary: a test
/// that knew each side's every noise factor exactly would see the mean log factor of each,
/// `N(shift, 2σ²/blocks)` for their difference, and the one-sided Neyman–Pearson test of
/// `shift ≤ ln(1 + allowance)` at the end of the analysis misses `Φ(z_α − z)` of the time.
/// The judge sees less (a few requests per block, Prometheus's buckets) and must stay valid
/// at every look, so it can only miss more. None where the bound does not apply.
fn best_possible_missed(scenario: &Scenario) -> Option<f64> {
    let uniform = scenario.canary_tail.0 == 0.0 && scenario.incident.is_none();
    if !(scenario.regression && uniform && scenario.noise > 0.0 && scenario.canary_latency > 1.0) {
        return None;
    }
    let blocks = f64::from(INTERVALS * INTERVAL_SECONDS / traffic::NOISE_SECONDS);
    let spread = scenario.noise * (2.0 / blocks).sqrt();
    let z = (scenario.canary_latency.ln() - LATENCY_ALLOWANCE.ln_1p()) / spread;
    let alpha = 1.0 - settings(LATENCY_ALLOWANCE).confidence;
    Some(normal_cdf(normal_quantile(1.0 - alpha) - z))
}

/// One scenario's runs and its line of the report.
struct Measured {
    line: Value,
    tallies: [Tally; 2],
    targeted: bool,
    /// Targeted, and some test could meet the missed-regression target on it.
    attainable: bool,
}

fn measure(rng: &mut StdRng, scenario: &Scenario, runs: u32) -> Measured {
    let mut tallies = [Tally::default(), Tally::default()];
    for _ in 0..runs {
        let (t, j) = run_once(rng, scenario);
        tallies[0].add(t);
        tallies[1].add(j);
    }
    let p99_ratio = true_p99(&scenario.canary()) / true_p99(&scenario.primary());
    let targeted = targeted(scenario, p99_ratio);
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
    let met = if scenario.regression {
        !targeted || 1.0 - tallies[1].rollback_rate() <= 0.05
    } else {
        tallies[1].rollback_rate() <= 0.01
    };
    let line = json!({
        "scenario": scenario.name,
        "truth": if scenario.regression { "regression" } else { "healthy" },
        "canary_rps": scenario.canary_rps(),
        "true_p99_ratio": super::round(p99_ratio),
        "error_rate_ratio": super::round(scenario.canary_errors / scenario.primary_errors),
        "in_missed_regression_target": targeted,
        "best_possible_missed_rate": best_possible_missed(scenario).map(super::round),
        "thresholds": { rate_name: rate(&tallies[0]), "mean_intervals_to_decision": super::round(tallies[0].mean_intervals()) },
        "judge": { rate_name: rate(&tallies[1]), "mean_intervals_to_decision": super::round(tallies[1].mean_intervals()) },
        "target_met": met,
    });
    Measured {
        line,
        tallies,
        targeted,
        attainable: targeted && best_possible_missed(scenario).is_none_or(|m| m <= 0.05),
    }
}

/// Whether every targeted scenario that some test could meet met its target.
fn every_attainable_met(lines: &[Value]) -> bool {
    lines
        .iter()
        .filter(|l| {
            l["in_missed_regression_target"] == true
                && l["best_possible_missed_rate"]
                    .as_f64()
                    .is_none_or(|m| m <= 0.05)
        })
        .all(|l| l["target_met"] == true)
}

/// Runs every scenario `runs` times from `seed` and reports one JSON object.
pub fn judge_bench(runs: u32, seed: u64) -> Value {
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    // Pools: healthy, every regression, the targeted regressions, those of them some test
    // could meet the target on; thresholds then judge.
    let mut pools = [[Tally::default(); 2]; 4];
    let mut lines = Vec::new();
    // Whether every healthy scenario, then every regression, met its target.
    let mut met = [true, true];
    for scenario in &SCENARIOS {
        let measured = measure(&mut rng, scenario, runs);
        met[usize::from(scenario.regression)] &= measured.line["target_met"] == true;
        let mut pool = |index: usize| {
            for (sum, tally) in pools[index].iter_mut().zip(&measured.tallies) {
                sum.merge(tally);
            }
        };
        pool(if scenario.regression { 1 } else { 0 });
        if measured.targeted {
            pool(2);
        }
        if measured.attainable {
            pool(3);
        }
        lines.push(measured.line);
    }
    let [healthy, regressions, targeted, attainable] = pools;
    let summary = |index: usize| {
        json!({
            "false_rollback_rate": super::round(healthy[index].rollback_rate()),
            "missed_regression_rate": super::round(1.0 - regressions[index].rollback_rate()),
            "missed_regression_rate_in_target": super::round(1.0 - targeted[index].rollback_rate()),
            "missed_regression_rate_in_target_where_attainable": super::round(1.0 - attainable[index].rollback_rate()),
            "mean_intervals_to_decision_on_regressions": super::round(regressions[index].mean_intervals()),
            "mean_intervals_to_decision_on_healthy": super::round(healthy[index].mean_intervals()),
        })
    };
    let ratio = |pool: &[Tally; 2]| pool[1].mean_intervals() / pool[0].mean_intervals().max(1e-9);
    let (speedup, attainable_speedup) = (ratio(&targeted), ratio(&attainable));
    let attainable_met = every_attainable_met(&lines);
    json!({
        "benchmark": "judge",
        "seed": seed,
        "runs_per_scenario": runs,
        "intervals_per_analysis": INTERVALS,
        "sampling": {
            "scrape_interval_seconds": SCRAPE_SECONDS,
            "analysis_interval_seconds": INTERVAL_SECONDS,
            "sub_interval_seconds": SamplingModel { scrape_interval: Duration::from_secs(u64::from(SCRAPE_SECONDS)) }.sub_interval(Duration::from_secs(u64::from(INTERVAL_SECONDS))).as_secs(),
            "histogram": "Istio default buckets; histogram_quantile as PromQL",
        },
        "methods": {
            "thresholds": format!("request-success-rate >= {MIN_SUCCESS_RATE}, request-duration P99 <= {MAX_P99_MS} ms, rollback at {FAILED_CHECKS} failed checks"),
            "judge": "compare: primary; confidence 0.99; sequential test on error counts (any increase), pooled paired sequential tests on sub-interval P99s and medians (allowed increase 20%)",
        },
        "scenarios": lines,
        "summary": { "thresholds": summary(0), "judge": summary(1) },
        "judge_vs_thresholds_interval_ratio_on_targeted_regressions": super::round(speedup),
        "judge_vs_thresholds_interval_ratio_where_attainable": super::round(attainable_speedup),
        "targets": {
            "false_rollback_rate_at_most_0.01_in_every_scenario_and_pooled": met[0] && healthy[1].rollback_rate() <= 0.01,
            "missed_regression_rate_at_most_0.05_in_every_targeted_scenario_and_pooled": met[1] && 1.0 - targeted[1].rollback_rate() <= 0.05,
            "intervals_at_most_half_of_thresholds": speedup <= 0.5,
            "where_attainable": {
                "missed_regression_rate_at_most_0.05_in_every_scenario_and_pooled": attainable_met && 1.0 - attainable[1].rollback_rate() <= 0.05,
                "intervals_at_most_half_of_thresholds": attainable_speedup <= 0.5,
            },
            "targeted_scenarios_no_test_can_meet": lines.iter().filter(|l| l["in_missed_regression_target"] == true && l["best_possible_missed_rate"].as_f64().is_some_and(|m| m > 0.05)).map(|l| l["scenario"].clone()).collect::<Vec<_>>(),
            "missed_regression_target_covers": format!("regressions of at least {TARGET_EFFECT}x the allowance (latency) or any error increase, on a canary of at least {TARGET_RPS} rps"),
        },
        "elapsed_seconds": super::round(started.elapsed().as_secs_f64()),
        "machine": super::machine("pure simulation on one core; the numbers depend only on the seed"),
    })
}
