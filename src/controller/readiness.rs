//! Whether a Deployment or DaemonSet serves: its controller has seen the latest spec and enough
//! replicas are available (the ready thresholds are percentages, default 100).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};

/// Ready when the rollout of the current generation is done and at least `threshold` percent of
/// the desired replicas are available. A Deployment scaled to zero is not ready.
pub fn is_ready(deployment: &Deployment, threshold_percent: i32) -> bool {
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    if desired <= 0 {
        return false;
    }
    let Some(status) = &deployment.status else {
        return false;
    };
    let generation = deployment.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return false;
    }
    if status.updated_replicas.unwrap_or(0) < desired {
        return false;
    }
    let available = status.available_replicas.unwrap_or(0);
    i64::from(available) * 100 >= i64::from(desired) * i64::from(threshold_percent.clamp(0, 100))
}

/// Ready when the current generation is rolled out to every node it is scheduled on and at
/// least `threshold` percent of those pods are available. One scheduled nowhere is not ready.
pub fn daemon_set_ready(daemon_set: &DaemonSet, threshold_percent: i32) -> bool {
    let Some(status) = &daemon_set.status else {
        return false;
    };
    let generation = daemon_set.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(0) < generation {
        return false;
    }
    let desired = status.desired_number_scheduled;
    if desired <= 0 || status.updated_number_scheduled.unwrap_or(0) < desired {
        return false;
    }
    let available = status.number_available.unwrap_or(0);
    i64::from(available) * 100 >= i64::from(desired) * i64::from(threshold_percent.clamp(0, 100))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn deployment(
        replicas: i32,
        generation: i64,
        observed: i64,
        updated: i32,
        available: i32,
    ) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ..Default::default()
            }),
            ..Default::default()
        };
        d.metadata.generation = Some(generation);
        d
    }

    #[test]
    fn readiness_follows_generation_and_threshold() {
        assert!(is_ready(&deployment(3, 2, 2, 3, 3), 100));
        assert!(!is_ready(&deployment(3, 2, 1, 3, 3), 100), "old generation");
        assert!(!is_ready(&deployment(3, 2, 2, 3, 2), 100));
        assert!(is_ready(&deployment(3, 2, 2, 3, 2), 50));
        assert!(!is_ready(&deployment(0, 2, 2, 0, 0), 100), "scaled to zero");
    }

    #[test]
    fn a_daemon_set_is_ready_once_every_node_runs_the_current_generation() {
        use k8s_openapi::api::apps::v1::DaemonSetStatus;
        let daemon_set = |observed, desired, updated, available| {
            let mut d = DaemonSet {
                status: Some(DaemonSetStatus {
                    observed_generation: Some(observed),
                    desired_number_scheduled: desired,
                    updated_number_scheduled: Some(updated),
                    number_available: Some(available),
                    ..Default::default()
                }),
                ..Default::default()
            };
            d.metadata.generation = Some(2);
            d
        };
        assert!(daemon_set_ready(&daemon_set(2, 3, 3, 3), 100));
        assert!(
            !daemon_set_ready(&daemon_set(1, 3, 3, 3), 100),
            "old generation"
        );
        assert!(
            !daemon_set_ready(&daemon_set(2, 3, 2, 3), 100),
            "one node on the old one"
        );
        assert!(!daemon_set_ready(&daemon_set(2, 3, 3, 2), 100));
        assert!(daemon_set_ready(&daemon_set(2, 3, 3, 2), 50));
        assert!(
            !daemon_set_ready(&daemon_set(2, 0, 0, 0), 0),
            "scheduled nowhere"
        );
    }
}
