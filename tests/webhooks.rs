//! Webhooks and the loadtester on the real control plane: every webhook type's effect on the
//! phase, token-protected gates recorded in Events, a rollback switch, and signed calls that
//! verify with the shared secret and fail with another; the loadtester refuses unsigned,
//! replayed and misdirected loads.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use aviary::api::CanaryPhase;
use support::fixture::Fixture;
use support::receiver::Receiver;
use support::telemetry::Health;
use support::{eventually, kubeconfig, spawn_listening, STARTUP_LIMIT};

const LIMIT: Duration = Duration::from_secs(60);
const TYPES: [&str; 8] = [
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
];

fn analysis(webhooks: Value, step: i32, max: i32) -> Value {
    json!({
        "interval": "1s",
        "threshold": 2,
        "stepWeight": step,
        "maxWeight": max,
        "metrics": [
            { "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } }
        ],
        "webhooks": webhooks
    })
}

async fn message_of(f: &Fixture, name: &str) -> String {
    f.condition(name, "Promoted")
        .await
        .map(|c| c.2)
        .unwrap_or_default()
}

/// Like `eventually`, but a failure shows the canary, its events and the controller's log.
async fn until<Fut: std::future::Future<Output = bool>>(
    f: &Fixture,
    name: &str,
    what: &str,
    mut check: impl FnMut() -> Fut,
) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{what}: not within {LIMIT:?}; status {:#?}\nevents {:#?}\n{}",
                f.status(name).await,
                f.event_reasons().await,
                f.controller.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn events_with(f: &Fixture, reason: &str) -> Vec<String> {
    f.event_reasons()
        .await
        .into_iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, note)| note)
        .collect()
}

#[tokio::test]
async fn each_webhook_type_moves_the_phase_as_the_reference_says() {
    let f = Fixture::new("hooks").await;
    let r = Receiver::start();
    f.telemetry.set(&f.ns, "podinfo", Health::GOOD);
    f.create_target("podinfo", "podinfo:1").await;
    let hooks: Vec<Value> = TYPES
        .iter()
        .map(|t| json!({ "name": t, "type": t, "url": r.url(&format!("/{t}")), "metadata": { "hook": t } }))
        .collect();
    // A rollback hook that answers 2xx rolls back: closed until the test opens it.
    r.answer("/rollback", 403, "no rollback");
    r.answer("/confirm-rollout", 403, "release freeze");
    f.create_canary(
        "podinfo",
        "podinfo",
        analysis(json!(hooks), 20, 40),
        json!({}),
    )
    .await;
    f.wait_phase("podinfo", CanaryPhase::Initialized, LIMIT)
        .await;

    // confirm-rollout closed: Waiting, nothing scaled up.
    f.set_image("podinfo", "podinfo:2").await;
    f.wait_phase("podinfo", CanaryPhase::Waiting, LIMIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(f.status("podinfo").await.phase, CanaryPhase::Waiting);
    assert_eq!(
        f.replicas_of("podinfo").await,
        0,
        "no canary pods while waiting"
    );
    let call = r
        .calls("/confirm-rollout")
        .pop()
        .expect("confirm-rollout was called");
    let body = call.json();
    assert_eq!(body["name"], "podinfo");
    assert_eq!(body["namespace"], json!(f.ns));
    assert_eq!(body["metadata"]["hook"], "confirm-rollout");
    assert!(
        body["checksum"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    assert!(body["phase"].is_string(), "{body}");

    // Open it; confirm-traffic-increase closed holds the first weight without failing.
    r.answer("/confirm-traffic-increase", 403, "hold there");
    r.answer("/confirm-rollout", 200, "go");
    until(&f, "podinfo", "weight 20", || async {
        f.status("podinfo").await.canary_weight == 20
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = f.status("podinfo").await;
    assert_eq!(
        (status.phase, status.canary_weight, status.failed_checks),
        (CanaryPhase::Progressing, 20, 0)
    );
    assert!(
        !r.calls("/pre-rollout").is_empty(),
        "pre-rollout runs before traffic"
    );
    assert!(
        r.calls("/rollout").len() >= 2,
        "rollout hooks run every interval"
    );

    // confirm-promotion closed: WaitingPromotion at the last weight, analysis going on.
    r.answer("/confirm-promotion", 403, "not before the demo");
    r.answer("/confirm-traffic-increase", 200, "ok");
    let status = f
        .wait_phase("podinfo", CanaryPhase::WaitingPromotion, LIMIT)
        .await;
    assert_eq!(status.canary_weight, 40);
    assert!(message_of(&f, "podinfo")
        .await
        .contains("not before the demo"));
    r.answer("/confirm-promotion", 200, "ok");
    f.wait_phase("podinfo", CanaryPhase::Succeeded, LIMIT).await;
    assert_eq!(f.image_of("podinfo-primary").await, "podinfo:2");
    until(&f, "podinfo", "post-rollout called", || async {
        !r.calls("/post-rollout").is_empty()
    })
    .await;
    // Event hooks are posted on tasks of their own, in no fixed order with the post-rollout hook.
    r.calls_once("/event", LIMIT, |heard| {
        heard.iter().any(|c| {
            let body = c.json();
            body["metadata"]["eventType"] == "Normal"
                && body["metadata"]["eventMessage"]
                    .as_str()
                    .is_some_and(|m| m.contains("Promotion of"))
        })
    })
    .await;

    // An open rollback hook rolls back at once. The promotion gate is closed again first, so
    // the rollout cannot finish before the rollback hook opens.
    r.answer("/confirm-promotion", 403, "not before the demo");
    f.set_image("podinfo", "podinfo:3").await;
    until(&f, "podinfo", "traffic on the canary", || async {
        f.status("podinfo").await.canary_weight > 0
    })
    .await;
    r.answer("/rollback", 200, "stop");
    f.wait_phase("podinfo", CanaryPhase::Failed, LIMIT).await;
    assert!(message_of(&f, "podinfo")
        .await
        .contains("rollback webhook rollback asked for it"));
    r.answer("/rollback", 403, "no rollback");

    // A failing pre-rollout hook counts failed checks; its answer is in the Event.
    r.answer(
        "/pre-rollout",
        500,
        "smoke test failed: /healthz answered 503",
    );
    f.set_image("podinfo", "podinfo:4").await;
    until(&f, "podinfo", "pre-rollout failure", || async {
        events_with(&f, "RolledBack")
            .await
            .iter()
            .any(|n| n.contains("smoke test failed"))
    })
    .await;
    // The Event is recorded before the status is written.
    f.wait_phase("podinfo", CanaryPhase::Failed, LIMIT).await;
    assert_eq!(
        f.status("podinfo").await.canary_weight,
        0,
        "no traffic before pre-rollout passes"
    );

    // A failing rollout hook (the load test) fails the analysis.
    r.answer("/pre-rollout", 200, "ok");
    r.answer("/rollout", 502, "load test saw errors");
    f.set_image("podinfo", "podinfo:5").await;
    until(&f, "podinfo", "rollout failure", || async {
        events_with(&f, "RolledBack")
            .await
            .iter()
            .any(|n| n.contains("rollout webhook rollout failed: status 502: load test saw errors"))
    })
    .await;
}

/// A running `aviary loadtester` process.
struct Loadtester {
    base: String,
    _child: tokio::process::Child,
}

async fn start_loadtester(dir: &std::path::Path, tokens: &str, secret: &str) -> Loadtester {
    let token_file = dir.join("tokens");
    std::fs::write(&token_file, tokens).unwrap();
    let secret_file = dir.join("webhook-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_aviary"));
    command
        // The test upstreams listen on loopback; the API server does too, and stays refused.
        .args([
            "loadtester",
            "--listen",
            "127.0.0.1:0",
            "--record-events",
            "--allow-loopback",
        ])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--webhook-secret-file")
        .arg(&secret_file)
        .env("KUBECONFIG", kubeconfig().await)
        .stderr(std::process::Stdio::null());
    let (child, listen) = spawn_listening(command, STARTUP_LIMIT).await;
    let base = format!("http://{listen}");
    let http = aviary::http_client::client(Duration::from_secs(2));
    eventually(STARTUP_LIMIT, || async {
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    Loadtester {
        base,
        _child: child,
    }
}

async fn secret(f: &Fixture, name: &str, value: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": name },
        "stringData": { "secret": value }
    }))
    .unwrap();
    Api::<Secret>::namespaced(f.client.clone(), &f.ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

#[tokio::test]
async fn loadtester_gates_need_a_token_record_who_and_check_signatures() {
    let f = Fixture::new("gates").await;
    let upstream = Receiver::start();
    let dir = std::env::temp_dir().join(format!("aviary-gates-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = "3f9c2a7b1d4e8f60a5c3b2e1d0f9a8b7";
    let lt = start_loadtester(&dir, &format!("alice {token}\n"), "shared-secret-A").await;
    secret(&f, "signing", "shared-secret-A").await;
    secret(&f, "other-signing", "another-secret-B").await;
    f.telemetry.set(&f.ns, "podinfo", Health::GOOD);
    f.telemetry.set(&f.ns, "other", Health::GOOD);
    f.create_target("podinfo", "podinfo:1").await;
    f.create_target("other", "other:1").await;
    let signed = json!({ "name": "signing" });
    let hooks = json!([
        { "name": "load-test", "type": "rollout", "url": format!("{}/", lt.base), "secretRef": signed,
          "metadata": { "type": "load", "url": upstream.url("/load"), "rps": "20", "duration": "3s" } },
        { "name": "approval", "type": "confirm-promotion", "url": format!("{}/gate/check", lt.base), "secretRef": signed },
        { "name": "emergency", "type": "rollback", "url": format!("{}/rollback/check", lt.base), "secretRef": signed }
    ]);
    f.create_canary("podinfo", "podinfo", analysis(hooks, 50, 50), json!({}))
        .await;
    // Same load test, signed with a secret the loadtester does not share.
    let wrong = json!([
        { "name": "load-test", "type": "rollout", "url": format!("{}/", lt.base), "secretRef": { "name": "other-signing" },
          "metadata": { "type": "load", "url": upstream.url("/other"), "rps": "5", "duration": "2s" } }
    ]);
    f.create_canary("other", "other", analysis(wrong, 50, 50), json!({}))
        .await;
    f.wait_phase("podinfo", CanaryPhase::Initialized, LIMIT)
        .await;
    f.wait_phase("other", CanaryPhase::Initialized, LIMIT).await;

    f.set_image("podinfo", "podinfo:2").await;
    f.set_image("other", "other:2").await;
    f.wait_phase("podinfo", CanaryPhase::WaitingPromotion, LIMIT)
        .await;

    // Without a token, or with a wrong one: 401 and nothing changes.
    let http = aviary::http_client::client(Duration::from_secs(5));
    let gate = json!({ "name": "podinfo", "namespace": f.ns });
    let open = |bearer: Option<&str>| {
        let mut request = http.post(format!("{}/gate/open", lt.base)).json(&gate);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    assert_eq!(open(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        open(Some("not-the-token-at-all"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        f.status("podinfo").await.phase,
        CanaryPhase::WaitingPromotion
    );

    assert_eq!(open(Some(token)).await.unwrap().status().as_u16(), 200);
    f.wait_phase("podinfo", CanaryPhase::Succeeded, LIMIT).await;
    let opened = events_with(&f, "GateOpened").await;
    assert!(opened.iter().any(|n| n.contains("by alice")), "{opened:?}");
    // The load runs on the loadtester's own time: wait for it to reach the upstream.
    upstream
        .calls_once("/load", LIMIT, |calls| !calls.is_empty())
        .await;
    let metrics = http
        .get(format!("{}/metrics", lt.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("aviary_loadtester_loads_total{outcome=\"started\"}") >= 1.0,
        "{metrics}"
    );
    assert!(
        value("aviary_loadtester_loads_total{outcome=\"deduplicated\"}") >= 1.0,
        "a load still running is not started twice: {metrics}"
    );
    assert_eq!(
        value("aviary_loadtester_refused_total{reason=\"unauthorized\"}"),
        2.0,
        "{metrics}"
    );

    // The canary whose webhook is signed with another secret is refused, and fails.
    f.wait_phase("other", CanaryPhase::Failed, LIMIT).await;
    let rolled = events_with(&f, "RolledBack").await;
    assert!(
        rolled
            .iter()
            .any(|n| n.contains("status 401") && n.contains("signature does not match")),
        "{rolled:?}"
    );
    assert!(
        upstream.calls("/other").is_empty(),
        "no load for an unverified call"
    );

    // A gate or switch changed with alice's token; the loadtester's answer code.
    let switch = |path: &'static str| {
        let request = http.post(format!("{}/{path}", lt.base));
        let request = request.bearer_auth(token).json(&gate);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // The rollback switch, opened with the token, aborts the next rollout. The gate is closed
    // first (it stays open otherwise), so the rollout cannot finish before the switch opens.
    assert_eq!(switch("gate/close").await, 200);
    f.set_image("podinfo", "podinfo:3").await;
    until(&f, "podinfo", "traffic on the canary", || async {
        f.status("podinfo").await.canary_weight > 0
    })
    .await;
    assert_eq!(switch("rollback/open").await, 200);
    f.wait_phase("podinfo", CanaryPhase::Failed, LIMIT).await;
    assert!(message_of(&f, "podinfo")
        .await
        .contains("rollback webhook emergency asked for it"));
    assert!(events_with(&f, "RollbackOpened")
        .await
        .iter()
        .any(|n| n.contains("by alice")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A call to the loadtester signed with `secret`, as the controller would sign it.
fn signed_call(
    http: &reqwest::Client,
    base: &str,
    secret: &[u8],
    body: &Value,
) -> reqwest::RequestBuilder {
    let bytes = serde_json::to_vec(body).unwrap();
    let (timestamp, nonce) = (
        jiff::Timestamp::now().as_second(),
        aviary::signature::nonce(),
    );
    let signed = aviary::signature::Signed {
        method: "POST",
        path: "/",
        timestamp,
        nonce: &nonce,
        body: &bytes,
    };
    http.post(format!("{base}/"))
        .header(aviary::signature::TIMESTAMP_HEADER, timestamp.to_string())
        .header(aviary::signature::NONCE_HEADER, nonce.clone())
        .header(
            aviary::signature::SIGNATURE_HEADER,
            aviary::signature::sign(secret, &signed),
        )
        .header("content-type", "application/json")
        .body(bytes)
}

#[tokio::test]
async fn the_loadtester_is_not_an_open_relay() {
    let upstream = Receiver::start();
    let dir = std::env::temp_dir().join(format!("aviary-relay-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let lt = start_loadtester(
        &dir,
        "alice 3f9c2a7b1d4e8f60a5c3b2e1d0f9a8b7\n",
        "relay-secret",
    )
    .await;
    let http = aviary::http_client::client(Duration::from_secs(5));
    let load = |url: String| {
        json!({ "name": "podinfo", "namespace": "test",
                "metadata": { "type": "load", "url": url, "rps": "5", "duration": "1s" } })
    };
    let answer = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    };

    // Unauthenticated: refused before anything is read.
    let unsigned = http
        .post(format!("{}/", lt.base))
        .json(&load(upstream.url("/load")));
    let (status, text) = answer(unsigned.send().await.unwrap()).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("not signed"), "{text}");

    // Signed, but aimed at the metadata service or the API server: refused with the reason.
    let metadata = signed_call(
        &http,
        &lt.base,
        b"relay-secret",
        &load("http://169.254.169.254/latest/meta-data/".into()),
    );
    let (status, text) = answer(metadata.send().await.unwrap()).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("never targets"), "{text}");
    let config = kube::config::Kubeconfig::read_from(kubeconfig().await).unwrap();
    let server = config.clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .server
        .clone()
        .unwrap();
    let port = reqwest::Url::parse(&server).unwrap().port().unwrap();
    let api_url = format!("http://127.0.0.1:{port}/api");
    let api = signed_call(&http, &lt.base, b"relay-secret", &load(api_url));
    let (status, text) = answer(api.send().await.unwrap()).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("API server"), "{text}");

    // A good signed call is served once; the same bytes again are a replay.
    let good = signed_call(
        &http,
        &lt.base,
        b"relay-secret",
        &load(upstream.url("/load")),
    );
    let replay = good.try_clone().unwrap();
    let (status, text) = answer(good.send().await.unwrap()).await;
    assert_eq!(status, 202, "{text}");
    let (status, text) = answer(replay.send().await.unwrap()).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("replay"), "{text}");

    // /runs shows the run, and no header value.
    let runs = http.get(format!("{}/runs", lt.base)).send().await.unwrap();
    let runs = runs.text().await.unwrap();
    assert!(
        runs.contains("/load") && !runs.contains("relay-secret"),
        "{runs}"
    );
}
