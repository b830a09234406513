//! Subcommands that read manifests: `validate`, `run`, and `demo` (which runs its own).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use aviary::api::CanaryPhase;
use aviary::validate::{self, Manifest, Options, Severity};

/// Check Canary, MetricTemplate and AlertProvider manifests.
#[derive(Args)]
pub struct Validate {
    #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// Accept analysis intervals below 10s (standalone runs only).
    #[arg(long)]
    allow_short_intervals: bool,
    /// Read Canaries without spec.provider as the controller's --mesh-provider would.
    #[arg(long, value_name = "NAME", value_parser = parse_provider)]
    provider: Option<aviary::api::RouterKind>,
}

fn parse_provider(name: &str) -> Result<aviary::api::RouterKind, String> {
    aviary::api::RouterKind::parse(name).map_err(|e| e.to_string())
}

impl Validate {
    pub fn run(self) -> Result<ExitCode> {
        let options = Options {
            allow_short_intervals: self.allow_short_intervals,
            default_router: self.provider,
        };
        let mut errors = 0;
        for (path, report) in validate::validate_files(&self.files, options) {
            let report = match report {
                Ok(report) => report,
                Err(error) => {
                    eprintln!("{}: cannot read: {error}", path.display());
                    errors += 1;
                    continue;
                }
            };
            for finding in &report.findings {
                println!("{}: {finding}", path.display());
                errors += usize::from(finding.severity == Severity::Error);
            }
            if !report.has_errors() {
                let count = report.manifests.len();
                println!("{}: ok ({count} objects)", path.display());
            }
        }
        Ok(super::exit(errors == 0))
    }
}

/// Roll out one Canary against the embedded gateway (needs spec.standalone).
#[derive(Args)]
pub struct Run {
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    #[arg(long)]
    allow_short_intervals: bool,
    /// Send this many requests per second through the gateway during the run.
    #[arg(long)]
    load_rps: Option<u32>,
    /// The Envoy executable for `standalone.proxy: envoy` (default: `envoy` on PATH).
    #[arg(long)]
    envoy_binary: Option<String>,
}

impl Run {
    pub async fn run(self) -> Result<ExitCode> {
        let file = &self.file;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let options = Options {
            allow_short_intervals: self.allow_short_intervals,
            ..Default::default()
        };
        let report = validate::validate_text(&text, options);
        for finding in &report.findings {
            eprintln!("{}: {finding}", file.display());
        }
        if report.has_errors() {
            bail!("{} is invalid; nothing was started", file.display());
        }
        let Some((name, namespace, mut plan)) =
            report.manifests.into_iter().find_map(|m| match m {
                Manifest::Canary {
                    name,
                    namespace,
                    plan,
                    ..
                } => Some((name, namespace, plan)),
                _ => None,
            })
        else {
            bail!("{} holds no Canary", file.display());
        };
        if let (Some(section), Some(binary)) = (plan.standalone.as_mut(), self.envoy_binary) {
            section.envoy_binary = binary;
        }
        let status =
            aviary::runner::standalone::run(name, namespace, *plan, self.load_rps, |progress| {
                for event in &progress.events {
                    println!("{:<18} {}", event.reason, event.message);
                }
            })
            .await?;
        println!("phase: {}", status.phase);
        Ok(super::exit(status.phase == CanaryPhase::Succeeded))
    }
}

/// Promote a healthy version and roll back a faulty one, on this machine.
#[derive(Args)]
pub struct Demo {
    /// One-second intervals (for tests).
    #[arg(long)]
    fast: bool,
    #[arg(long, default_value_t = 60)]
    rps: u32,
}

impl Demo {
    pub async fn run(self) -> Result<ExitCode> {
        let options = aviary::demo::DemoOptions {
            fast: self.fast,
            rps: self.rps,
        };
        let outcomes = aviary::demo::run(options).await?;
        let all_expected = outcomes.len() == 2 && outcomes.iter().all(|o| o.as_expected());
        println!("demo: {}", if all_expected { "PASS" } else { "FAIL" });
        Ok(super::exit(all_expected))
    }
}
