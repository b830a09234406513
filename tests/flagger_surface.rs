//! Flagger's surface, read from Flagger's own source (its Go module, fetched by
//! tests/env/testenv build, never committed here): every field path of its CRD schema exists in
//! ours, typed where Flagger types it, and every whole manifest of its docs and e2e tests for the
//! providers Aviary claims is accepted by `aviary validate --provider P`. Also the validator's
//! own behaviour on Flagger-shaped input: every error of a document at once, and Flagger's
//! meaning where Aviary used to be stricter.

use std::path::PathBuf;
use std::process::Command;

use aviary::api::RouterKind;
use aviary::validate::{validate_text, Options, Severity};

fn flagger_source() -> PathBuf {
    let dir = std::env::var("AVIARY_FLAGGER_SOURCE").expect(
        "AVIARY_FLAGGER_SOURCE is unset: run under tests/env/testenv run (testenv build downloads Flagger's module)",
    );
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("artifacts/flagger/crd.yaml").is_file(),
        "{} holds no Flagger source: run tests/env/testenv build",
        dir.display()
    );
    dir
}

fn python() -> String {
    std::env::var("AVIARY_PYTHON_BIN").unwrap_or_else(|_| "python3".into())
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

#[test]
fn no_path_of_flaggers_schema_is_missing_open_or_unchecked() {
    let ours = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/aviary.yaml");
    let theirs = flagger_source().join("artifacts/flagger/crd.yaml");
    let out = Command::new(python())
        .arg(script("flagger_schema_diff.py"))
        .args([&theirs, &ours])
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schema diff found gaps:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn flaggers_own_manifests_are_accepted_for_every_claimed_provider() {
    let binary = env!("CARGO_BIN_EXE_aviary");
    let out = Command::new(python())
        .arg(script("flagger_manifests.py"))
        .arg(flagger_source())
        .arg(binary)
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("{report:#}");
    let refused: Vec<_> = report["refused"].as_array().into_iter().flatten().collect();
    assert!(refused.is_empty(), "refused: {refused:#?}");
    assert!(report["total"].as_u64().unwrap_or(0) >= 50, "{report}");
}

fn findings(text: &str, options: Options) -> Vec<(Severity, String, String)> {
    validate_text(text, options)
        .findings
        .into_iter()
        .map(|f| (f.severity, f.path, f.message))
        .collect()
}

const CANARY: &str = "apiVersion: aviary.dev/v1beta1\nkind: Canary\nmetadata:\n  name: web\nspec:\n  targetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n  service:\n    port: 80\n";

#[test]
fn every_error_of_a_document_is_reported_in_one_run() {
    let text = format!(
        "{CANARY}  analysis:\n    interval: 1m\n    threshold: many\n    maxWeight: lots\n    stepWeight: 10\n    iterations: 3\n    metricz: []\n"
    );
    let errors: Vec<String> = findings(&text, Options::default())
        .into_iter()
        .filter(|(s, _, _)| *s == Severity::Error)
        .map(|(_, path, _)| path)
        .collect();
    for path in [
        "spec.analysis.threshold",
        "spec.analysis.maxWeight",
        "spec.analysis.metricz",
    ] {
        assert!(
            errors.iter().any(|p| p == path),
            "{path} missing from {errors:?}"
        );
    }
}

#[test]
fn the_provider_flag_reads_canaries_as_the_controller_default_would() {
    // A/B matching is refused under a provider that cannot route by header.
    let text = format!(
        "{CANARY}  analysis:\n    interval: 1m\n    iterations: 2\n    match:\n      - headers:\n          x-canary:\n            exact: insider\n"
    );
    let under = |router| {
        findings(
            &text,
            Options {
                default_router: Some(router),
                ..Default::default()
            },
        )
        .into_iter()
        .filter(|(s, _, _)| *s == Severity::Error)
        .map(|(_, path, message)| format!("{path}: {message}"))
        .collect::<Vec<_>>()
    };
    assert!(under(RouterKind::Istio).is_empty());
    let smi = under(RouterKind::Smi(aviary::api::SmiVersion::V1alpha2));
    assert!(
        smi.iter().any(|e| e.starts_with("spec.analysis.match")),
        "{smi:?}"
    );
    let plain = under(RouterKind::Kubernetes);
    assert!(
        plain.iter().any(|e| e.starts_with("spec.analysis.match")),
        "{plain:?}"
    );
}

#[test]
fn kubernetes_runs_blue_green_only_and_refuses_what_it_cannot_route() {
    let canary = format!(
        "{CANARY}  provider: kubernetes\n  analysis:\n    interval: 1m\n    stepWeight: 10\n"
    );
    let found = findings(&canary, Options::default());
    assert!(
        found
            .iter()
            .any(|(s, p, _)| *s == Severity::Error && p == "spec.analysis.iterations"),
        "{found:?}"
    );
    let blue_green = format!(
        "{CANARY}  provider: kubernetes\n  analysis:\n    interval: 1m\n    iterations: 5\n"
    );
    let found = findings(&blue_green, Options::default());
    assert!(
        found.iter().all(|(s, _, _)| *s != Severity::Error),
        "{found:?}"
    );
    let policy = CANARY.replace(
        "    port: 80\n",
        "    port: 80\n    trafficPolicy:\n      tls:\n        mode: ISTIO_MUTUAL\n",
    ) + "  provider: gatewayapi:v1beta1\n  analysis:\n    interval: 1m\n";
    let policy = policy.replace(
        "  service:\n",
        "  service:\n    gatewayRefs:\n      - name: edge\n",
    );
    let found = findings(&policy, Options::default());
    assert!(
        found
            .iter()
            .any(|(s, p, _)| *s == Severity::Error && p == "spec.service.trafficPolicy"),
        "{found:?}"
    );
}

#[test]
fn cookie_attributes_and_template_headers_cannot_break_out_of_their_header() {
    let canary = format!(
        "{CANARY}  analysis:\n    interval: 1m\n    stepWeight: 10\n    sessionAffinity:\n      cookieName: \"user; Domain=evil.example\"\n      domain: \"shop.example\\r\\nSet-Cookie: x=1\"\n      path: /app\n      sameSite: Lax\n      secure: true\n"
    );
    let found = findings(&canary, Options::default());
    for path in [
        "spec.analysis.sessionAffinity.cookieName",
        "spec.analysis.sessionAffinity.domain",
    ] {
        assert!(
            found
                .iter()
                .any(|(s, p, _)| *s == Severity::Error && p == path),
            "{path}: {found:?}"
        );
    }
    let template = "apiVersion: aviary.dev/v1beta1\nkind: MetricTemplate\nmetadata:\n  name: t\nspec:\n  provider:\n    type: prometheus\n    headers:\n      X-Scope-OrgID: [team-a]\n  query: up\n";
    let found = findings(template, Options::default());
    assert!(
        found.iter().any(|(s, p, m)| *s == Severity::Error
            && p == "spec.provider.headers"
            && m.contains("address")),
        "a tenant header to the shared Prometheus: {found:?}"
    );
    let own = template.replace(
        "    headers:",
        "    address: http://prometheus.team-a:9090\n    headers:",
    );
    let found = findings(&own, Options::default());
    assert!(
        found.iter().all(|(s, _, _)| *s != Severity::Error),
        "{found:?}"
    );
}
