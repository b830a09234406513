//! helm, built by `tests/env/testenv build`, run on charts/aviary against the test cluster.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/aviary");

fn binary() -> PathBuf {
    let path = std::env::var_os("AVIARY_HELM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::testenv_export("AVIARY_HELM_BIN"));
    assert!(
        path.exists(),
        "helm is not built at {}: run tests/env/testenv build",
        path.display()
    );
    path
}

/// Runs helm with the test cluster's kubeconfig (which need not be up for lint and template).
pub fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("KUBECONFIG", super::run_dir().join("kubeconfig"))
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("aviary-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("aviary-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("aviary-helm/data"),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run helm {args:?}: {e}"))
}

/// Runs helm and returns its stdout; panics with its stderr when it fails.
pub fn ok(args: &[&str]) -> String {
    let output = run(args);
    assert!(
        output.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The chart rendered for `release` in `namespace` with `values` (`key=value` each).
pub fn template(release: &str, namespace: &str, values: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    for value in values {
        args.extend(["--set", value]);
    }
    documents(&ok(&args))
}

pub fn documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .filter(|document: &Value| !document.is_null())
        .collect()
}

/// `helm install` (or `upgrade --install`) of the chart, waiting for its Deployments.
pub fn install(release: &str, namespace: &str, values: &[&str]) {
    let mut args = vec![
        "upgrade",
        "--install",
        release,
        CHART,
        "--namespace",
        namespace,
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
    ];
    for value in values {
        args.extend(["--set", value]);
    }
    ok(&args);
}
