//! The operator's subcommands: requests to a rollout (promote, abort, pause, resume, retry),
//! `status` and `wait`. Each acts with the caller's own credentials.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use aviary::api::Verb;
use aviary::cli::commands;

use super::Output;

/// The Canary a command is about.
#[derive(Args)]
pub struct Target {
    name: String,
    #[arg(short, long)]
    namespace: Option<String>,
}

impl Target {
    async fn ask(self, verb: Verb) -> Result<ExitCode> {
        let code = commands::request(self.namespace, &self.name, verb).await?;
        Ok(ExitCode::from(code))
    }
}

/// Pass the next closed gate of a rollout, or with --full skip its remaining steps.
#[derive(Args)]
pub struct Promote {
    #[command(flatten)]
    target: Target,
    #[arg(long)]
    full: bool,
}

impl Promote {
    pub async fn run(self) -> Result<ExitCode> {
        let verb = if self.full {
            Verb::PromoteFull
        } else {
            Verb::Promote
        };
        self.target.ask(verb).await
    }
}

/// A request with no options of its own: abort, pause, resume, retry.
#[derive(Args)]
pub struct Request {
    #[command(flatten)]
    target: Target,
}

impl Request {
    pub async fn run(self, verb: Verb) -> Result<ExitCode> {
        self.target.ask(verb).await
    }
}

/// Show Canaries: phase, weight, step, metric values, failed checks, gates.
#[derive(Args)]
pub struct Status {
    name: Option<String>,
    #[arg(short, long)]
    namespace: Option<String>,
    /// Keep printing on every change.
    #[arg(short, long)]
    watch: bool,
    #[arg(short, long, value_enum, default_value = "text")]
    output: Output,
}

impl Status {
    pub async fn run(self) -> Result<ExitCode> {
        let json = self.output == Output::Json;
        let name = self.name.as_deref();
        let code = commands::status(self.namespace, name, self.watch, json).await?;
        Ok(ExitCode::from(code))
    }
}

/// Wait for the rollout of the target's current revision: exit 0 promoted, 1 failed,
/// 2 timed out (3: could not wait).
#[derive(Args)]
pub struct Wait {
    #[command(flatten)]
    target: Target,
    /// promoted, failed or phase=<Phase>.
    #[arg(long = "for", default_value = "promoted")]
    condition: String,
    #[arg(long, default_value = "15m", value_parser = super::duration)]
    timeout: Duration,
    #[arg(short, long, value_enum, default_value = "text")]
    output: Output,
}

impl Wait {
    pub async fn run(self) -> Result<ExitCode> {
        let json = self.output == Output::Json;
        let Target { name, namespace } = self.target;
        match commands::wait(namespace, &name, &self.condition, self.timeout, json).await {
            Ok(code) => Ok(ExitCode::from(code)),
            Err(error) => {
                eprintln!("error: {}", aviary::cli::cause_chain(&error));
                Ok(ExitCode::from(3))
            }
        }
    }
}
