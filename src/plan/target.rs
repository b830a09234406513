//! The top of a spec: the target, its Service port, the progress deadline and the router.

use std::time::Duration;

use crate::api::{CanarySpec, RouterKind};

use super::{Findings, Options, Target, TargetKind};

/// Default progress deadline, as Flagger documents it.
const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

pub(super) fn read(spec: &CanarySpec, findings: &mut Findings) -> Option<Target> {
    if !(1..=65535).contains(&spec.service.port) {
        findings.error(
            "spec.service.port",
            format!("port {} is not between 1 and 65535", spec.service.port),
        );
    }
    let name = spec.target_ref.name.trim();
    if name.is_empty() {
        findings.error(
            "spec.targetRef.name",
            "targetRef.name must name the Deployment or DaemonSet to roll out",
        );
    }
    let kind = match spec.target_ref.kind.as_deref() {
        None | Some("Deployment") => TargetKind::Deployment,
        Some("DaemonSet") => TargetKind::DaemonSet,
        Some(other) => {
            findings.error(
                "spec.targetRef.kind",
                format!("kind {other:?} cannot be rolled out; use Deployment or DaemonSet"),
            );
            return None;
        }
    };
    (!name.is_empty()).then(|| Target {
        kind,
        name: spec.target_ref.name.clone(),
    })
}

pub(super) fn progress_deadline(spec: &CanarySpec, findings: &mut Findings) -> Duration {
    match spec.progress_deadline_seconds {
        None => DEFAULT_PROGRESS_DEADLINE,
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds as u64),
        Some(seconds) => {
            findings.error(
                "spec.progressDeadlineSeconds",
                format!("progressDeadlineSeconds {seconds} must be positive"),
            );
            DEFAULT_PROGRESS_DEADLINE
        }
    }
}

/// The router `spec.provider` names, or the default one.
pub(super) fn router(
    spec: &CanarySpec,
    options: Options,
    findings: &mut Findings,
) -> Option<RouterKind> {
    let Some(name) = &spec.provider else {
        return Some(options.default_router.unwrap_or(RouterKind::Istio));
    };
    match RouterKind::parse(name) {
        Ok(router) => Some(router),
        Err(error) if spec.standalone.is_none() => {
            findings.error("spec.provider", error.to_string());
            None
        }
        // A standalone run steers its own proxy; the provider is not read there.
        Err(_) => Some(RouterKind::Istio),
    }
}
