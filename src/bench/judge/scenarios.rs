//! The bench's scenarios: traffic with a known truth. Healthy ones must pass (a rollback is a
//! false alarm); regressions must be rolled back.

use super::traffic::{Incident, Side};

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub regression: bool,
    /// Requests per second over both sides.
    pub rps: f64,
    /// The canary's share of them.
    pub weight: f64,
    pub primary_errors: f64,
    pub canary_errors: f64,
    /// Multiplies the canary's times.
    pub canary_latency: f64,
    /// A share of the canary's requests slowed by a factor: the tail moves, the median not.
    pub canary_tail: (f64, f64),
    /// σ of each side's own per-5-second log factor on its times.
    pub noise: f64,
    /// Something that hits both sides in the middle of the analysis.
    pub incident: Option<Incident>,
}

/// Noise that most scenarios carry on each side, independently.
const NOISE: f64 = 0.2;

const BASE: Scenario = Scenario {
    name: "",
    regression: false,
    rps: 100.0,
    weight: 0.1,
    primary_errors: 0.01,
    canary_errors: 0.01,
    canary_latency: 1.0,
    canary_tail: (0.0, 1.0),
    noise: NOISE,
    incident: None,
};

const fn healthy(name: &'static str) -> Scenario {
    Scenario { name, ..BASE }
}

const fn regression(name: &'static str) -> Scenario {
    Scenario {
        name,
        regression: true,
        ..BASE
    }
}

const fn slower(name: &'static str, rps: f64, weight: f64, latency: f64) -> Scenario {
    Scenario {
        rps,
        weight,
        canary_latency: latency,
        ..regression(name)
    }
}

const fn erring(name: &'static str, rps: f64, weight: f64, errors: (f64, f64)) -> Scenario {
    Scenario {
        rps,
        weight,
        primary_errors: errors.0,
        canary_errors: errors.1,
        noise: 0.0,
        ..regression(name)
    }
}

pub const SCENARIOS: [Scenario; 26] = [
    healthy("healthy, 10 rps canary (10% of 100)"),
    Scenario {
        noise: 0.0,
        ..healthy("healthy, no noise")
    },
    Scenario {
        noise: 0.35,
        ..healthy("healthy, heavy noise (0.35)")
    },
    Scenario {
        rps: 200.0,
        weight: 0.01,
        ..healthy("healthy at 1% weight (2 rps)")
    },
    Scenario {
        rps: 200.0,
        weight: 0.05,
        ..healthy("healthy at 5% weight (10 rps)")
    },
    Scenario {
        rps: 10.0,
        ..healthy("healthy, 1 rps canary")
    },
    Scenario {
        canary_latency: 1.1,
        ..healthy("latency +10%, inside the 20% allowance")
    },
    Scenario {
        canary_latency: 1.18,
        rps: 200.0,
        ..healthy("latency +18%, just inside the allowance, 20 rps")
    },
    Scenario {
        canary_latency: 1.18,
        rps: 50.0,
        ..healthy("latency +18%, just inside the allowance, 5 rps")
    },
    Scenario {
        canary_latency: 1.18,
        rps: 20.0,
        ..healthy("latency +18%, just inside the allowance, 2 rps")
    },
    Scenario {
        incident: Some(Incident {
            from: 200,
            until: 320,
            latency: 3.0,
            errors: 0.1,
        }),
        ..healthy("shared incident: both sides x3 slower, +10% errors, for 2 min")
    },
    Scenario {
        primary_errors: 0.001,
        canary_errors: 0.001,
        noise: 0.0,
        ..healthy("sparse errors 0.1% on both sides")
    },
    slower("latency +30%, 1 rps", 10.0, 0.1, 1.3),
    slower("latency +30%, 5 rps", 50.0, 0.1, 1.3),
    slower("latency +30%, 10 rps", 100.0, 0.1, 1.3),
    slower("latency +30%, 20 rps", 200.0, 0.1, 1.3),
    slower("latency +40%, 20 rps (the reported miss)", 200.0, 0.1, 1.4),
    slower("latency +50%, 10 rps", 100.0, 0.1, 1.5),
    slower("latency +50%, 20 rps", 200.0, 0.1, 1.5),
    slower("latency +50% at 1% weight (2 rps)", 200.0, 0.01, 1.5),
    slower("latency +50% at 5% weight (10 rps)", 200.0, 0.05, 1.5),
    Scenario {
        canary_tail: (0.03, 3.0),
        ..regression("tail only: 3% of requests x3, median unchanged, 10 rps")
    },
    erring(
        "sparse errors 0.1% -> 1%, 10 rps",
        100.0,
        0.1,
        (0.001, 0.01),
    ),
    erring(
        "error rate doubled 1% -> 2%, 20 rps",
        200.0,
        0.1,
        (0.01, 0.02),
    ),
    erring(
        "error rate 1% -> 5% at 1% weight (2 rps)",
        200.0,
        0.01,
        (0.01, 0.05),
    ),
    erring(
        "error rate 1% -> 5% at 5% weight (10 rps)",
        200.0,
        0.05,
        (0.01, 0.05),
    ),
];

impl Scenario {
    pub fn canary_rps(&self) -> f64 {
        self.rps * self.weight
    }

    pub fn canary(&self) -> Side {
        Side {
            rps: self.canary_rps(),
            error_rate: self.canary_errors,
            latency: self.canary_latency,
            tail: self.canary_tail,
            noise: self.noise,
        }
    }

    pub fn primary(&self) -> Side {
        Side {
            rps: self.rps - self.canary_rps(),
            error_rate: self.primary_errors,
            latency: 1.0,
            tail: (0.0, 1.0),
            noise: self.noise,
        }
    }
}
