//! The standalone runner end to end over loopback: the real binary, real sample apps, real
//! webhooks. Nothing here is mocked; every process is started by the test and killed with it.

use std::process::Stdio;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use axum::{extract::State, routing::post, Json, Router};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod support;

use support::free_port;

const AVIARY: &str = env!("CARGO_BIN_EXE_aviary");

/// A port where nothing listens for the whole test: bound, never listening, so connections to
/// it are refused and nothing else can take it. Keep the socket alive as long as the port.
fn dead_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// A sample app process of the given version and error rate, on a port it picked itself.
async fn sample_app(version: &str, error_rate: f64) -> (Child, u16) {
    let mut child = Command::new(AVIARY)
        .args(["sample-app", "--port", "0", "--version", version])
        .args(["--error-rate", &error_rate.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sample app starts");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("the sample app starts within 60s")
    .unwrap()
    .unwrap();
    let port = line
        .strip_prefix("listening ")
        .and_then(|address| address.trim().rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("sample app said {line:?}"));
    (child, port)
}

type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// A webhook receiver that records every payload and answers 200.
async fn receiver() -> (u16, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(seen): State<Received>, Json(body): Json<serde_json::Value>| async move {
                    seen.lock().push(body);
                    "ok"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

fn manifest(listen: u16, primary: u16, canary: u16, analysis_extra: &str) -> String {
    format!(
        r#"apiVersion: aviary.dev/v1beta1
kind: Canary
metadata:
  name: shop
  namespace: test
spec:
  targetRef:
    name: shop
  service:
    port: {listen}
  standalone:
    listen: 127.0.0.1:{listen}
    primary:
      address: 127.0.0.1:{primary}
      revision: v1
    canary:
      address: 127.0.0.1:{canary}
      revision: v2
  analysis:
    interval: 1s
    threshold: 1
    stepWeight: 50
    maxWeight: 100
    metrics:
      - name: request-success-rate
        interval: 1s
        thresholdRange:
          min: 99
{analysis_extra}"#
    )
}

fn write_manifest(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with(text)
}

/// A tiny temp-file helper: the file goes away with the value.
mod tempfile_path {
    pub struct TempPath(pub std::path::PathBuf);

    impl TempPath {
        pub fn with(text: &str) -> TempPath {
            let path = std::env::temp_dir().join(format!(
                "aviary-test-{}-{}.yaml",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::write(&path, text).unwrap();
            TempPath(path)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// `aviary run` on `file` at `rps`, with stdout and stderr piped; returns the child and its
/// stdout lines. Logs are kept to warnings, so the stderr pipe, read only at the end, cannot
/// fill and stall the run.
fn start_run(
    file: &std::path::Path,
    rps: &str,
) -> (
    Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = Command::new(AVIARY)
        .args(["run", "-f"])
        .arg(file)
        .args(["--allow-short-intervals", "--load-rps", rps])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Reads stdout until a line starting with `prefix` (within 90 s); returns everything read.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with(prefix) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(found == Ok(true), "no {prefix} line; the run said:\n{seen}");
    seen
}

async fn run(file: &std::path::Path) -> std::process::Output {
    let child = Command::new(AVIARY)
        .args(["run", "-f"])
        .arg(file)
        .args(["--allow-short-intervals", "--load-rps", "80"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("aviary run finishes")
        .unwrap()
}

#[tokio::test]
async fn demo_promotes_the_good_version_and_rolls_back_the_bad_one() {
    let output = Command::new(AVIARY)
        .args(["demo", "--fast"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("v2: Succeeded"), "{stdout}");
    assert!(stdout.contains("v3: Failed"), "{stdout}");
    assert!(stdout.contains("RolledBack"), "{stdout}");
}

#[tokio::test]
async fn run_promotes_and_calls_every_webhook_with_the_payload() {
    let (_primary, primary) = sample_app("v1", 0.0).await;
    let (_canary, canary) = sample_app("v2", 0.0).await;
    let (hooks, received) = receiver().await;
    let url = format!("http://127.0.0.1:{hooks}/hook");
    let webhooks = format!(
        "    webhooks:\n{}",
        ["confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "post-rollout", "event"]
            .iter()
            .map(|kind| format!("      - name: {kind}-hook\n        type: {kind}\n        url: {url}\n        metadata:\n          team: shop\n"))
            .collect::<String>()
    );
    let file = write_manifest(&manifest(free_port(), primary, canary, &webhooks));
    let output = run(&file.0).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("phase: Succeeded"), "{stdout}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let payloads = received.lock().clone();
    for payload in &payloads {
        assert_eq!(payload["name"], "shop");
        assert_eq!(payload["namespace"], "test");
        assert_eq!(payload["checksum"], "v2");
        assert_eq!(payload["metadata"]["team"], "shop");
        assert!(payload["phase"].is_string());
    }
    let phases: Vec<_> = payloads
        .iter()
        .map(|p| p["phase"].as_str().unwrap().to_string())
        .collect();
    assert!(
        phases.contains(&"Succeeded".to_string()),
        "post-rollout sees the final phase: {phases:?}"
    );
    let events = payloads
        .iter()
        .filter(|p| p["metadata"]["eventMessage"].is_string())
        .count();
    assert!(events >= 4, "event hooks hear each event: {payloads:#?}");
    assert!(payloads.len() >= 10, "{payloads:#?}");
}

#[tokio::test]
async fn run_rolls_back_a_failing_canary() {
    let (_primary, primary) = sample_app("v1", 0.0).await;
    let (_canary, canary) = sample_app("v2", 0.5).await;
    let file = write_manifest(&manifest(free_port(), primary, canary, ""));
    let output = run(&file.0).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("phase: Failed"), "{stdout}");
    assert!(stdout.contains("request-success-rate"), "{stdout}");
}

#[tokio::test]
async fn a_canary_that_refuses_connections_fails_checks_with_a_clear_message() {
    let (_primary, primary) = sample_app("v1", 0.0).await;
    let (mut canary_process, canary) = sample_app("v2", 0.0).await;
    let file = write_manifest(&manifest(free_port(), primary, canary, ""));
    let (child, mut lines) = start_run(&file.0, "80");
    // Once traffic goes to the live canary, take the canary away.
    let mut stdout = read_until(&mut lines, "WeightAdvanced").await;
    canary_process.kill().await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(90), async {
        let mut rest = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    })
    .await
    .expect("the run ends");
    stdout.push_str(&rest);
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("refused or dropped"), "{stdout}");
    assert!(stdout.contains(&format!("127.0.0.1:{canary}")), "{stdout}");
}

#[tokio::test]
async fn an_invalid_file_is_refused_before_anything_starts() {
    let listen = free_port();
    let text = manifest(listen, 1, 2, "")
        .replace("interval: 1s\n    threshold", "interval: 1x\n    threshold");
    let file = write_manifest(&text);
    let output = Command::new(AVIARY)
        .args(["run", "-f"])
        .arg(&file.0)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("spec.analysis.interval"), "{stderr}");
    assert!(stderr.contains("line 20"), "{stderr}");
    assert!(stderr.contains("nothing was started"), "{stderr}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", listen)).is_err(),
        "no gateway left running"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_refuses_the_run() {
    let (_primary, primary) = sample_app("v1", 0.0).await;
    let (_held, dead) = dead_port();
    let file = write_manifest(&manifest(free_port(), primary, dead, ""));
    let output = Command::new(AVIARY)
        .args(["run", "-f"])
        .arg(&file.0)
        .arg("--allow-short-intervals")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains(&format!(
            "canary upstream 127.0.0.1:{dead} refuses connections"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn ctrl_c_returns_all_traffic_to_the_primary_before_exiting() {
    let (_primary, primary) = sample_app("v1", 0.0).await;
    let (_canary, canary) = sample_app("v2", 0.0).await;
    let slow = manifest(free_port(), primary, canary, "")
        .replace("stepWeight: 50", "stepWeight: 5")
        .replace("threshold: 1", "threshold: 5");
    let file = write_manifest(&slow);
    let (child, mut lines) = start_run(&file.0, "200");
    read_until(&mut lines, "WeightAdvanced").await;
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("interrupted: all traffic was returned to the primary"),
        "{stderr}"
    );
}
