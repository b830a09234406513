#![forbid(unsafe_code)]
//! The `aviary` command line: wiring only. Each subcommand's arguments and `run` are in `cmd/`;
//! errors become anyhow only there, at the edge.

mod cmd;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use aviary::api::Verb;
use cmd::{bench, files, operate, serve, LogFormat};

#[derive(Parser)]
#[command(
    name = "aviary",
    version,
    about = "Progressive delivery for service meshes"
)]
struct Cli {
    #[arg(long, global = true, value_enum, default_value = "plain")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    Validate(files::Validate),
    Run(files::Run),
    Demo(files::Demo),
    SampleApp(serve::SampleApp),
    Gateway(serve::Gateway),
    Controller(serve::Controller),
    Loadtester(serve::Loadtester),
    Promote(operate::Promote),
    /// Roll a rollout back now.
    Abort(operate::Request),
    /// Hold a rollout where it is.
    Pause(operate::Request),
    /// Let a paused rollout go on.
    Resume(operate::Request),
    /// Roll out a failed revision again.
    Retry(operate::Request),
    Status(operate::Status),
    Wait(operate::Wait),
    /// Benchmarks; each prints one JSON object.
    #[command(subcommand)]
    Bench(bench::Bench),
}

impl Command {
    /// Commands whose output is for people or pipelines: only warnings are logged.
    fn is_quiet(&self) -> bool {
        !matches!(
            self,
            Command::Crds
                | Command::Run(_)
                | Command::SampleApp(_)
                | Command::Gateway(_)
                | Command::Controller(_)
                | Command::Loadtester(_)
        )
    }

    async fn run(self) -> Result<ExitCode> {
        match self {
            Command::Crds => {
                print!("{}", aviary::crd::all_crds_yaml()?);
                Ok(ExitCode::SUCCESS)
            }
            Command::Validate(args) => args.run(),
            Command::Run(args) => args.run().await,
            Command::Demo(args) => args.run().await,
            Command::SampleApp(args) => args.run().await,
            Command::Gateway(args) => args.run().await,
            Command::Controller(args) => args.run().await,
            Command::Loadtester(args) => args.run().await,
            Command::Promote(args) => args.run().await,
            Command::Abort(args) => args.run(Verb::Abort).await,
            Command::Pause(args) => args.run(Verb::Pause).await,
            Command::Resume(args) => args.run(Verb::Resume).await,
            Command::Retry(args) => args.run(Verb::Retry).await,
            Command::Status(args) => args.run().await,
            Command::Wait(args) => args.run().await,
            Command::Bench(bench) => bench.run().await,
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = cmd::parse();
    // The standalone gateway is one event loop: on a small machine that beats cross-thread
    // wake-ups for added latency, and a loop proxies thousands of requests a second.
    let mut builder = match cli.command {
        Command::Gateway(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let Ok(runtime) = builder.enable_all().build() else {
        eprintln!("error: cannot start the async runtime");
        return ExitCode::FAILURE;
    };
    aviary::http_client::install_crypto_provider();
    let level = if cli.command.is_quiet() {
        "warn"
    } else {
        "info"
    };
    cmd::init_logging(cli.log_format, level);
    match runtime.block_on(cli.command.run()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", aviary::cli::cause_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}
