//! Notifications on the real control plane: every AlertProvider type posts its own JSON to a
//! local receiver, filtered by severity, with the address and token from a Secret, through a
//! proxy, and from the controller's default provider; receivers that fail or hang do not hold
//! the rollout up.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};

use aviary::api::CanaryPhase;
use support::fixture::Fixture;
use support::receiver::{Call, Receiver};
use support::telemetry::Health;
use support::{admin, namespace};

const LIMIT: Duration = Duration::from_secs(60);

async fn provider(client: &kube::Client, ns: &str, name: &str, spec: Value) {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "aviary.dev",
        "v1beta1",
        "AlertProvider",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "aviary.dev/v1beta1",
        "kind": "AlertProvider",
        "metadata": { "name": name },
        "spec": spec
    }))
    .unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

fn alert(name: &str, severity: &str) -> Value {
    json!({ "name": name, "severity": severity, "providerRef": { "name": name } })
}

/// The reasons a receiver heard, read from each body by `reason_of`.
fn reasons(calls: &[Call], reason_of: impl Fn(&Value) -> String) -> Vec<String> {
    calls.iter().map(|c| reason_of(&c.json())).collect()
}

fn said(text: &str) -> String {
    // "podinfo.ns: RolledBack ..." → "RolledBack"
    text.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn every_notifier_posts_its_json_filtered_by_severity_without_slowing_the_rollout() {
    let client = admin().await;
    let r = Receiver::start();
    r.answer("/fail", 500, "receiver broken");
    let defaults = namespace(&client, "alert-defaults").await;
    provider(
        &client,
        &defaults,
        "default",
        json!({ "type": "generic", "address": r.url("/default") }),
    )
    .await;
    let default_ref = format!("{defaults}/default");
    let f = Fixture::with_args(
        "notify",
        &["--alert-provider", &default_ref, "--alert-severity", "warn"],
    )
    .await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "generic-endpoint" },
        "stringData": { "address": r.url("/generic"), "token": "s3cr3t-token" }
    }))
    .unwrap();
    Api::<Secret>::namespaced(f.client.clone(), &f.ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let ns = f.ns.clone();
    provider(&f.client, &ns, "slack", json!({ "type": "slack", "channel": "#deploys", "username": "aviary", "address": r.url("/slack") })).await;
    provider(
        &f.client,
        &ns,
        "msteams",
        json!({ "type": "msteams", "address": r.url("/msteams") }),
    )
    .await;
    provider(
        &f.client,
        &ns,
        "discord",
        json!({ "type": "discord", "address": r.url("/discord") }),
    )
    .await;
    provider(
        &f.client,
        &ns,
        "gchat",
        json!({ "type": "gchat", "address": r.url("/gchat") }),
    )
    .await;
    provider(
        &f.client,
        &ns,
        "generic",
        json!({ "type": "generic", "secretRef": { "name": "generic-endpoint" } }),
    )
    .await;
    provider(
        &f.client,
        &ns,
        "broken",
        json!({ "type": "generic", "address": r.url("/fail") }),
    )
    .await;
    provider(
        &f.client,
        &ns,
        "hanging",
        json!({ "type": "generic", "address": r.url("/hang") }),
    )
    .await;
    // The receiver doubles as a forward proxy: a post that reaches it for /proxied went through it.
    provider(&f.client, &ns, "proxied", json!({ "type": "generic", "address": "http://alerts.example.invalid/proxied", "proxy": r.url("") })).await;

    let analysis = |alerts: Value| {
        json!({
            "interval": "1s",
            "threshold": 2,
            "stepWeight": 20,
            "maxWeight": 60,
            "metrics": [{ "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } }],
            "alerts": alerts
        })
    };
    let alerts = json!([
        alert("slack", "info"),
        alert("msteams", "info"),
        alert("discord", "warn"),
        alert("gchat", "error"),
        alert("generic", "info"),
        alert("broken", "info"),
        alert("hanging", "info"),
        alert("proxied", "info")
    ]);
    for name in ["podinfo", "plain"] {
        f.telemetry.set(&f.ns, name, Health::GOOD);
        f.create_target(name, &format!("{name}:1")).await;
    }
    f.create_canary("podinfo", "podinfo", analysis(alerts), json!({}))
        .await;
    f.create_canary("plain", "plain", analysis(json!([])), json!({}))
        .await;
    f.wait_phase("podinfo", CanaryPhase::Initialized, LIMIT)
        .await;
    f.wait_phase("plain", CanaryPhase::Initialized, LIMIT).await;

    for name in ["podinfo", "plain"] {
        f.telemetry.set(&f.ns, name, Health::FAILING);
    }
    let started = Instant::now();
    f.set_image("podinfo", "podinfo:2").await;
    f.set_image("plain", "plain:2").await;
    f.wait_phase("podinfo", CanaryPhase::Failed, LIMIT).await;
    let took = started.elapsed();
    // Two failed 1s checks: serialised behind the hanging receiver, the ~6 events would have
    // taken 30s more (5s each); the bound leaves room for a loaded machine.
    assert!(took < Duration::from_secs(30), "the rollout took {took:?}");
    r.calls_once("/hang", LIMIT, |calls| !calls.is_empty())
        .await;

    // Each receiver is waited for on its own: the posts run concurrently.
    let rolled_back_in_text =
        |c: &Call| said(c.json()["text"].as_str().unwrap_or("")) == "RolledBack";

    // Slack (info): everything, attachments coloured by severity.
    let slack = r
        .calls_once("/slack", LIMIT, |calls| {
            let heard = reasons(calls, |b| said(b["text"].as_str().unwrap_or("")));
            ["Initialized", "NewRevision", "CheckFailed", "RolledBack"]
                .iter()
                .all(|reason| heard.iter().any(|h| h == reason))
        })
        .await;
    let rolled = slack
        .iter()
        .find(|c| rolled_back_in_text(c))
        .unwrap()
        .json();
    assert_eq!(rolled["channel"], "#deploys");
    assert_eq!(rolled["username"], "aviary");
    assert_eq!(rolled["attachments"][0]["color"], "#a30200");
    let why = rolled["attachments"][0]["text"].as_str().unwrap();
    assert!(
        why.contains("request-success-rate"),
        "says why, with the metric: {why}"
    );

    // Teams (info): a MessageCard with facts.
    let teams = r
        .calls_once("/msteams", LIMIT, |calls| {
            calls.iter().any(|c| {
                c.json()["summary"]
                    .as_str()
                    .unwrap_or("")
                    .contains("RolledBack")
            })
        })
        .await
        .iter()
        .map(Call::json)
        .find(|b| b["summary"].as_str().unwrap_or("").contains("RolledBack"))
        .expect("teams heard the rollback");
    assert_eq!(teams["@type"], "MessageCard");
    assert!(
        teams["sections"][0]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "Failed checks"),
        "{teams}"
    );

    // Discord (warn): embeds; no info events.
    let discord_calls = r
        .calls_once("/discord", LIMIT, |calls| {
            let heard = reasons(calls, |b| said(b["content"].as_str().unwrap_or("")));
            heard.iter().any(|h| h == "RolledBack") && heard.iter().any(|h| h == "CheckFailed")
        })
        .await;
    let discord = reasons(&discord_calls, |b| {
        said(b["content"].as_str().unwrap_or(""))
    });
    assert!(
        !discord
            .iter()
            .any(|h| h == "NewRevision" || h == "Initialized"),
        "warn filters info: {discord:?}"
    );
    assert!(discord_calls[0].json()["embeds"][0]["description"].is_string());

    // Google Chat (error): only the rollback.
    let gchat_calls = r
        .calls_once("/gchat", LIMIT, |calls| {
            calls.iter().any(|c| {
                c.json()["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("RolledBack")
            })
        })
        .await;
    let gchat = reasons(&gchat_calls, |b| {
        b["text"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('*')
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .trim_end_matches('*')
            .to_string()
    });
    assert!(
        gchat.iter().all(|h| h == "RolledBack"),
        "error filters the rest: {gchat:?}"
    );

    // Generic (info), address and token from a Secret.
    let generic = r
        .calls_once("/generic", LIMIT, |calls| {
            calls.iter().any(|c| c.json()["reason"] == "RolledBack")
        })
        .await;
    assert!(
        generic
            .iter()
            .all(|c| c.headers.get("authorization").map(String::as_str)
                == Some("Bearer s3cr3t-token"))
    );
    let body = generic
        .iter()
        .map(Call::json)
        .find(|b| b["reason"] == "RolledBack")
        .expect("generic heard the rollback");
    assert_eq!(body["name"], "podinfo");
    assert_eq!(body["namespace"], json!(f.ns));
    assert_eq!(body["severity"], "error");
    assert_eq!(body["phase"], "Failed");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("request-success-rate"));

    // Through the proxy; the broken receiver was tried.
    r.calls_once("/proxied", LIMIT, |calls| !calls.is_empty())
        .await;
    r.calls_once("/fail", LIMIT, |calls| !calls.is_empty())
        .await;

    // The controller's default provider (warn) for the canary without alerts.
    f.wait_phase("plain", CanaryPhase::Failed, LIMIT).await;
    let defaults_heard: Vec<Value> = r
        .calls_once("/default", LIMIT, |calls| {
            calls.iter().any(|c| c.json()["reason"] == "RolledBack")
        })
        .await
        .iter()
        .map(Call::json)
        .collect();
    assert!(
        defaults_heard
            .iter()
            .all(|b| b["name"] == "plain" && b["severity"] != "info"),
        "{defaults_heard:?}"
    );
}
