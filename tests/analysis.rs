//! Metric analysis against a real Prometheus (Debian's package): the built-in checks of every
//! data plane and every file in analysis-templates/ compute a known answer from series in the
//! exact upstream shape; credentials (bearer token, basic auth) and TLS with a custom CA work and
//! fail clearly.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use aviary::api::{BUILTIN_DURATION, BUILTIN_SUCCESS_RATE};
use aviary::metrics::prometheus::{
    Connection, MeshProvider, MeshTelemetry, PrometheusClient, WorkloadRef,
};
use aviary::metrics::templates::{render, PrometheusPool, TemplateVars};
use aviary::metrics::{MetricError, MetricProvider, MetricQuery};
use aviary::plan::TargetKind;
use aviary::validate::{validate_text, Manifest, Options};
use support::series::{workload, KnownSeries};

const PLANES: [&str; 4] = ["istio", "linkerd", "envoy", "gateway"];
/// 19 good and 1 failed request per second: 95 % success; latency between 50 and 100 ms.
const OK: f64 = 19.0;
const ERRORS: f64 = 1.0;
const WINDOW: Duration = Duration::from_secs(30);

/// One exporter with a workload `cart` in namespace `shop` in every data plane's shape, and a
/// Prometheus scraping it, shared by the tests of this binary.
fn known() -> &'static String {
    static SHARED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let counters = PLANES
            .iter()
            .flat_map(|plane| workload(plane, "shop", "cart", OK, ERRORS))
            .collect();
        let (_, address) = KnownSeries::serve(counters);
        let prometheus = support::prometheus(&[address]);
        wait_for_samples(&prometheus);
        prometheus
    })
}

/// Rates need two samples inside the window; wait until the first counter has five.
fn wait_for_samples(prometheus: &str) {
    let url = prometheus.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = PrometheusClient::new(&url, Duration::from_secs(2));
            for _ in 0..300 {
                let samples = client
                    .query_number("count_over_time(up[30s])", "exporter", 30)
                    .await;
                if samples.is_ok_and(|n| n >= 5.0) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("Prometheus at {url} never collected five samples");
        })
    })
    .join()
    .unwrap();
}

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0)
}

fn plane_telemetry(plane: &str) -> MeshTelemetry {
    MeshTelemetry::parse(plane).unwrap()
}

#[tokio::test]
async fn builtin_checks_of_every_data_plane_compute_the_known_answer() {
    let prometheus = known();
    for plane in PLANES {
        let provider = MeshProvider {
            prometheus: PrometheusClient::new(prometheus, Duration::from_secs(5)),
            mesh: plane_telemetry(plane),
            workload: WorkloadRef {
                namespace: "shop".into(),
                name: "cart".into(),
                kind: TargetKind::Deployment,
            },
        };
        for (check, expected) in [(BUILTIN_SUCCESS_RATE, 95.0), (BUILTIN_DURATION, 99.5)] {
            let query = MetricQuery {
                name: check.into(),
                window: WINDOW,
                min_samples: Some(10),
            };
            let value = provider.measure(&query).await.unwrap();
            assert!(
                close(value, expected),
                "{plane} {check}: {value} != {expected}"
            );
        }
        // minSamples above the traffic is no data, with the count.
        let starved = provider
            .measure(&MetricQuery {
                name: BUILTIN_SUCCESS_RATE.into(),
                window: WINDOW,
                min_samples: Some(10_000_000),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                starved,
                MetricError::TooFewSamples {
                    min: 10_000_000,
                    ..
                }
            ),
            "{plane}: {starved}"
        );
        // A workload without series is no data, never a number.
        let idle = MeshProvider {
            workload: WorkloadRef {
                namespace: "shop".into(),
                name: "idle".into(),
                kind: TargetKind::Deployment,
            },
            ..provider
        };
        let error = idle
            .measure(&MetricQuery {
                name: BUILTIN_SUCCESS_RATE.into(),
                window: WINDOW,
                min_samples: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no traffic reached idle in the last 30s",
            "{plane}"
        );
    }
}

fn templates_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("analysis-templates")
}

#[tokio::test]
async fn every_analysis_template_computes_the_known_answer() {
    let prometheus = known();
    let client = PrometheusClient::new(prometheus, Duration::from_secs(5));
    let vars = TemplateVars {
        name: "cart".into(),
        namespace: "shop".into(),
        target: "cart".into(),
        service: "cart".into(),
        interval: "30s".into(),
        variables: BTreeMap::from([
            ("cluster".to_string(), "cart".to_string()),
            ("slo".to_string(), "0.99".to_string()),
        ]),
        ..TemplateVars::default()
    };
    let mut tested = 0;
    let mut files: Vec<_> = std::fs::read_dir(templates_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in &files {
        let report = validate_text(&std::fs::read_to_string(path).unwrap(), Options::default());
        assert!(
            !report.has_errors(),
            "{}: {:?}",
            path.display(),
            report.findings
        );
        let Some(Manifest::MetricTemplate { name, spec }) = report.manifests.first() else {
            panic!("{} holds no MetricTemplate", path.display());
        };
        let known_answers = [
            ("success-rate", 95.0),
            ("latency-p99", 99.5),
            ("latency-p95", 97.5),
            // 5 % errors against a 1 % budget: burning five times too fast.
            ("error-budget-burn", 5.0),
        ];
        let expected = known_answers
            .iter()
            .find(|(kind, _)| name.ends_with(kind))
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("{name}: no known answer for this kind of template"));
        let query = render(&spec.query, &vars).unwrap();
        let value = client.query_number(&query, "cart", 30).await.unwrap();
        assert!(
            close(value, expected),
            "{name}: {value} != {expected}\n{query}"
        );
        tested += 1;
    }
    assert_eq!(tested, 12, "every file has a known answer");
}

/// A Prometheus of our own with a web config (TLS, basic auth), scraping nothing.
struct SecuredPrometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for SecuredPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> String {
    let exports = support::testenv_cmd(&["env"]);
    exports
        .lines()
        .find_map(|l| l.strip_prefix("export AVIARY_PROMETHEUS_BIN="))
        .expect("testenv env names AVIARY_PROMETHEUS_BIN")
        .trim_matches('\'')
        .to_string()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (tests/env/testenv build installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=aviary-test-ca"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut request = vec![
        "req",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ];
    request.extend(ec);
    openssl(dir, &request);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
}

/// bcrypt of `PASSWORD`, as Prometheus's web config wants it.
const PASSWORD: &str = "aviary-test-password";
const PASSWORD_HASH: &str = "$2b$04$U9kqm8V4Ao2wgGTZepcP4uP2qR6pNin1WZDO3RikQuX/fPkwuVa5W";

fn secured_prometheus() -> SecuredPrometheus {
    let dir = std::env::temp_dir().join(format!("aviary-secured-{}", rand::random::<u32>()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    make_certificates(&dir);
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\nbasic_auth_users:\n  aviary: {PASSWORD_HASH}\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1s\n",
    )
    .unwrap();
    let port = support::free_port();
    let child = Command::new(prometheus_binary())
        .arg(format!("--config.file={}/prometheus.yml", dir.display()))
        .arg(format!("--web.config.file={}/web.yml", dir.display()))
        .arg(format!("--storage.tsdb.path={}/data", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("log")).unwrap())
        .spawn()
        .expect("Prometheus starts");
    SecuredPrometheus { child, port, dir }
}

fn secret(pairs: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

#[tokio::test]
async fn basic_auth_and_tls_with_a_custom_ca() {
    let secured = secured_prometheus();
    let address = format!("https://127.0.0.1:{}", secured.port);
    let ca = std::fs::read(secured.dir.join("ca.crt")).unwrap();
    let pool = PrometheusPool::new(Duration::from_secs(5));
    let good = Connection::from_secret(
        &address,
        "test/prometheus",
        &secret(&[
            ("username", b"aviary"),
            ("password", PASSWORD.as_bytes()),
            ("ca.crt", &ca),
        ]),
        false,
    )
    .unwrap();
    let client = pool.client(&good, Duration::from_secs(5)).unwrap();
    let mut answered = None;
    // Prometheus, started just now, may take a while to serve on a loaded machine.
    for _ in 0..300 {
        match client.query_number("vector(42)", "x", 1).await {
            Ok(value) => {
                answered = Some(value);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert_eq!(
        answered,
        Some(42.0),
        "log: {}",
        std::fs::read_to_string(secured.dir.join("log")).unwrap_or_default()
    );

    let wrong_password = Connection {
        auth: aviary::metrics::prometheus::Auth::Basic {
            username: "aviary".into(),
            password: "guess".into(),
        },
        ..good.clone()
    };
    let refused = pool
        .client(&wrong_password, Duration::from_secs(5))
        .unwrap()
        .query_number("vector(1)", "x", 1)
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("refused the credentials: HTTP 401"),
        "{refused}"
    );

    let untrusted = Connection {
        ca_pem: None,
        ..good.clone()
    };
    let error = pool
        .client(&untrusted, Duration::from_secs(5))
        .unwrap()
        .query_number("vector(1)", "x", 1)
        .await
        .unwrap_err();
    assert!(
        matches!(error, MetricError::Provider { .. }) && error.to_string().contains(&address),
        "a certificate from an unknown CA is refused, naming the server: {error}"
    );

    let skip = Connection {
        ca_pem: None,
        insecure_skip_verify: true,
        ..good
    };
    let value = pool
        .client(&skip, Duration::from_secs(5))
        .unwrap()
        .query_number("vector(7)", "x", 1)
        .await
        .unwrap();
    assert_eq!(value, 7.0, "insecureSkipVerify accepts the certificate");
}

/// Prometheus has no bearer-token auth of its own; deployments put an authenticating proxy in
/// front. This one accepts one token and forwards to the real Prometheus.
fn token_proxy(upstream: &str, token: &'static str) -> String {
    let upstream = upstream.to_string();
    let http = aviary::http_client::client(Duration::from_secs(10));
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let (http, upstream) = (http.clone(), upstream.clone());
        async move {
            let expected = format!("Bearer {token}");
            let authorized = request
                .headers()
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == expected.as_bytes());
            if !authorized {
                return (axum::http::StatusCode::UNAUTHORIZED, String::new());
            }
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let body = http
                .get(format!("{upstream}{path}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            (axum::http::StatusCode::OK, body)
        }
    });
    format!("http://{}", support::serve_on_own_thread(app))
}

#[tokio::test]
async fn bearer_token_from_the_secret_is_sent() {
    let proxy = token_proxy(known(), "s3cret-token");
    let pool = PrometheusPool::new(Duration::from_secs(5));
    let with_token = Connection::from_secret(
        &proxy,
        "test/p",
        &secret(&[("token", b"s3cret-token\n")]),
        false,
    )
    .unwrap();
    let value = pool
        .client(&with_token, Duration::from_secs(5))
        .unwrap()
        .query_number("vector(3)", "x", 1)
        .await
        .unwrap();
    assert_eq!(value, 3.0);
    let without = pool
        .client(&Connection::plain(&proxy), Duration::from_secs(5))
        .unwrap()
        .query_number("vector(3)", "x", 1)
        .await
        .unwrap_err();
    assert!(without.to_string().contains("HTTP 401"), "{without}");
}

#[test]
fn a_template_with_a_syntax_error_is_refused_by_validate_with_file_and_field() {
    let dir = std::env::temp_dir().join(format!("aviary-bad-template-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.yaml");
    std::fs::write(
        &file,
        "apiVersion: aviary.dev/v1beta1\nkind: MetricTemplate\nmetadata:\n  name: broken\nspec:\n  provider:\n    type: prometheus\n  query: sum(rate(x{ns=\"{{ namespace }\"}[{{ interval }}]))\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aviary"))
        .args(["validate", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&file.display().to_string()),
        "names the file: {text}"
    );
    assert!(
        text.contains("line 8: spec.query"),
        "names the field and line: {text}"
    );
}

mod in_the_controller {
    //! The same analysis through the controller on the real control plane: MetricTemplates at
    //! run time, each `onNoData` mode on a query with no series, a Prometheus that is down, and
    //! template problems reported in the status.

    use std::time::Duration;

    use kube::api::{Api, PostParams};
    use serde_json::{json, Value};

    use aviary::api::{CanaryPhase, MetricTemplate};

    use crate::support::eventually;
    use crate::support::fixture::Fixture;
    use crate::support::telemetry::Health;

    const LIMIT: Duration = Duration::from_secs(90);

    async fn template(f: &Fixture, name: &str, spec: Value) {
        let api: Api<MetricTemplate> = Api::namespaced(f.client.clone(), &f.ns);
        let template: MetricTemplate =
            serde_json::from_value(json!({ "apiVersion": "aviary.dev/v1beta1", "kind": "MetricTemplate", "metadata": { "name": name }, "spec": spec }))
                .unwrap();
        api.create(&PostParams::default(), &template).await.unwrap();
    }

    fn analysis(metric: Value) -> Value {
        json!({ "interval": "1s", "threshold": 2, "stepWeight": 50, "metrics": [metric] })
    }

    async fn rolling(f: &Fixture, name: &str, metric: Value, deadline: i32) {
        f.telemetry.set(&f.ns, name, Health::GOOD);
        f.create_target(name, &format!("{name}:1")).await;
        f.create_canary(
            name,
            name,
            analysis(metric),
            json!({ "progressDeadlineSeconds": deadline }),
        )
        .await;
        f.wait_phase(name, CanaryPhase::Initialized, LIMIT).await;
        f.set_image(name, &format!("{name}:2")).await;
    }

    fn notes(events: &[(String, String)], reason: &str) -> Vec<String> {
        events
            .iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, n)| n.clone())
            .collect()
    }

    #[tokio::test]
    async fn no_series_under_each_on_no_data_mode_and_a_prometheus_that_is_down() {
        let f = Fixture::new("nodata").await;
        let (_, prometheus) = crate::support::telemetry::ProxyTelemetry::shared();
        template(
            &f,
            "empty",
            json!({ "provider": { "type": "prometheus", "address": prometheus }, "query": "sum(rate(never_exported_total{namespace=\"{{ namespace }}\",deployment=\"{{ target }}\"}[{{ interval }}]))" }),
        )
        .await;
        template(
            &f,
            "unreachable",
            json!({ "provider": { "type": "prometheus", "address": "http://127.0.0.1:1" }, "query": "vector(100)" }),
        )
        .await;
        template(
            &f,
            "healthy",
            json!({ "provider": { "type": "prometheus", "address": prometheus }, "query": "sum(rate(istio_requests_total{destination_workload_namespace=\"{{ namespace }}\",destination_workload=\"{{ target }}\"}[{{ interval }}])) > bool 0" }),
        )
        .await;
        let metric = |template: &str, on_no_data: &str| json!({ "name": "requests", "interval": "10s", "templateRef": { "name": template }, "onNoData": on_no_data, "thresholdRange": { "min": 1 } });
        rolling(&f, "fail", metric("empty", "fail"), 60).await;
        rolling(&f, "hold", metric("empty", "hold"), 6).await;
        rolling(&f, "pass", metric("empty", "pass"), 60).await;
        rolling(&f, "down", metric("unreachable", "fail"), 6).await;
        rolling(&f, "templated", metric("healthy", "fail"), 60).await;

        let failed = f.wait_phase("fail", CanaryPhase::Failed, LIMIT).await;
        assert_eq!(failed.failed_checks, 2);
        let passed = f.wait_phase("pass", CanaryPhase::Succeeded, LIMIT).await;
        assert_eq!(passed.failed_checks, 0);
        f.wait_phase("templated", CanaryPhase::Succeeded, LIMIT)
            .await;
        let held = f.wait_phase("hold", CanaryPhase::Failed, LIMIT).await;
        assert_eq!(held.failed_checks, 0, "holding is not failing");
        let down = f.wait_phase("down", CanaryPhase::Failed, LIMIT).await;
        assert_eq!(
            down.failed_checks, 0,
            "a provider that is down is not a failed check"
        );
        for name in ["hold", "down"] {
            assert_eq!(
                f.image_of(&format!("{name}-primary")).await,
                format!("{name}:1"),
                "{name} never promoted"
            );
        }

        let events = f.event_reasons().await;
        let rolled = notes(&events, "RolledBack");
        assert!(
            rolled
                .iter()
                .any(|n| n.contains("no traffic reached fail in the last 10s")),
            "{rolled:#?}"
        );
        assert!(
            rolled
                .iter()
                .any(|n| n.contains("no verdict for") && n.contains("no traffic reached hold")),
            "{rolled:#?}"
        );
        let held = notes(&events, "AnalysisHeld");
        assert!(
            held.iter()
                .any(|n| n.contains("prometheus provider failed: http://127.0.0.1:1")),
            "the event names the provider that failed: {held:#?}"
        );
        assert!(
            rolled
                .iter()
                .any(|n| n.contains("no verdict for") && n.contains("http://127.0.0.1:1")),
            "{rolled:#?}"
        );
    }

    #[tokio::test]
    async fn template_problems_are_reported_in_the_status_before_anything_runs() {
        let f = Fixture::new("badtemplate").await;
        template(
            &f,
            "typo",
            json!({ "provider": { "type": "prometheus" }, "query": "sum(rate(x{ns=\"{{ namespce }}\"}[{{ interval }}]))" }),
        )
        .await;
        template(
            &f,
            "needs-route",
            json!({ "provider": { "type": "prometheus" }, "query": "sum(rate(x{path=\"{{ variables.route }}\"}[{{ interval }}]))" }),
        )
        .await;
        for (name, metric, fragment) in [
            (
                "typo",
                json!({ "name": "m", "templateRef": { "name": "typo" } }),
                "unknown variable {{ namespce }}",
            ),
            (
                "novars",
                json!({ "name": "m", "templateRef": { "name": "needs-route" } }),
                "templateVariables has no \"route\"",
            ),
            (
                "missing",
                json!({ "name": "m", "templateRef": { "name": "nowhere" } }),
                "not found",
            ),
        ] {
            f.create_target(name, "x:1").await;
            f.create_canary(name, name, analysis(metric), json!({}))
                .await;
            // The template store may see a just-created template after the canary's first
            // reconcile ("not found"); the template's watch event then brings the real problem.
            eventually(LIMIT, || async {
                f.condition(name, "Ready")
                    .await
                    .is_some_and(|(_, _, message)| message.contains(fragment))
            })
            .await;
            let (status, reason, message) = f.condition(name, "Ready").await.unwrap();
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", "InvalidMetric"),
                "{name}"
            );
            assert!(
                message.contains("spec.analysis.metrics[0].templateRef")
                    && message.contains(fragment),
                "{name}: {message}"
            );
            assert!(f
                .deployments()
                .get_opt(&format!("{name}-primary"))
                .await
                .unwrap()
                .is_none());
        }
        // Fixing the template lets the canary start: the template watch wakes it.
        let api: Api<MetricTemplate> = Api::namespaced(f.client.clone(), &f.ns);
        let mut typo = api.get("typo").await.unwrap();
        typo.spec.query = "vector(1)".into();
        api.replace("typo", &PostParams::default(), &typo)
            .await
            .unwrap();
        f.wait_phase("typo", CanaryPhase::Initialized, LIMIT).await;
    }

    #[tokio::test]
    async fn the_comparative_judge_rolls_back_at_the_first_look_and_promotes_an_equal_canary() {
        let f = Fixture::new("judge").await;
        let metric = json!({
            "name": "request-success-rate", "interval": "10s", "compare": "primary",
            "judge": { "confidence": 0.99 }
        });
        for name in ["equal", "worse"] {
            f.telemetry
                .set(&f.ns, &format!("{name}-primary"), Health::GOOD);
            f.telemetry.set(&f.ns, name, Health::GOOD);
            f.create_target(name, &format!("{name}:1")).await;
            let mut spec = analysis(metric.clone());
            spec["interval"] = json!("2s");
            spec["threshold"] = json!(5);
            spec["stepWeight"] = json!(25);
            f.create_canary(name, name, spec, json!({})).await;
        }
        for name in ["equal", "worse"] {
            f.wait_phase(name, CanaryPhase::Initialized, LIMIT).await;
        }
        f.telemetry.set(&f.ns, "worse", Health::FAILING);
        for name in ["equal", "worse"] {
            f.set_image(name, &format!("{name}:2")).await;
        }
        let worse = f.wait_phase("worse", CanaryPhase::Failed, LIMIT).await;
        assert_eq!(
            worse.failed_checks, 1,
            "one decisive verdict, not five failed checks: {worse:#?}"
        );
        let judged = &worse.judgements[0];
        assert_eq!(judged.verdict, aviary::judge::Verdict::Fail, "{judged:?}");
        assert!(judged.effect.is_some_and(|e| e > 5.0), "{judged:?}");
        let equal = f.wait_phase("equal", CanaryPhase::Succeeded, LIMIT).await;
        assert_eq!(equal.failed_checks, 0);
        let events = f.event_reasons().await;
        let rolled = notes(&events, "RolledBack");
        assert!(
            rolled.iter().any(|n| n.contains("judged against the primary") && n.contains("error-rate ratio")),
            "{rolled:#?}"
        );
        let advanced = notes(&events, "WeightAdvanced");
        assert!(
            advanced
                .iter()
                .any(|n| n.contains("request-success-rate judged Pass")),
            "{advanced:#?}"
        );
    }

    /// Median `latency_ms`, log-normal σ 0.5: at 100 ms the P99 is about 320 ms, in the
    /// (250, 500] bucket.
    fn timed(requests_per_second: f64, latency_ms: f64) -> Health {
        Health {
            requests_per_second,
            latency_ms,
            latency_sigma: 0.5,
            ..Health::GOOD
        }
    }

    #[tokio::test]
    async fn the_judge_rolls_back_a_half_slower_canary_at_ten_percent_and_promotes_a_tenth_slower_one(
    ) {
        let f = Fixture::new("latency").await;
        let metric = json!({
            "name": "request-duration", "interval": "15s", "compare": "primary",
            "judge": { "confidence": 0.99, "allowedIncrease": 20 }
        });
        // The canary takes a tenth of the traffic: 300 of 3000 requests a second.
        for name in ["slower", "tenth"] {
            f.telemetry
                .set(&f.ns, &format!("{name}-primary"), timed(2700.0, 100.0));
            f.telemetry.set(&f.ns, name, timed(300.0, 100.0));
            f.create_target(name, &format!("{name}:1")).await;
            let spec = json!({ "interval": "15s", "threshold": 3, "stepWeights": [10, 50], "metrics": [metric] });
            f.create_canary(name, name, spec, json!({})).await;
        }
        for (name, canary_ms) in [("slower", 150.0), ("tenth", 110.0)] {
            f.wait_phase(name, CanaryPhase::Initialized, LIMIT).await;
            f.telemetry.set(&f.ns, name, timed(300.0, canary_ms));
            f.set_image(name, &format!("{name}:2")).await;
        }
        let slower = f.wait_phase("slower", CanaryPhase::Failed, LIMIT * 2).await;
        let judged = &slower.judgements[0];
        println!("slower: {judged:?}");
        assert_eq!(judged.verdict, aviary::judge::Verdict::Fail, "{judged:?}");
        assert!(
            judged.effect.is_some_and(|e| (1.35..1.7).contains(&e)),
            "{judged:?}"
        );
        assert_eq!(slower.failed_checks, 1, "one decisive verdict: {slower:#?}");
        let events = f.event_reasons().await;
        let rolled = notes(&events, "RolledBack");
        assert!(
            rolled
                .iter()
                .any(|n| n.contains("judged against the primary")
                    && n.contains("sub-intervals")
                    && n.contains("exceeds ×1.20")),
            "{rolled:#?}"
        );
        let advanced = notes(&events, "WeightAdvanced");
        assert!(
            !advanced
                .iter()
                .any(|n| n.starts_with("Advanced slower to canary weight 50")),
            "the slower canary never went past 10%: {advanced:#?}"
        );
        let tenth = f
            .wait_phase("tenth", CanaryPhase::Succeeded, LIMIT * 2)
            .await;
        assert_eq!(tenth.failed_checks, 0);
        let judged = &tenth.judgements[0];
        assert_eq!(judged.verdict, aviary::judge::Verdict::Pass, "{judged:?}");
        assert!(
            judged.effect.is_some_and(|e| (1.0..1.2).contains(&e)),
            "{judged:?}"
        );
    }
}
