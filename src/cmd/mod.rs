//! The subcommands of the `aviary` binary: one clap `Args` and one `run` each. Values are parsed
//! by clap (durations, enums), so a subcommand starts from typed arguments. anyhow lives here,
//! at the binary's edge, and nowhere in the library.

pub mod bench;
pub mod files;
pub mod operate;
pub mod serve;

use std::process::ExitCode;
use std::time::Duration;

/// jemalloc hands pages freed by canary churn back to the OS (its background threads purge
/// them after a decay period); glibc's malloc keeps them, so RSS would only ever grow to its peak.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A duration flag (`30s`, `1m`), read as the manifests read them.
pub fn duration(text: &str) -> Result<Duration, String> {
    aviary::api::parse_duration(text).map_err(|error| error.to_string())
}

/// `namespace/name`, for flags that name an object in another namespace.
pub fn namespaced(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok((namespace.to_string(), name.to_string()))
        }
        _ => Err(format!("{text:?} must be namespace/name")),
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Logs to stderr at `default_filter` unless RUST_LOG says otherwise.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

/// How a command prints what it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Parses the command line. `aviary wait` promises exit 2 for "timed out", so a usage error
/// there exits 3 ("could not wait"), never clap's 2; help and version exit 0 as usual.
pub fn parse<C: clap::Parser>() -> C {
    C::try_parse().unwrap_or_else(|error| {
        let waiting = std::env::args().skip(1).any(|arg| arg == "wait");
        if waiting && error.use_stderr() {
            let _ = error.print();
            std::process::exit(3);
        }
        error.exit()
    })
}

/// Success or failure as the process's exit code.
pub fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Ctrl-C or SIGTERM (how Kubernetes stops a pod).
pub async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The path of this executable, for benchmarks that start it as a child.
pub fn this_executable() -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    std::env::current_exe().context("cannot find the aviary executable")
}
