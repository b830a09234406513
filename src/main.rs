#![forbid(unsafe_code)]
//! The `aviary` command line. Errors become anyhow only here, at the edge.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use aviary::api::{parse_duration, CanaryPhase, Verb};
use aviary::cli::commands;
use aviary::validate::{self, Manifest, Options, Severity};

#[derive(Parser)]
#[command(
    name = "aviary",
    version,
    about = "Progressive delivery for service meshes"
)]
struct Cli {
    /// Log format: plain or json.
    #[arg(long, global = true, default_value = "plain")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Check Canary, MetricTemplate and AlertProvider manifests.
    Validate {
        #[arg(short = 'f', long = "file", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// Accept analysis intervals below 10s (standalone runs only).
        #[arg(long)]
        allow_short_intervals: bool,
    },
    /// Roll out one Canary against the embedded gateway (needs spec.standalone).
    Run {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[arg(long)]
        allow_short_intervals: bool,
        /// Send this many requests per second through the gateway during the run.
        #[arg(long)]
        load_rps: Option<u32>,
    },
    /// Promote a healthy version and roll back a faulty one, on this machine.
    Demo {
        /// One-second intervals (for tests).
        #[arg(long)]
        fast: bool,
        #[arg(long, default_value_t = 60)]
        rps: u32,
    },
    /// Serve a sample app with a chosen version, error rate and latency.
    SampleApp {
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "v1")]
        version: String,
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
    /// Run the embedded gateway on its own.
    Gateway {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long)]
        primary: String,
        #[arg(long)]
        canary: String,
        /// Percent of traffic for the canary.
        #[arg(long, default_value_t = 0)]
        canary_weight: i32,
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Run the Kubernetes controller (uses the in-cluster config or KUBECONFIG).
    Controller {
        /// Prometheus for Canaries that set no metricsServer.
        #[arg(
            long,
            env = "AVIARY_METRICS_SERVER",
            default_value = "http://prometheus:9090"
        )]
        metrics_server: String,
        /// Router of Canaries without spec.provider: istio, linkerd (SMI) or gatewayapi:v1.
        #[arg(long, env = "AVIARY_MESH_PROVIDER", default_value = "istio")]
        mesh_provider: String,
        /// Telemetry for the built-in checks of Gateway API canaries: istio or linkerd
        /// (default: linkerd with --mesh-provider linkerd, else istio).
        #[arg(long)]
        telemetry: Option<String>,
        /// Address of /healthz, /readyz and /metrics.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: String,
        /// Watch only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Elect a leader on this Lease (namespace/name) before acting.
        #[arg(long)]
        leader_lease: Option<String>,
        #[arg(long, default_value = "15s")]
        lease_duration: String,
        /// Shortest analysis interval accepted; below 10s only for tests.
        #[arg(long, default_value = "10s", hide = true)]
        min_interval: String,
        /// AlertProvider (namespace/name) for Canaries that declare no analysis.alerts.
        #[arg(long)]
        alert_provider: Option<String>,
        /// Lowest severity sent to --alert-provider: info, warn or error.
        #[arg(long, default_value = "info")]
        alert_severity: String,
    },
    /// Pass the next closed gate of a rollout, or with --full skip its remaining steps.
    Promote {
        name: String,
        #[arg(long)]
        full: bool,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Roll a rollout back now.
    Abort {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Hold a rollout where it is.
    Pause {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Let a paused rollout go on.
    Resume {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Roll out a failed revision again.
    Retry {
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Show Canaries: phase, weight, step, metric values, failed checks, gates.
    Status {
        name: Option<String>,
        #[arg(short, long)]
        namespace: Option<String>,
        /// Keep printing on every change.
        #[arg(short, long)]
        watch: bool,
        /// Output: text or json.
        #[arg(short, long, default_value = "text")]
        output: String,
    },
    /// Wait for the rollout of the target's current revision: exit 0 promoted, 1 failed,
    /// 2 timed out (3: could not wait).
    Wait {
        name: String,
        /// promoted, failed or phase=<Phase>.
        #[arg(long = "for", default_value = "promoted")]
        condition: String,
        #[arg(long, default_value = "15m")]
        timeout: String,
        #[arg(short, long)]
        namespace: Option<String>,
        #[arg(short, long, default_value = "text")]
        output: String,
    },
    /// Serve load generation for rollout webhooks and token-protected manual gates.
    Loadtester {
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: String,
        /// Lines of `identity token`: who may open and close gates.
        #[arg(long, env = "AVIARY_LOADTESTER_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// When set, webhook calls must be signed with the secret in this file.
        #[arg(long)]
        webhook_secret_file: Option<PathBuf>,
        /// Record gate changes as Events on the Canary (in-cluster config or KUBECONFIG).
        #[arg(long)]
        record_events: bool,
    },
    /// Benchmarks; each prints one JSON object.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand)]
enum Bench {
    /// Whether `aviary loadtester` sustains the requested rate.
    Loadtest {
        #[arg(long, default_value_t = 500)]
        rps: u32,
        #[arg(long, default_value = "30s")]
        duration: String,
    },
    /// Added latency and memory of the embedded gateway.
    Gateway {
        #[arg(long, default_value_t = 1000)]
        rps: u32,
        #[arg(long, default_value = "10s")]
        duration: String,
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
        #[arg(long, default_value = "10s")]
        interval: String,
        /// Length of the steady-state window, in intervals.
        #[arg(long, default_value_t = 6)]
        intervals: u32,
    },
}

fn init_logging(format: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The standalone gateway is one event loop: on a small machine that beats cross-thread
    // wake-ups for added latency, and a loop proxies thousands of requests a second.
    let mut builder = match cli.command {
        Command::Gateway { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", aviary::cli::cause_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    aviary::http_client::install_crypto_provider();
    let quiet = matches!(
        cli.command,
        Command::Demo { .. }
            | Command::Bench(_)
            | Command::Validate { .. }
            | Command::Promote { .. }
            | Command::Abort { .. }
            | Command::Pause { .. }
            | Command::Resume { .. }
            | Command::Retry { .. }
            | Command::Status { .. }
            | Command::Wait { .. }
    );
    init_logging(&cli.log_format, if quiet { "warn" } else { "info" });
    match cli.command {
        Command::Crds => {
            print!("{}", aviary::crd::all_crds_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            files,
            allow_short_intervals,
        } => validate_files(
            &files,
            Options {
                allow_short_intervals,
                ..Default::default()
            },
        ),
        Command::Run {
            file,
            allow_short_intervals,
            load_rps,
        } => {
            run_file(
                file,
                Options {
                    allow_short_intervals,
                    ..Default::default()
                },
                load_rps,
            )
            .await
        }
        Command::Demo { fast, rps } => {
            let outcomes = aviary::demo::run(aviary::demo::DemoOptions { fast, rps }).await?;
            let all_expected = outcomes.len() == 2 && outcomes.iter().all(|o| o.as_expected());
            println!(
                "{}",
                if all_expected {
                    "demo: PASS"
                } else {
                    "demo: FAIL"
                }
            );
            Ok(if all_expected {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::SampleApp {
            port,
            version,
            error_rate,
            latency_ms,
        } => {
            if !(0.0..=1.0).contains(&error_rate) {
                bail!("--error-rate {error_rate} must be between 0 and 1");
            }
            let behaviour = aviary::sample_app::Behaviour {
                version,
                error_rate,
                latency: Duration::from_millis(latency_ms),
            };
            let app = aviary::sample_app::SampleApp::start(&format!("127.0.0.1:{port}"), behaviour)
                .await
                .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
            println!("listening {}", app.address);
            tokio::signal::ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gateway {
            listen,
            primary,
            canary,
            canary_weight,
            metrics_listen,
        } => {
            let primary = primary
                .parse()
                .with_context(|| format!("--primary {primary:?} is not ip:port"))?;
            let canary = canary
                .parse()
                .with_context(|| format!("--canary {canary:?} is not ip:port"))?;
            if !(0..=100).contains(&canary_weight) {
                bail!("--canary-weight {canary_weight} must be between 0 and 100");
            }
            let gateway = aviary::gateway::GatewayHandle::start(&listen, primary, canary).await?;
            gateway.set_routes(aviary::engine::Routes::weighted(canary_weight), &[])?;
            println!("listening {}", gateway.address);
            if let Some(metrics) = metrics_listen {
                let admin = aviary::gateway::serve_admin(gateway.clone(), &metrics).await?;
                println!("metrics http://{admin}/metrics");
            }
            tokio::signal::ctrl_c().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller {
            metrics_server,
            mesh_provider,
            telemetry,
            listen,
            namespace,
            leader_lease,
            lease_duration,
            min_interval,
            alert_provider,
            alert_severity,
        } => {
            let default_alert = match alert_provider {
                None => None,
                Some(text) => {
                    let (provider_namespace, name) = text.split_once('/').with_context(|| {
                        format!("--alert-provider {text:?} must be namespace/name")
                    })?;
                    let severity = serde_json::from_value(serde_json::json!(alert_severity))
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "--alert-severity {alert_severity:?} must be info, warn or error"
                            )
                        })?;
                    Some(aviary::controller::DefaultAlert {
                        provider: aviary::api::CrossNamespaceRef {
                            name: name.to_string(),
                            namespace: Some(provider_namespace.to_string()),
                        },
                        severity,
                    })
                }
            };
            let lease = match leader_lease {
                None => None,
                Some(text) => {
                    let (lease_namespace, name) = text.split_once('/').with_context(|| {
                        format!("--leader-lease {text:?} must be namespace/name")
                    })?;
                    Some(aviary::controller::LeaseSettings {
                        namespace: lease_namespace.to_string(),
                        name: name.to_string(),
                        identity: format!("{}-{}", hostname(), std::process::id()),
                        duration: parse_duration(&lease_duration).context("--lease-duration")?,
                    })
                }
            };
            aviary::controller::run(aviary::controller::ControllerConfig {
                metrics_server,
                mesh: mesh_provider,
                telemetry,
                listen,
                namespace,
                lease,
                min_interval: parse_duration(&min_interval).context("--min-interval")?,
                default_alert,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(Bench::Controller {
            canaries,
            interval,
            intervals,
        }) => {
            let interval = parse_duration(&interval).context("--interval")?;
            let executable =
                std::env::current_exe().context("cannot find the aviary executable")?;
            let bench = aviary::bench::controller::ControllerBench {
                canaries,
                interval,
                intervals,
            };
            let report = aviary::bench::controller::run(&executable, bench).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Promote {
            name,
            full,
            namespace,
        } => {
            let verb = if full {
                Verb::PromoteFull
            } else {
                Verb::Promote
            };
            Ok(ExitCode::from(
                commands::request(namespace, &name, verb).await?,
            ))
        }
        Command::Abort { name, namespace } => Ok(ExitCode::from(
            commands::request(namespace, &name, Verb::Abort).await?,
        )),
        Command::Pause { name, namespace } => Ok(ExitCode::from(
            commands::request(namespace, &name, Verb::Pause).await?,
        )),
        Command::Resume { name, namespace } => Ok(ExitCode::from(
            commands::request(namespace, &name, Verb::Resume).await?,
        )),
        Command::Retry { name, namespace } => Ok(ExitCode::from(
            commands::request(namespace, &name, Verb::Retry).await?,
        )),
        Command::Status {
            name,
            namespace,
            watch,
            output,
        } => {
            let json = output_is_json(&output)?;
            Ok(ExitCode::from(
                commands::status(namespace, name.as_deref(), watch, json).await?,
            ))
        }
        Command::Wait {
            name,
            condition,
            timeout,
            namespace,
            output,
        } => {
            let json = output_is_json(&output)?;
            let limit = parse_duration(&timeout).context("--timeout")?;
            match commands::wait(namespace, &name, &condition, limit, json).await {
                Ok(code) => Ok(ExitCode::from(code)),
                Err(error) => {
                    eprintln!("error: {error}");
                    Ok(ExitCode::from(3))
                }
            }
        }
        Command::Loadtester {
            listen,
            token_file,
            webhook_secret_file,
            record_events,
        } => {
            let tokens = match &token_file {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("--token-file {}", path.display()))?;
                    aviary::loadtester::parse_tokens(&text)
                        .with_context(|| format!("--token-file {}", path.display()))?
                }
                None => Vec::new(),
            };
            if tokens.is_empty() {
                tracing::warn!("no tokens: every gate change will be refused with 401");
            }
            let webhook_secret = match &webhook_secret_file {
                Some(path) => Some(
                    std::fs::read(path)
                        .with_context(|| format!("--webhook-secret-file {}", path.display()))?
                        .trim_ascii()
                        .to_vec(),
                ),
                None => None,
            };
            match &webhook_secret {
                Some(secret) if secret.is_empty() => bail!("--webhook-secret-file is empty"),
                Some(_) => {}
                None => tracing::warn!(
                    "no --webhook-secret-file: anyone who reaches this loadtester can start loads"
                ),
            }
            let client =
                if record_events {
                    Some(kube::Client::try_default().await.context(
                        "--record-events needs a cluster (in-cluster config or KUBECONFIG)",
                    )?)
                } else {
                    None
                };
            let handle = aviary::loadtester::serve(aviary::loadtester::LoadtesterConfig {
                listen,
                tokens,
                webhook_secret,
                audit: aviary::loadtester::Audit { client },
            })
            .await?;
            println!("listening {}", handle.address);
            shutdown_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(Bench::Loadtest { rps, duration }) => {
            let duration = parse_duration(&duration).context("--duration")?;
            let executable =
                std::env::current_exe().context("cannot find the aviary executable")?;
            let report = aviary::bench::loadtest(&executable, rps, duration).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(Bench::Judge { runs, seed }) => {
            println!("{}", aviary::bench::judge_bench(runs, seed));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(Bench::Gateway { rps, duration }) => {
            let duration = parse_duration(&duration).context("--duration")?;
            let executable =
                std::env::current_exe().context("cannot find the aviary executable")?;
            let report = aviary::bench::gateway(&executable, rps, duration).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn output_is_json(output: &str) -> Result<bool> {
    match output {
        "json" => Ok(true),
        "text" => Ok(false),
        other => bail!("--output {other:?} must be text or json"),
    }
}

/// Ctrl-C or SIGTERM (how Kubernetes stops a pod).
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be watched");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|| "aviary".to_string())
}

fn validate_files(files: &[PathBuf], options: Options) -> Result<ExitCode> {
    let mut errors = 0;
    for (path, report) in validate::validate_files(files, options) {
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
            if finding.severity == Severity::Error {
                errors += 1;
            }
        }
        if !report.has_errors() {
            println!(
                "{}: ok ({} objects)",
                path.display(),
                report.manifests.len()
            );
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_file(file: PathBuf, options: Options, load_rps: Option<u32>) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let report = validate::validate_text(&text, options);
    for finding in &report.findings {
        eprintln!("{}: {finding}", file.display());
    }
    if report.has_errors() {
        bail!("{} is invalid; nothing was started", file.display());
    }
    let mut canaries = report.manifests.into_iter().filter_map(|m| match m {
        Manifest::Canary {
            name,
            namespace,
            spec,
        } => Some((name, namespace, spec)),
        _ => None,
    });
    let Some((name, namespace, spec)) = canaries.next() else {
        bail!("{} holds no Canary", file.display());
    };
    let status = aviary::runner::standalone::run(name, namespace, *spec, load_rps, |progress| {
        for event in &progress.events {
            println!("{:<18} {}", event.reason, event.message);
        }
    })
    .await?;
    println!("phase: {}", status.phase);
    Ok(if status.phase == CanaryPhase::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
