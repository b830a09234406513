//! `aviary bench …`: each benchmark prints one JSON object.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use aviary::bench::versus::Peer;
use clap::Subcommand;

/// The peer of `bench controller --against`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Against {
    Flagger,
    None,
}

/// The peer of `bench gateway --against`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum GatewayPeer {
    Envoy,
}

#[derive(Subcommand)]
pub enum Bench {
    /// Whether `aviary loadtester` sustains the requested rate.
    Loadtest {
        #[arg(long, default_value_t = 500)]
        rps: u32,
        #[arg(long, default_value = "30s", value_parser = super::duration)]
        duration: Duration,
    },
    /// Added latency and memory of the embedded gateway.
    Gateway {
        #[arg(long, default_value_t = 1000)]
        rps: u32,
        #[arg(long, default_value = "10s", value_parser = super::duration)]
        duration: Duration,
        /// Envoy (`AVIARY_ENVOY_BIN`) in the same run: each routing (90/10, header match,
        /// mirroring) through both, with one worker thread each, at the rate and at saturation.
        #[arg(long, value_enum)]
        against: Option<GatewayPeer>,
    },
    /// False rollbacks, missed regressions and time to a decision of the comparative judge
    /// against Flagger-style thresholds, on seeded simulated traffic with known truth.
    Judge {
        #[arg(long, default_value_t = 400)]
        runs: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// The controller at scale on the cluster in KUBECONFIG.
    Controller {
        #[arg(long, default_value_t = 100)]
        canaries: usize,
        #[arg(long, default_value = "10s", value_parser = super::duration)]
        interval: Duration,
        /// Length of the steady-state window, in intervals.
        #[arg(long, default_value_t = 6)]
        intervals: u32,
        /// Run Flagger v1.36.1 first on the same API server and Prometheus and report both
        /// (`flagger`), or Aviary alone with the same measures (`none`): built-in Istio checks
        /// against a real Prometheus, requests by identity from the audit log, and rollbacks.
        #[arg(long, value_enum)]
        against: Option<Against>,
        /// With --against: canaries made to fail after the window, to time their rollbacks.
        #[arg(long, default_value_t = 10)]
        failing: usize,
    },
    /// The controller's memory under churn: canaries created, rolled out and deleted in
    /// batches, on the cluster in KUBECONFIG.
    Soak {
        #[arg(long, default_value_t = 2000)]
        canaries: usize,
        /// Canaries alive at once.
        #[arg(long, default_value_t = 200)]
        batch: usize,
        /// Batches run before the RSS "before" is read, for the controller's pools, caches
        /// and allocator to reach their working size.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
    },
}

impl Bench {
    pub async fn run(self) -> Result<ExitCode> {
        let report = match self {
            Bench::Loadtest { rps, duration } => {
                let executable = super::this_executable()?;
                serde_json::to_string(&aviary::bench::loadtest(&executable, rps, duration).await?)?
            }
            Bench::Gateway {
                rps,
                duration,
                against,
            } => {
                let executable = super::this_executable()?;
                let report = match against {
                    Some(GatewayPeer::Envoy) => {
                        aviary::bench::against_envoy(&executable, rps, duration).await?
                    }
                    None => aviary::bench::gateway(&executable, rps, duration).await?,
                };
                serde_json::to_string(&report)?
            }
            Bench::Judge { runs, seed } => aviary::bench::judge_bench(runs, seed).to_string(),
            Bench::Controller {
                canaries,
                interval,
                intervals,
                against: Some(against),
                failing,
            } => {
                let bench = aviary::bench::versus::VersusBench {
                    canaries,
                    interval,
                    intervals,
                    failing,
                };
                let peers = match against {
                    Against::Flagger => vec![Peer::Flagger, Peer::Aviary],
                    Against::None => vec![Peer::Aviary],
                };
                let executable = super::this_executable()?;
                serde_json::to_string(
                    &aviary::bench::versus::run(&executable, bench, &peers).await?,
                )?
            }
            Bench::Controller {
                canaries,
                interval,
                intervals,
                against: None,
                ..
            } => {
                let bench = aviary::bench::controller::ControllerBench {
                    canaries,
                    interval,
                    intervals,
                };
                let executable = super::this_executable()?;
                serde_json::to_string(&aviary::bench::controller::run(&executable, bench).await?)?
            }
            Bench::Soak {
                canaries,
                batch,
                warmup,
            } => {
                let bench = aviary::bench::soak::SoakBench {
                    canaries,
                    batch,
                    warmup,
                };
                let executable = super::this_executable()?;
                serde_json::to_string(&aviary::bench::soak::run(&executable, bench).await?)?
            }
        };
        println!("{report}");
        Ok(ExitCode::SUCCESS)
    }
}
