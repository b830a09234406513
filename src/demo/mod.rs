//! `aviary demo`: two real rollouts on this machine, with no cluster and no mesh. A healthy v2 is
//! promoted, then a faulty v3 is rolled back, through the embedded gateway, with live progress.

mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::api::{CanaryPhase, StandaloneProxy};
use crate::hooks::HookClient;
use crate::plan::standalone::Upstream;
use crate::plan::{Plan, StandalonePlan};
use crate::runner::{Proxy, Runner, Workloads};
use crate::sample_app::{Behaviour, SampleApp};
use crate::validate::{self, Manifest, Options};

const DEMO_CANARY: &str = include_str!("canary.yaml");

#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// Short intervals (1s) for tests.
    pub fast: bool,
    /// Requests per second sent through the gateway.
    pub rps: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the demo canary is invalid: {0}")]
    Manifest(String),
    #[error("cannot start {what}: {reason}")]
    Start { what: &'static str, reason: String },
    #[error(transparent)]
    Run(#[from] crate::runner::RunError),
}

/// How one rollout of the demo ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub version: String,
    pub expected: CanaryPhase,
    pub phase: CanaryPhase,
    pub elapsed: Duration,
    pub message: String,
}

impl Outcome {
    pub fn as_expected(&self) -> bool {
        self.phase == self.expected
    }
}

/// The sample apps play the Deployments: promotion copies the canary's version into the primary.
struct DemoWorkloads {
    primary: SampleApp,
    canary: SampleApp,
}

impl Workloads for DemoWorkloads {
    fn primary_revision(&self) -> String {
        self.primary.behaviour().version
    }

    fn canary_revision(&self) -> String {
        self.canary.behaviour().version
    }

    fn promote<'a>(
        &'a self,
        _: &'a dyn crate::runner::Traffic,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.primary.set(self.canary.behaviour());
            Ok(())
        })
    }
}

/// The demo's Canary, with intervals shortened for `--fast`, read into its plan.
pub fn demo_plan(fast: bool) -> Result<(String, String, Plan), DemoError> {
    let options = Options {
        allow_short_intervals: true,
        ..Default::default()
    };
    let report = validate::validate_text(DEMO_CANARY, options);
    if report.has_errors() {
        let text = report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(DemoError::Manifest(text));
    }
    let Some(Manifest::Canary {
        name,
        namespace,
        mut spec,
        ..
    }) = report.manifests.into_iter().next()
    else {
        return Err(DemoError::Manifest("no Canary in the demo manifest".into()));
    };
    if fast {
        if let Some(analysis) = spec.analysis.as_mut() {
            analysis.interval = Some("1s".into());
            for metric in &mut analysis.metrics {
                metric.interval = Some("1s".into());
            }
        }
    }
    let plan = crate::plan::plan(&spec, options).map_err(DemoError::Manifest)?;
    Ok((name, namespace, plan))
}

/// The standalone section the demo would declare: its own gateway on a free port in front of
/// the two sample apps.
fn section(primary: &SampleApp, canary: &SampleApp) -> StandalonePlan {
    let upstream = |app: &SampleApp| Upstream {
        address: app.address,
        revision: app.behaviour().version,
    };
    StandalonePlan {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_listen: None,
        primary: upstream(primary),
        canary: upstream(canary),
        proxy: StandaloneProxy::Gateway,
        envoy_binary: String::new(),
    }
}

/// The two sample apps the demo rolls out between.
async fn sample_apps() -> Result<(SampleApp, SampleApp), DemoError> {
    let start = |what| async move {
        SampleApp::start("127.0.0.1:0", Behaviour::healthy("v1"))
            .await
            .map_err(|e| DemoError::Start {
                what,
                reason: e.to_string(),
            })
    };
    Ok((
        start("the primary sample app").await?,
        start("the canary sample app").await?,
    ))
}

/// The demo's two releases: a healthy one to promote and a faulty one to roll back.
fn releases() -> [(Behaviour, CanaryPhase, &'static str); 2] {
    let faulty = Behaviour {
        version: "v3".into(),
        error_rate: 0.2,
        latency: Duration::from_millis(150),
    };
    [
        (Behaviour::healthy("v2"), CanaryPhase::Succeeded, "healthy"),
        (
            faulty,
            CanaryPhase::Failed,
            "faulty: 20% errors, 150 ms latency",
        ),
    ]
}

/// Deploys `behaviour` to the canary and runs its rollout to the end.
async fn roll_out(
    runner: &Runner,
    canary: &SampleApp,
    (behaviour, expected, description): (Behaviour, CanaryPhase, &str),
) -> Result<Outcome, DemoError> {
    println!(
        "\n== deploying {} ({description}); expecting {expected}",
        behaviour.version
    );
    let version = behaviour.version.clone();
    canary.set(behaviour);
    let started = Instant::now();
    let mut view = view::ProgressView::new(started);
    let status = runner
        .run(|progress| view.show(progress), std::future::pending())
        .await?;
    let message = status
        .conditions
        .first()
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    Ok(Outcome {
        version,
        expected,
        phase: status.phase,
        elapsed: started.elapsed(),
        message,
    })
}

fn print_summary(outcomes: &[Outcome], load: &crate::loadgen::LoadReport, primary: &SampleApp) {
    println!("\n== summary");
    for outcome in outcomes {
        let verdict = if outcome.as_expected() {
            "ok"
        } else {
            "UNEXPECTED"
        };
        println!(
            "  {}: {} after {:.1}s (expected {}) {verdict}",
            outcome.version,
            outcome.phase,
            outcome.elapsed.as_secs_f64(),
            outcome.expected,
        );
    }
    println!(
        "  load: {} requests, {} failed, primary now serves {}",
        load.sent,
        load.failed,
        primary.behaviour().version
    );
}

/// Runs both rollouts and returns their outcomes; the caller decides the exit code.
pub async fn run(options: DemoOptions) -> Result<Vec<Outcome>, DemoError> {
    let (name, namespace, plan) = demo_plan(options.fast)?;
    let (primary, canary) = sample_apps().await?;
    let proxy = Proxy::start(&section(&primary, &canary))
        .await
        .map_err(|e| DemoError::Start {
            what: "the gateway",
            reason: e.to_string(),
        })?;
    let scrape = if options.fast { 250 } else { 1000 };
    proxy.scrape_every(Duration::from_millis(scrape));
    let (stop_load, load) = proxy.send_load(options.rps);
    println!(
        "aviary demo: gateway {} -> primary {} / canary {}; {} requests/s of load",
        proxy.address, primary.address, canary.address, options.rps
    );
    let runner = Runner {
        name,
        namespace,
        plan,
        traffic: proxy.traffic.clone(),
        workloads: Arc::new(DemoWorkloads {
            primary: primary.clone(),
            canary: canary.clone(),
        }),
        metrics: proxy.telemetry.clone(),
        hooks: HookClient::default(),
        background: Default::default(),
    };
    let mut outcomes = Vec::new();
    for release in releases() {
        match roll_out(&runner, &canary, release).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                let _ = stop_load.send(true);
                return Err(error);
            }
        }
    }
    let _ = stop_load.send(true);
    let load = load.await.unwrap_or_default();
    proxy.shutdown();
    print_summary(&outcomes, &load, &primary);
    Ok(outcomes)
}
