//! The Grafana dashboards in `charts/aviary/dashboards`: checked against Grafana's own dashboard
//! models, and every panel's every query evaluated in a real Prometheus that scraped the
//! controller through a promotion and a rollback, and proxy-shaped telemetry of each data
//! plane (Istio, Linkerd, Envoy) for the same workloads.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use aviary::api::CanaryPhase;
use support::fixture::Fixture;
use support::receiver::Receiver;
use support::series::{histogram, Counter, KnownSeries};
use support::telemetry::Health;

const DASHBOARDS: [&str; 4] = ["controller", "istio", "linkerd", "envoy"];
const LIMIT: Duration = Duration::from_secs(120);
const TARGET: &str = "web";

fn dashboard_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("charts/aviary/dashboards/{name}.json"))
}

fn dashboard(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dashboard_path(name)).unwrap()).unwrap()
}

#[test]
fn dashboards_match_grafanas_schema() {
    let python = support::testenv_export("AVIARY_PYTHON_BIN");
    let checker = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/grafana_schema.py");
    let out = std::process::Command::new(python)
        .arg(checker)
        .args(DASHBOARDS.map(dashboard_path))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "not Grafana's schema:\n{said}");
    for name in DASHBOARDS {
        let board = dashboard(name);
        let ids: std::collections::BTreeSet<_> = panels(&board).map(|p| p["id"].as_i64()).collect();
        assert_eq!(
            ids.len(),
            panels(&board).count(),
            "{name}: panel ids are unique"
        );
        assert!(
            board["uid"].as_str().unwrap().starts_with("aviary-"),
            "{name}"
        );
    }
}

fn panels(board: &Value) -> impl Iterator<Item = &Value> {
    board["panels"].as_array().unwrap().iter()
}

/// The requests of `workload` (and its callers and callees) in each data plane's shape, with
/// mutual TLS on one caller and off on another, so the security columns have both.
fn mesh_telemetry(ns: &str, workload: &str, service: &str) -> Vec<Counter> {
    let c = |series: String, per_second: f64| Counter { series, per_second };
    let mut out = Vec::new();
    for (caller, security) in [("frontend", "mutual_tls"), ("legacy", "none")] {
        let labels = format!("reporter=\"destination\",destination_workload_namespace=\"{ns}\",destination_workload=\"{workload}\",destination_service=\"{service}.{ns}.svc.cluster.local\",source_workload=\"{caller}\",source_workload_namespace=\"{ns}\",connection_security_policy=\"{security}\"");
        out.push(c(
            format!("istio_requests_total{{{labels},response_code=\"200\"}}"),
            10.0,
        ));
        out.push(c(
            format!("istio_requests_total{{{labels},response_code=\"503\"}}"),
            0.1,
        ));
        out.extend(histogram(
            "istio_request_duration_milliseconds",
            &labels,
            10.1,
            20.0,
            40.0,
        ));
    }
    let outgoing = format!("reporter=\"source\",source_workload_namespace=\"{ns}\",source_workload=\"{workload}\",destination_service=\"db.{ns}.svc.cluster.local\",connection_security_policy=\"mutual_tls\",response_code=\"200\"");
    out.push(c(format!("istio_requests_total{{{outgoing}}}"), 5.0));
    let inbound =
        format!("direction=\"inbound\",namespace=\"{ns}\",deployment=\"{workload}\",tls=\"true\"");
    out.push(c(
        format!("response_total{{{inbound},classification=\"success\",status_code=\"200\"}}"),
        10.0,
    ));
    out.push(c(
        format!("response_total{{{inbound},classification=\"failure\",status_code=\"503\"}}"),
        0.1,
    ));
    out.extend(histogram("response_latency_ms", &inbound, 10.1, 20.0, 40.0));
    let outbound = format!("direction=\"outbound\",namespace=\"{ns}\",deployment=\"{workload}\",dst_deployment=\"db\",dst_namespace=\"{ns}\",tls=\"true\",classification=\"success\",status_code=\"200\"");
    out.push(c(format!("response_total{{{outbound}}}"), 5.0));
    let cluster = format!("envoy_cluster_name=\"{ns}/{service}/9898\"");
    out.push(c(
        format!("envoy_cluster_upstream_rq_xx{{{cluster},envoy_response_code_class=\"2\"}}"),
        10.0,
    ));
    out.push(c(
        format!("envoy_cluster_upstream_rq_xx{{{cluster},envoy_response_code_class=\"5\"}}"),
        0.1,
    ));
    out.extend(histogram(
        "envoy_cluster_upstream_rq_time",
        &cluster,
        10.1,
        20.0,
        40.0,
    ));
    out
}

fn analysis(hook: &str) -> Value {
    json!({
        "interval": "2s",
        "threshold": 2,
        "stepWeight": 30,
        "maxWeight": 60,
        "metrics": [
            { "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } },
            { "name": "request-duration", "interval": "10s", "thresholdRange": { "max": 500 } }
        ],
        "webhooks": [{ "name": "smoke", "type": "rollout", "url": hook }]
    })
}

/// A promotion, then a rollback, of one canary, scraped all along.
async fn two_rollouts(f: &Fixture, hook: &str) {
    f.telemetry.set(&f.ns, TARGET, Health::GOOD);
    f.create_target(TARGET, "web:1").await;
    f.create_canary(TARGET, TARGET, analysis(hook), json!({}))
        .await;
    f.wait_phase(TARGET, CanaryPhase::Initialized, LIMIT).await;
    f.set_image(TARGET, "web:2").await;
    f.wait_phase(TARGET, CanaryPhase::Succeeded, LIMIT).await;
    f.telemetry.set(&f.ns, TARGET, Health::FAILING);
    f.set_image(TARGET, "web:3").await;
    f.wait_phase(TARGET, CanaryPhase::Failed, LIMIT).await;
}

/// The query with the dashboard's variables set as a user looking at this canary would.
fn with_variables(expr: &str, ns: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$namespace", ns)
        .replace("$target", TARGET)
}

/// The result of an instant query, or why there is none.
async fn instant(prometheus: &str, query: &str) -> Result<Vec<Value>, String> {
    let http = aviary::http_client::client(Duration::from_secs(5));
    let url = format!("{prometheus}/api/v1/query");
    let answer: Value = http
        .get(&url)
        .query(&[("query", query)])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if answer["status"] != "success" {
        return Err(format!("refused: {answer}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The samples an instant query returns, with at least one finite value, or why not.
async fn evaluate(prometheus: &str, query: &str) -> Result<Vec<Value>, String> {
    let results = instant(prometheus, query).await?;
    let finite = |r: &Value| {
        let value = r["value"][1].as_str().unwrap_or("NaN");
        value.parse::<f64>().is_ok_and(f64::is_finite)
    };
    match results.iter().any(finite) {
        true => Ok(results),
        false => Err(format!("no finite sample in {results:?}")),
    }
}

/// `label_values(metric, label)` as the query Grafana makes of it.
fn variable_query(definition: &str) -> (String, String) {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|d| d.strip_suffix(')'))
        .expect("variables are label_values(metric, label)");
    let (metric, label) = inner.rsplit_once(',').unwrap();
    (
        format!("count by ({}) ({metric})", label.trim()),
        label.trim().to_string(),
    )
}

async fn check_variables(prometheus: &str, board: &Value, ns: &str, name: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let variables = board["templating"]["list"].as_array().unwrap();
    for variable in variables.iter().filter(|v| v["type"] == "query") {
        let definition = with_variables(variable["query"]["query"].as_str().unwrap(), ns);
        let (query, label) = variable_query(&definition);
        let wanted = if label == "name" { TARGET } else { ns };
        let answer = evaluate(prometheus, &query).await;
        let offered = answer.iter().flatten();
        let has = offered.clone().any(|r| r["metric"][&label] == wanted);
        if answer.is_err() || !has {
            failures.push(format!(
                "{name}: variable {} does not offer {wanted}: {answer:?}",
                variable["name"]
            ));
        }
    }
    failures
}

async fn check_panels(
    prometheus: &str,
    board: &Value,
    ns: &str,
    name: &str,
) -> (usize, Vec<String>) {
    let (mut evaluated, mut failures) = (0, Vec::new());
    for panel in panels(board) {
        for target in panel["targets"].as_array().unwrap() {
            let query = with_variables(target["expr"].as_str().unwrap(), ns);
            evaluated += 1;
            if let Err(why) = evaluate(prometheus, &query).await {
                failures.push(format!(
                    "{name}: \"{}\" {}: {query}: {why}",
                    panel["title"], target["refId"]
                ));
            }
        }
    }
    (evaluated, failures)
}

/// Series Flagger's users query by Flagger's names and labels: they must read Aviary the same.
fn flagger_queries(ns: &str) -> Vec<String> {
    let one = format!("name=\"{TARGET}\",namespace=\"{ns}\"");
    vec![
        "flagger_info".into(),
        format!("flagger_canary_total{{namespace=\"{ns}\"}}"),
        format!("flagger_canary_status{{{one}}} == 2"),
        format!("flagger_canary_weight{{workload=\"{TARGET}-primary\",namespace=\"{ns}\"}} == 100"),
        format!("flagger_canary_weight{{workload=\"{TARGET}\",namespace=\"{ns}\"}}"),
        format!("flagger_canary_metric_analysis{{{one},metric=\"request-success-rate\"}}"),
        format!("flagger_canary_successes_total{{{one},deployment_strategy=\"canary\",analysis_status=\"completed\"}}"),
        format!("flagger_canary_failures_total{{{one},deployment_strategy=\"canary\",analysis_status=\"completed\"}}"),
        format!("histogram_quantile(0.99, sum by (le) (rate(flagger_canary_duration_seconds_bucket{{{one}}}[1m])))"),
        format!("max_over_time(flagger_canary_weight{{workload=\"{TARGET}\",namespace=\"{ns}\"}}[10m]) > 0"),
    ]
}

#[tokio::test]
async fn every_panel_returns_data_after_a_promotion_and_a_rollback() {
    let f = Fixture::new("dashboards").await;
    let mut counters = mesh_telemetry(&f.ns, TARGET, &format!("{TARGET}-canary"));
    counters.extend(mesh_telemetry(
        &f.ns,
        &format!("{TARGET}-primary"),
        &format!("{TARGET}-primary"),
    ));
    let (_proxies, proxies_address) = KnownSeries::serve(counters);
    let prometheus = support::prometheus(&[f.controller.listen.clone(), proxies_address]);
    let hooks = Receiver::start();
    two_rollouts(&f, &hooks.url("/smoke")).await;
    // The last outcome scraped, and two more scrapes for every rate.
    let last = format!("flagger_canary_failures_total{{namespace=\"{}\"}}", f.ns);
    support::eventually(LIMIT, || async {
        evaluate(&prometheus, &last).await.is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let (mut evaluated, mut failures) = (0, Vec::new());
    for name in DASHBOARDS {
        let board = dashboard(name);
        failures.extend(check_variables(&prometheus, &board, &f.ns, name).await);
        let (count, failed) = check_panels(&prometheus, &board, &f.ns, name).await;
        evaluated += count;
        failures.extend(failed);
    }
    for query in flagger_queries(&f.ns) {
        if let Err(why) = evaluate(&prometheus, &query).await {
            failures.push(format!("Flagger's series: {query}: {why}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {evaluated} panel queries (and Flagger's series) without data:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("dashboards: {evaluated} panel queries, each with data");
}
