//! The top of a spec: the target, its Service port, the progress deadline, the router and
//! what that router can express.

use std::time::Duration;

use crate::api::{CanarySpec, RouterKind};

use super::{Findings, Options, Target, TargetKind};

/// The top of a spec, read.
pub(super) struct Top {
    pub target: Option<Target>,
    pub router: Option<RouterKind>,
    pub progress_deadline: Duration,
}

/// Reads the top of `spec`; a router is checked against what the spec asks of it.
pub(super) fn top(spec: &CanarySpec, options: Options, findings: &mut Findings) -> Top {
    let target = target(spec, findings);
    let progress_deadline = progress_deadline(spec, findings);
    let router = router(spec, options, findings);
    if let Some(router) = router.filter(|_| spec.standalone.is_none()) {
        check_router(spec, router, findings);
    }
    Top {
        target,
        router,
        progress_deadline,
    }
}

/// Default progress deadline, as Flagger documents it.
const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

fn target(spec: &CanarySpec, findings: &mut Findings) -> Option<Target> {
    let kind = target_kind(spec);
    // A Knative Service has its own network endpoints: Flagger's Knative canaries leave
    // `spec.service` out, and no Service is generated for them.
    let port = spec.service.port;
    if kind != Some(TargetKind::KnativeService) && !(1..=65535).contains(&port) {
        let problem = match port {
            0 => "required: the port the generated Services expose".into(),
            _ => format!("port {port} is not between 1 and 65535"),
        };
        findings.error("spec.service.port", problem);
    }
    let name = spec.target_ref.name.trim();
    if name.is_empty() {
        findings.error(
            "spec.targetRef.name",
            "targetRef.name must name the Deployment, DaemonSet or Knative Service to roll out",
        );
    }
    let Some(kind) = kind else {
        let other = spec.target_ref.kind.as_deref().unwrap_or_default();
        let version = spec.target_ref.api_version.as_deref().unwrap_or_default();
        findings.error(
            "spec.targetRef.kind",
            format!("kind {other:?} ({version}) cannot be rolled out; use Deployment, DaemonSet, or Service with apiVersion serving.knative.dev/v1"),
        );
        return None;
    };
    let why = match kind {
        TargetKind::DaemonSet => "a DaemonSet runs one pod per node and cannot be autoscaled",
        TargetKind::KnativeService => "Knative scales its revisions itself",
        TargetKind::Deployment => "",
    };
    if !why.is_empty() && spec.autoscaler_ref.is_some() {
        findings.error("spec.autoscalerRef", format!("{why}; remove autoscalerRef"));
    }
    (!name.is_empty()).then(|| Target {
        kind,
        name: spec.target_ref.name.clone(),
    })
}

/// The kind `targetRef` names, if it is one Aviary rolls out (Deployment when unset).
pub fn target_kind(spec: &CanarySpec) -> Option<TargetKind> {
    let knative = |version: &str| version.starts_with(KNATIVE_SERVING);
    match spec.target_ref.kind.as_deref() {
        None | Some("Deployment") => Some(TargetKind::Deployment),
        Some("DaemonSet") => Some(TargetKind::DaemonSet),
        Some("Service") if spec.target_ref.api_version.as_deref().is_some_and(knative) => {
            Some(TargetKind::KnativeService)
        }
        Some(_) => None,
    }
}

/// The API group of Knative Services, as `targetRef.apiVersion` begins.
const KNATIVE_SERVING: &str = "serving.knative.dev/";

fn progress_deadline(spec: &CanarySpec, findings: &mut Findings) -> Duration {
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
fn router(spec: &CanarySpec, options: Options, findings: &mut Findings) -> Option<RouterKind> {
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

/// What the canary's router can express: a field it cannot honour is refused, not ignored.
fn check_router(spec: &CanarySpec, router: RouterKind, findings: &mut Findings) {
    let knative_target = target_kind(spec) == Some(TargetKind::KnativeService);
    if knative_target != (router == RouterKind::Knative) {
        let (path, problem) = match knative_target {
            true => ("spec.provider", format!("a Knative Service is routed by its own traffic block: set provider knative, not {router}")),
            false => ("spec.targetRef.kind", "provider knative routes a Knative Service: targetRef needs kind Service and apiVersion serving.knative.dev/v1".to_string()),
        };
        findings.error(path, problem);
    }
    if router.needs_parent_refs() && spec.service.gateway_refs.as_ref().is_none_or(Vec::is_empty) {
        findings.error(
            "spec.service.gatewayRefs",
            format!("provider {router} needs gatewayRefs: the Gateway (or, for mesh traffic, the Service) the HTTPRoute attaches to"),
        );
    }
    for (index, parent) in spec.service.gateway_refs.iter().flatten().enumerate() {
        if parent.name.is_empty() {
            findings.error(
                &format!("spec.service.gatewayRefs[{index}].name"),
                "each gatewayRef needs a name",
            );
        }
    }
    super::honoured::check_service_fields(&spec.service, router, findings);
    super::matches::check_service_matches(
        spec.service.r#match.as_deref().unwrap_or_default(),
        findings,
    );
    let Some(analysis) = &spec.analysis else {
        return;
    };
    let weighted = analysis.iterations.unwrap_or(0) == 0 && analysis.r#match.is_empty();
    if weighted && !spec.skip_analysis && !router.can_split() {
        findings.error(
            "spec.analysis.iterations",
            format!("provider {router} cannot split traffic by weight: set iterations for a blue/green rollout"),
        );
    }
    if analysis.mirror && !router.can_mirror() {
        findings.error(
            "spec.analysis.mirror",
            format!("provider {router} cannot mirror traffic; use istio or gatewayapi:v1"),
        );
    }
    if !analysis.r#match.is_empty() && !router.can_match() {
        findings.error(
            "spec.analysis.match",
            format!("provider {router} cannot route by header or cookie; use istio or gatewayapi:v1 for A/B testing"),
        );
    }
    if analysis.require_mtls && !router.can_confirm_mtls() {
        findings.error(
            "spec.analysis.requireMTLS",
            format!("provider {router} gives no way to confirm mutual TLS; requireMTLS is checked for istio, linkerd (smi) and gatewayapi"),
        );
    }
    if analysis.session_affinity.is_some() && !router.can_pin_sessions() {
        findings.error(
            "spec.analysis.sessionAffinity",
            format!(
                "provider {router} cannot keep sessions on the canary; use istio or gatewayapi:v1"
            ),
        );
    }
}
