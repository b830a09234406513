//! Mesh security that survives a rollout, on the real control plane: policies that select the
//! target's pods get `-primary` copies that follow edits and go with the Canary; `requireMTLS`
//! refuses a namespace that is not under STRICT mTLS; the service's TLS mode reaches both
//! DestinationRules; and specs a router cannot serve are refused in the status.

mod support;

use std::time::Duration;

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use aviary::api::CanaryPhase;
use support::eventually;
use support::fixture::Fixture;
use support::telemetry::Health;

const LIMIT: Duration = Duration::from_secs(90);

fn object(api_version: &str, kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": { "name": name }, "spec": spec
    }))
    .unwrap()
}

fn quick() -> Value {
    json!({ "interval": "1s", "threshold": 2, "stepWeight": 50 })
}

#[tokio::test]
async fn an_authorization_policy_follows_the_primary_pods() {
    let f = Fixture::new("authz").await;
    let policies = f.dynamic("security.istio.io", "v1", "AuthorizationPolicy");
    let rules = |methods: Value| {
        json!([{
            "from": [{ "source": { "principals": ["cluster.local/ns/production/sa/api-gateway"] } }],
            "to": [{ "operation": { "methods": methods } }]
        }])
    };
    let original = object(
        "security.istio.io/v1",
        "AuthorizationPolicy",
        "order-service-allow",
        json!({
            "selector": { "matchLabels": { "app": "order-service" } },
            "action": "ALLOW",
            "rules": rules(json!(["GET", "POST"]))
        }),
    );
    policies
        .create(&PostParams::default(), &original)
        .await
        .unwrap();
    // Selects by a label the primary pods keep: applies to them already, so no copy.
    let team_wide = object(
        "security.istio.io/v1",
        "AuthorizationPolicy",
        "team-wide",
        json!({ "selector": { "matchLabels": { "team": "orders" } }, "action": "ALLOW", "rules": [{}] }),
    );
    policies
        .create(&PostParams::default(), &team_wide)
        .await
        .unwrap();
    f.telemetry.set(&f.ns, "order-service", Health::GOOD);
    f.create_target("order-service", "orders:1").await;
    f.create_canary("order-service", "order-service", quick(), json!({}))
        .await;
    f.wait_phase("order-service", CanaryPhase::Initialized, LIMIT)
        .await;

    let copy_name = "order-service-allow-primary";
    eventually(LIMIT, || async {
        policies.get_opt(copy_name).await.unwrap().is_some()
    })
    .await;
    let copy = policies.get(copy_name).await.unwrap();
    assert_eq!(
        copy.data["spec"]["selector"]["matchLabels"],
        json!({ "app": "order-service-primary" }),
        "the copy selects the primary pods"
    );
    assert_eq!(copy.data["spec"]["rules"], rules(json!(["GET", "POST"])));
    assert_eq!(copy.data["spec"]["action"], "ALLOW");
    let primary = f.deployments().get("order-service-primary").await.unwrap();
    let primary_labels = primary
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(primary_labels["app"], "order-service-primary");
    assert!(policies
        .get_opt("team-wide-primary")
        .await
        .unwrap()
        .is_none());

    // An edit of the original reaches the copy.
    policies
        .patch(
            "order-service-allow",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "rules": rules(json!(["GET"])) } })),
        )
        .await
        .unwrap();
    eventually(LIMIT, || async {
        policies.get(copy_name).await.unwrap().data["spec"]["rules"] == rules(json!(["GET"]))
    })
    .await;

    // And the copy goes with the Canary.
    f.canaries()
        .delete("order-service", &DeleteParams::default())
        .await
        .unwrap();
    eventually(LIMIT, || async {
        policies.get_opt(copy_name).await.unwrap().is_none()
    })
    .await;
    assert!(
        policies
            .get_opt("order-service-allow")
            .await
            .unwrap()
            .is_some(),
        "the original stays"
    );
}

#[tokio::test]
async fn linkerd_server_and_its_authorization_get_primary_copies() {
    let f = Fixture::with_args("linkerd-policy", &["--mesh-provider", "linkerd"]).await;
    let servers = f.dynamic("policy.linkerd.io", "v1beta3", "Server");
    let authorizations = f.dynamic("policy.linkerd.io", "v1alpha1", "AuthorizationPolicy");
    let server = object(
        "policy.linkerd.io/v1beta3",
        "Server",
        "orders-http",
        json!({ "podSelector": { "matchLabels": { "app": "orders" } }, "port": "http", "proxyProtocol": "HTTP/1" }),
    );
    servers
        .create(&PostParams::default(), &server)
        .await
        .unwrap();
    let authorization = object(
        "policy.linkerd.io/v1alpha1",
        "AuthorizationPolicy",
        "orders-from-gateway",
        json!({
            "targetRef": { "group": "policy.linkerd.io", "kind": "Server", "name": "orders-http" },
            "requiredAuthenticationRefs": [{ "name": "api-gateway", "kind": "ServiceAccount" }]
        }),
    );
    authorizations
        .create(&PostParams::default(), &authorization)
        .await
        .unwrap();
    f.telemetry.set(&f.ns, "orders", Health::GOOD);
    f.create_target("orders", "orders:1").await;
    f.create_canary("orders", "orders", quick(), json!({}))
        .await;
    f.wait_phase("orders", CanaryPhase::Initialized, LIMIT)
        .await;
    eventually(LIMIT, || async {
        authorizations
            .get_opt("orders-from-gateway-primary")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let server_copy = servers.get("orders-http-primary").await.unwrap();
    assert_eq!(
        server_copy.data["spec"]["podSelector"]["matchLabels"],
        json!({ "app": "orders-primary" })
    );
    let authorization_copy = authorizations
        .get("orders-from-gateway-primary")
        .await
        .unwrap();
    assert_eq!(
        authorization_copy.data["spec"]["targetRef"]["name"],
        "orders-http-primary"
    );
    assert_eq!(
        authorization_copy.data["spec"]["requiredAuthenticationRefs"],
        authorization.data["spec"]["requiredAuthenticationRefs"]
    );
}

#[tokio::test]
async fn require_mtls_refuses_permissive_and_accepts_strict() {
    let f = Fixture::new("mtls").await;
    let peer = f.dynamic("security.istio.io", "v1", "PeerAuthentication");
    peer.create(
        &PostParams::default(),
        &object(
            "security.istio.io/v1",
            "PeerAuthentication",
            "default",
            json!({ "mtls": { "mode": "PERMISSIVE" } }),
        ),
    )
    .await
    .unwrap();
    f.telemetry.set(&f.ns, "vault", Health::GOOD);
    f.create_target("vault", "vault:1").await;
    let mut analysis = quick();
    analysis["requireMTLS"] = json!(true);
    let service = json!({
        "port": 9898,
        "trafficPolicy": { "tls": { "mode": "ISTIO_MUTUAL" } }
    });
    f.create_canary("vault", "vault", analysis, json!({ "service": service }))
        .await;
    // Ready is there from the first status; wait for the preflight's reason in it.
    eventually(LIMIT, || async {
        let ready = f.condition("vault", "Ready").await;
        ready.is_some_and(|(_, reason, _)| reason.starts_with("MTLS"))
    })
    .await;
    let (status, reason, message) = f.condition("vault", "Ready").await.unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "MTLSNotStrict")
    );
    assert!(
        message.contains("PERMISSIVE") && message.contains("default"),
        "{message}"
    );
    assert!(
        f.deployments()
            .get_opt("vault-primary")
            .await
            .unwrap()
            .is_none(),
        "no rollout starts"
    );

    peer.patch(
        "default",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "mtls": { "mode": "STRICT" } } })),
    )
    .await
    .unwrap();
    let status = f.wait_phase("vault", CanaryPhase::Initialized, LIMIT).await;
    let mtls = status
        .conditions
        .iter()
        .find(|c| c.r#type == "MTLS")
        .expect("MTLS condition");
    assert_eq!(mtls.status, "True");
    assert_eq!(mtls.reason.as_deref(), Some("MTLSStrict"));
    let ready = status.conditions.iter().find(|c| c.r#type == "Ready");
    assert_eq!(
        ready.map(|c| c.status.as_str()),
        Some("True"),
        "no longer blocked: {status:#?}"
    );

    let rules = f.dynamic("networking.istio.io", "v1", "DestinationRule");
    for name in ["vault-primary", "vault-canary"] {
        let rule = rules.get(name).await.unwrap();
        assert_eq!(
            rule.data["spec"]["trafficPolicy"]["tls"]["mode"], "ISTIO_MUTUAL",
            "{name}"
        );
    }
}

#[tokio::test]
async fn specs_a_router_cannot_serve_are_refused_with_the_field() {
    let f = Fixture::new("router-input").await;
    for name in ["gw", "split", "cookie"] {
        f.create_target(name, "x:1").await;
    }
    f.create_canary("gw", "gw", quick(), json!({ "provider": "gatewayapi:v1" }))
        .await;
    let mut mirrored = quick();
    mirrored["iterations"] = json!(2);
    mirrored["mirror"] = json!(true);
    f.create_canary("split", "split", mirrored, json!({ "provider": "linkerd" }))
        .await;
    let mut sticky = quick();
    sticky["sessionAffinity"] = json!({ "cookieName": "flavor", "primaryCookieName": "flavor" });
    f.create_canary("cookie", "cookie", sticky, json!({})).await;
    for (name, field) in [
        ("gw", "spec.service.gatewayRefs"),
        ("split", "spec.analysis.mirror"),
        ("cookie", "spec.analysis.sessionAffinity.primaryCookieName"),
    ] {
        eventually(LIMIT, || async {
            let ready = f.condition(name, "Ready").await;
            ready.is_some_and(|(_, reason, _)| reason == "InvalidSpec")
        })
        .await;
        let (status, reason, message) = f.condition(name, "Ready").await.unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
        assert!(message.contains(field), "{name}: {message}");
        assert!(f
            .deployments()
            .get_opt(&format!("{name}-primary"))
            .await
            .unwrap()
            .is_none());
    }
}
