//! SIGKILL at each crash point of a promotion, a rollback and the switch back to the primary,
//! on the real control plane: a controller built with `--features failpoints` stops itself at
//! the point (src/failpoint.rs), the test kills it there, and a new controller finishes the
//! rollout from what was stored. Throughout, the routes never send traffic to a target scaled
//! to zero and the weight never jumps.

mod support;

#[cfg(not(feature = "failpoints"))]
#[test]
fn needs_the_failpoints_feature() {
    panic!(
        "tests/crashes.rs needs the crash points: cargo test --features failpoints --test crashes"
    );
}

#[cfg(feature = "failpoints")]
mod crashes {
    use std::time::Duration;

    use serde_json::{json, Value};

    use aviary::api::CanaryPhase;
    use aviary::failpoint::REACHED;

    use super::support::fixture::Fixture;
    use super::support::telemetry::{Health, ProxyTelemetry};
    use super::support::{eventually, ControllerProcess};

    const LIMIT: Duration = Duration::from_secs(120);
    const STEP: i64 = 20;

    fn analysis() -> Value {
        json!({
            "interval": "2s",
            "threshold": 2,
            "stepWeight": STEP,
            "maxWeight": 40,
            "metrics": [
                { "name": "request-success-rate", "interval": "10s", "thresholdRange": { "min": 99 } }
            ]
        })
    }

    /// What the routes and the target looked like, polled through the crash and the recovery.
    #[derive(Default)]
    struct Seen {
        weights: Vec<i64>,
        /// Moments the canary was routed traffic while its target asked for no replicas.
        unserved: Vec<String>,
    }

    async fn look(f: &Fixture, seen: &mut Seen) {
        let Some(weight) = f.routed_weight("web").await else {
            return;
        };
        let Ok(target) = f.deployments().get("web").await else {
            return;
        };
        let replicas = target.spec.and_then(|s| s.replicas).unwrap_or(1);
        if weight > 0 && replicas == 0 {
            seen.unserved
                .push(format!("weight {weight} with the target at 0 replicas"));
        }
        if seen.weights.last() != Some(&weight) {
            seen.weights.push(weight);
        }
    }

    /// Polls what `look` sees every 200 ms until `until` resolves.
    async fn watching<T>(
        f: &Fixture,
        seen: &mut Seen,
        until: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(until);
        loop {
            tokio::select! {
                value = &mut until => return value,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            look(f, seen).await;
        }
    }

    async fn reached(controller: &ControllerProcess, point: &str) {
        let line = format!("{REACHED} {point}");
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !controller.logs().contains(&line) {
            let logs = controller.logs();
            assert!(
                tokio::time::Instant::now() < deadline,
                "{point} never reached:\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Rolls `web` out from web:1 to web:2 under `health`, with the controller stopped and
    /// killed at `point`; a new controller must end it in `ending`.
    async fn crash_at(point: &str, health: Health, ending: CanaryPhase) {
        let prefix = point.replace([':', '#'], "-").to_lowercase();
        let mut f = Fixture::new(&prefix).await;
        f.telemetry.set(&f.ns, "web", health);
        f.create_target("web", "web:1").await;
        f.create_canary("web", "web", analysis(), json!({})).await;
        f.wait_phase("web", CanaryPhase::Initialized, LIMIT).await;
        f.controller.kill().await;
        let prometheus = &ProxyTelemetry::shared().1;
        let env = [("AVIARY_FAILPOINT", point)];
        f.controller = ControllerProcess::start_with_env(&f.ns, prometheus, &[], &env).await;
        f.set_image("web", "web:2").await;
        let mut seen = Seen::default();
        watching(&f, &mut seen, reached(&f.controller, point)).await;
        f.controller.kill().await;
        let at_crash = f.status("web").await;
        f.controller = ControllerProcess::start(&f.ns, prometheus).await;
        let ended = watching(&f, &mut seen, f.wait_phase("web", ending, LIMIT)).await;
        watching(
            &f,
            &mut seen,
            eventually(LIMIT, || async {
                f.routed_weight("web").await == Some(0) && f.replicas_of("web").await == 0
            }),
        )
        .await;
        look(&f, &mut seen).await;
        // The transition's stored intent is finished, then marked so.
        eventually(LIMIT, || async { !f.status("web").await.effects_pending }).await;
        println!(
            "| {point} | stored at the kill: {} {}% | ended: {} | weights {:?} | unserved {} |",
            at_crash.phase,
            at_crash.canary_weight,
            ended.phase,
            seen.weights,
            seen.unserved.len()
        );
        assert!(seen.unserved.is_empty(), "{:?}", seen.unserved);
        for pair in seen.weights.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            assert!(
                (to - from).abs() <= STEP || to == 0,
                "a weight jump {from} -> {to} in {:?}",
                seen.weights
            );
        }
    }

    #[tokio::test]
    async fn promotion_stored_primary_not_written() {
        crash_at(
            "status-stored:Promoting",
            Health::GOOD,
            CanaryPhase::Succeeded,
        )
        .await;
    }

    #[tokio::test]
    async fn promotion_primary_written_status_not_final() {
        crash_at(
            "primary-written:Promoting",
            Health::GOOD,
            CanaryPhase::Succeeded,
        )
        .await;
    }

    #[tokio::test]
    async fn weight_step_routes_written_status_not() {
        // The second route write of the analysis: the first step's weight.
        crash_at(
            "routes-written:Progressing#2",
            Health::GOOD,
            CanaryPhase::Succeeded,
        )
        .await;
    }

    #[tokio::test]
    async fn switch_to_primary_stored_routes_not_written() {
        crash_at(
            "status-stored:Finalising",
            Health::GOOD,
            CanaryPhase::Succeeded,
        )
        .await;
    }

    #[tokio::test]
    async fn switch_to_primary_routes_written() {
        crash_at(
            "routes-written:Finalising",
            Health::GOOD,
            CanaryPhase::Succeeded,
        )
        .await;
    }

    #[tokio::test]
    async fn finalise_target_scaled_status_not_written() {
        crash_at(
            "target-scaled:Succeeded",
            Health::GOOD,
            CanaryPhase::Succeeded,
        )
        .await;
    }

    #[tokio::test]
    async fn rollback_stored_routes_not_written() {
        crash_at("status-stored:Failed", Health::FAILING, CanaryPhase::Failed).await;
    }

    #[tokio::test]
    async fn rollback_routes_written_target_not_scaled() {
        crash_at(
            "routes-written:Failed",
            Health::FAILING,
            CanaryPhase::Failed,
        )
        .await;
    }

    #[tokio::test]
    async fn rollback_target_scaled_status_not_final() {
        crash_at("target-scaled:Failed", Health::FAILING, CanaryPhase::Failed).await;
    }
}
