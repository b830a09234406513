//! The one reading of a `CanarySpec`. Wire strings (durations, the provider, match conditions,
//! promotion windows, ranges) become typed values here, once, and in the same pass every problem
//! becomes a finding with its field path. `aviary validate`, the controller and the standalone
//! runner all read a spec through [`read`]; the engine, the routers and the runners consume the
//! [`Plan`], never the wire strings. Nothing here falls back silently: a value that does not
//! parse is an error finding and there is no plan.

mod analysis;
mod autoscaler;
mod findings;
mod honoured;
mod matches;
mod metric;
pub mod standalone;
mod target;
mod webhook;
pub mod windows;

use std::time::Duration;

use crate::api::{CanaryAlert, CanarySpec, HookType, NoDataPolicy, RouterKind, ThresholdRange};

pub use autoscaler::{kind_of as autoscaler_kind, AutoscalerKind};
pub use findings::{Findings, Issue, Severity};
pub use matches::{Condition, RouteMatch};
pub use standalone::StandalonePlan;
pub use target::target_kind;
pub use windows::ParsedWindow;

/// Options that change what is accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Allow analysis intervals below 10s (only the standalone runner, for demos and tests).
    pub allow_short_intervals: bool,
    /// The router of canaries that set no `spec.provider` (the controller's `--mesh-provider`;
    /// Istio when unset, as in Flagger).
    pub default_router: Option<RouterKind>,
}

/// A Canary spec read into what the engine and the adapters act on.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    /// The router `spec.provider` names, or the controller's default.
    pub router: RouterKind,
    pub progress_deadline: Duration,
    pub suspend: bool,
    pub revert_on_deletion: bool,
    /// Time between analysis steps (also without an analysis block).
    pub interval: Duration,
    pub strategy: Strategy,
    /// The analysis as declared; its defaults when the spec has none.
    pub analysis: Analysis,
    /// `spec.metricsServer`: the Prometheus this canary's checks query, when it names its own.
    pub metrics_server: Option<String>,
    /// `spec.standalone`, for `aviary run`.
    pub standalone: Option<StandalonePlan>,
    /// The kind of `spec.autoscalerRef`, when there is one.
    pub autoscaler: Option<AutoscalerKind>,
}

/// The workload rolled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    Deployment,
    DaemonSet,
    /// A Knative Service (`serving.knative.dev`): its revisions are the primary and the canary,
    /// and its own traffic block splits between them.
    KnativeService,
}

/// The deployment strategy, derived from the analysis block the way Flagger derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// No analysis: promote as soon as the canary is ready.
    SkipAnalysis,
    /// Weighted steps (stepWeight or stepWeights) up to maxWeight.
    Canary,
    /// `match` + `iterations`: matching requests go to the canary.
    AbTesting,
    /// `iterations` without `match`: the canary gets test (or mirrored) traffic, then everything.
    BlueGreen,
}

/// How a rollout advances and how each step is judged.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Failed checks before rollback (at least 1).
    pub threshold: i32,
    /// The highest canary weight: the last of `stepWeights` when given, else `maxWeight`.
    pub max_weight: i32,
    /// Increasing weights to step through; empty when `stepWeight` is used.
    pub step_weights: Vec<i32>,
    /// Weight added per step; `None` goes to the maximum in one move.
    pub step_weight: Option<i32>,
    /// Weight taken off per step of a gradual promotion; `None` promotes at once.
    pub step_weight_promotion: Option<i32>,
    /// Intervals of A/B testing or blue/green (0 for a weighted canary).
    pub iterations: i32,
    /// Percent of requests copied to the canary while it is analysed, when mirroring.
    pub mirror_percent: Option<i32>,
    pub primary_ready_threshold: i32,
    pub canary_ready_threshold: i32,
    /// A/B conditions: requests matching any entry go to the canary.
    pub matches: Vec<RouteMatch>,
    pub session_affinity: Option<SessionAffinity>,
    pub require_mtls: bool,
    pub metrics: Vec<Metric>,
    pub webhooks: Vec<Webhook>,
    pub alerts: Vec<CanaryAlert>,
    /// Promotion happens only inside one of these (always, when there are none).
    pub windows: Vec<ParsedWindow>,
}

impl Analysis {
    /// The weight after `current` in a canary rollout, capped at the maximum.
    pub fn next_weight(&self, current: i32) -> i32 {
        let max = self.max_weight;
        if !self.step_weights.is_empty() {
            return self
                .step_weights
                .iter()
                .copied()
                .find(|weight| *weight > current)
                .unwrap_or(max)
                .min(max);
        }
        // Without a step the rollout goes to the maximum in one move.
        let step = self.step_weight.filter(|step| *step > 0).unwrap_or(max);
        (current + step).min(max)
    }

    /// Every weight a canary rollout steps through, in order.
    pub fn weights(&self) -> Vec<i32> {
        let mut weights = Vec::new();
        let mut weight = 0;
        while weight < self.max_weight {
            let next = self.next_weight(weight);
            if next <= weight {
                break;
            }
            weights.push(next);
            weight = next;
        }
        weights
    }

    /// Whether any webhook of `kind` is declared.
    pub fn has_hooks(&self, kind: HookType) -> bool {
        self.webhooks.iter().any(|hook| hook.kind == kind)
    }
}

/// Sticky sessions during a weighted rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAffinity {
    pub cookie_name: String,
    pub primary_cookie_name: Option<String>,
    /// Cookie lifetime in seconds.
    pub max_age: i32,
    /// The `Set-Cookie` attributes after Max-Age, checked: `; Path=/; SameSite=Lax; Secure`.
    pub attributes: String,
}

/// One metric check run at every analysis step.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    /// The window the query covers.
    pub window: Duration,
    /// The accepted range: `thresholdRange`, or the deprecated `threshold` read as Flagger reads
    /// it (a minimum for the success rate, a maximum otherwise).
    pub range: ThresholdRange,
    pub min_samples: Option<u64>,
    pub source: MetricSource,
    /// `templateVariables`, for the template or the inline query.
    pub variables: std::collections::BTreeMap<String, String>,
    /// `compare: primary`: judged against the primary with these settings.
    pub judge: Option<JudgeSettings>,
    pub on_no_data: NoDataPolicy,
}

/// Where a metric's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    /// `request-success-rate` or `request-duration`, from the mesh's telemetry.
    Builtin,
    /// A MetricTemplate.
    Template {
        name: String,
        namespace: Option<String>,
    },
    /// The deprecated inline query.
    Query(String),
}

/// The comparative judge's settings, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JudgeSettings {
    pub confidence: f64,
    /// Fractions, not percents.
    pub allowed_increase: f64,
    pub allowed_decrease: f64,
    pub direction: crate::judge::Direction,
}

/// One webhook, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub name: String,
    pub kind: HookType,
    pub url: reqwest::Url,
    pub timeout: Duration,
    pub retries: u32,
    pub metadata: std::collections::BTreeMap<String, String>,
    pub mute_alert: bool,
    /// Do not verify the receiver's TLS certificate.
    pub disable_tls: bool,
    /// The Secret and key that sign each request.
    pub secret: Option<(String, String)>,
}

/// Reads `spec`. The plan is `Some` exactly when there is no error finding.
pub fn read(spec: &CanarySpec, options: Options) -> (Option<Plan>, Findings) {
    let mut findings = Findings::default();
    let top = target::top(spec, options, &mut findings);
    let autoscaler = autoscaler::read(spec.autoscaler_ref.as_ref(), &mut findings);
    let analysis = analysis::read(spec, options, &mut findings);
    let standalone = spec
        .standalone
        .as_ref()
        .and_then(|section| standalone::section(section, &mut findings));
    if findings.has_errors() {
        return (None, findings);
    }
    let (Some(target), Some(router), Some((interval, analysis, strategy))) =
        (top.target, top.router, analysis)
    else {
        return (None, findings);
    };
    let plan = Plan {
        target,
        router,
        progress_deadline: top.progress_deadline,
        suspend: spec.suspend,
        revert_on_deletion: spec.revert_on_deletion,
        interval,
        strategy,
        analysis,
        metrics_server: spec.metrics_server.clone(),
        standalone,
        autoscaler,
    };
    (Some(plan), findings)
}

/// Reads `spec` as the controller and the runner do: a plan, or every error joined for a
/// condition message.
pub fn plan(spec: &CanarySpec, options: Options) -> Result<Plan, String> {
    match read(spec, options) {
        (Some(plan), _) => Ok(plan),
        (None, findings) => Err(findings.errors_joined()),
    }
}
