//! Benchmarks that print one JSON object each. Not timed tests: numbers to read and compare.

pub mod controller;
mod envoy;
mod gateway;
mod judge;
mod loadtest;
pub mod soak;
pub mod versus;

pub use gateway::{against_envoy, gateway};
pub use judge::judge_bench;
pub use loadtest::loadtest;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start {what}: {reason}")]
    Start { what: &'static str, reason: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Timeout(String),
}

pub(crate) fn start_error(what: &'static str) -> impl Fn(std::io::Error) -> BenchError {
    move |e| BenchError::Start {
        what,
        reason: e.to_string(),
    }
}

/// Starts `executable args…` as its own process (stderr discarded, so it logs only warnings:
/// formatting log lines nobody reads would count in its CPU) and reads the address it
/// serves from its first line, `listening <address>`; the rest of its output is drained.
pub(crate) async fn start_listening(
    executable: &std::path::Path,
    args: &[&str],
    what: &'static str,
) -> Result<(tokio::process::Child, std::net::SocketAddr), BenchError> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(executable)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(start_error(what))?;
    let stdout = child.stdout.take().ok_or_else(|| BenchError::Start {
        what,
        reason: "no stdout".into(),
    })?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = lines.next_line().await.map_err(start_error(what))?;
    let address = first
        .as_deref()
        .and_then(|line| line.strip_prefix("listening "))
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| BenchError::Start {
            what,
            reason: format!("unexpected first line {first:?}"),
        })?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, address))
}

/// A loopback port free now, for a child process that must be told its port.
pub(crate) fn free_loopback_port(what: &'static str) -> Result<u16, BenchError> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").map_err(start_error(what))?;
    Ok(socket.local_addr().map_err(start_error(what))?.port())
}

/// The `q` quantile of `values` (nearest rank); None when empty.
pub(crate) fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

pub(crate) fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Two KiB fields of a process's /proc status (0 where missing).
fn status_kib(pid: u32, (first, second): (&str, &str)) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field(first), field(second))
}

/// Resident and peak memory of a process, in KiB, from /proc.
pub(crate) fn memory_kib(pid: u32) -> (u64, u64) {
    status_kib(pid, ("VmRSS:", "VmHWM:"))
}

/// A process's resident memory by kind, in KiB: anonymous (heap, stacks) and file-backed
/// (its program's code and data as mapped), from /proc.
pub(crate) fn resident_kinds_kib(pid: u32) -> (u64, u64) {
    status_kib(pid, ("RssAnon:", "RssFile:"))
}

/// CPU seconds (user + system) a process has used, from /proc.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn machine(note: &str) -> serde_json::Value {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadavg": loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "note": note,
    })
}
