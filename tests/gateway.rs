//! The embedded gateway over real loopback sockets: splits, A/B matches, mirroring, telemetry, and
//! route changes under load without dropping a request.

use std::collections::BTreeMap;
use std::time::Duration;

use aviary::engine::Routes;
use aviary::gateway::{serve_admin, GatewayHandle};
use aviary::plan::{Condition, RouteMatch};
use aviary::sample_app::{Behaviour, SampleApp};

async fn setup(latency: Duration) -> (SampleApp, SampleApp, GatewayHandle, reqwest::Client) {
    let primary = SampleApp::start(
        "127.0.0.1:0",
        Behaviour {
            latency,
            ..Behaviour::healthy("v1")
        },
    )
    .await
    .unwrap();
    let canary = SampleApp::start(
        "127.0.0.1:0",
        Behaviour {
            latency,
            ..Behaviour::healthy("v2")
        },
    )
    .await
    .unwrap();
    let gateway = GatewayHandle::start("127.0.0.1:0", primary.address, canary.address)
        .await
        .unwrap();
    (
        primary,
        canary,
        gateway,
        aviary::http_client::client(Duration::from_secs(10)),
    )
}

async fn version(
    client: &reqwest::Client,
    gateway: &GatewayHandle,
    headers: &[(&str, &str)],
) -> String {
    let mut request = client.get(format!("http://{}/", gateway.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
    body["version"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn weights_split_traffic_and_telemetry_counts_it() {
    let (_p, _c, gateway, client) = setup(Duration::ZERO).await;
    gateway.set_routes(Routes::weighted(30), &[]).unwrap();
    let mut canary = 0;
    for _ in 0..400 {
        if version(&client, &gateway, &[]).await == "v2" {
            canary += 1;
        }
    }
    // 30% of 400 is 120; six standard deviations is about 55.
    assert!((65..=175).contains(&canary), "canary got {canary} of 400");
    let admin = serve_admin(gateway.clone(), "127.0.0.1:0").await.unwrap();
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(
            "aviary_gateway_requests_total{{upstream=\"canary\",code_class=\"2xx\"}} {canary}"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn header_and_cookie_matches_reach_the_canary() {
    let (_p, _c, gateway, client) = setup(Duration::ZERO).await;
    let matches = vec![
        RouteMatch {
            headers: BTreeMap::from([("x-canary".into(), Condition::Exact("insider".into()))]),
            ..Default::default()
        },
        RouteMatch {
            headers: BTreeMap::from([(
                "cookie".into(),
                Condition::Regex("^(.*?;)?(canary=always)(;.*)?$".into()),
            )]),
            ..Default::default()
        },
    ];
    gateway
        .set_routes(
            Routes {
                match_to_canary: true,
                ..Routes::primary_only()
            },
            &matches,
        )
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            version(&client, &gateway, &[("x-canary", "insider")]).await,
            "v2"
        );
        assert_eq!(
            version(
                &client,
                &gateway,
                &[("cookie", "canary=always; theme=dark")]
            )
            .await,
            "v2"
        );
        assert_eq!(
            version(&client, &gateway, &[("x-canary", "outsider")]).await,
            "v1"
        );
        assert_eq!(version(&client, &gateway, &[]).await, "v1");
    }
}

#[tokio::test]
async fn mirrored_requests_reach_the_canary_but_answers_come_from_the_primary() {
    let (_p, _c, gateway, client) = setup(Duration::ZERO).await;
    gateway
        .set_routes(
            Routes {
                mirror_percent: Some(100),
                ..Routes::primary_only()
            },
            &[],
        )
        .unwrap();
    for _ in 0..50 {
        assert_eq!(version(&client, &gateway, &[]).await, "v1");
    }
    // Mirrored copies are sent on tasks of their own: wait for the count to reach 50.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut text = gateway.telemetry().render();
    while !text.contains("aviary_gateway_mirrored_requests_total 50")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = gateway.telemetry().render();
    }
    assert!(
        text.contains("aviary_gateway_mirrored_requests_total 50"),
        "{text}"
    );
}

#[tokio::test]
async fn changing_weights_under_load_drops_no_request() {
    let (_p, _c, gateway, client) = setup(Duration::from_millis(40)).await;
    let mut requests = tokio::task::JoinSet::new();
    let weights = [0, 100, 50, 0, 100, 10];
    for index in 0..300 {
        let (client, address) = (client.clone(), gateway.address);
        requests.spawn(async move {
            client
                .get(format!("http://{address}/"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        // Flip the routes every few requests, while earlier ones are still in flight (40 ms each).
        if index % 7 == 0 {
            gateway
                .set_routes(Routes::weighted(weights[index % weights.len()]), &[])
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut answered = 0;
    while let Some(result) = requests.join_next().await {
        assert_eq!(result.unwrap().unwrap(), 200);
        answered += 1;
    }
    assert_eq!(answered, 300);
}
