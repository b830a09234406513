//! Which `spec.service` routing fields each router writes. A field the canary's router would
//! silently drop changes what traffic does, so it is refused with its path; a field that only
//! names where an object attaches (and so has no meaning without that object) is a warning.

use crate::api::{CanaryService, RouterKind};

use super::Findings;

/// A routing field of `spec.service`, whether it is set, and the routers that write it.
struct Field {
    name: &'static str,
    set: bool,
    honoured_by: &'static [RouterKind],
}

const ISTIO: &[RouterKind] = &[RouterKind::Istio];
const GATEWAY: &[RouterKind] = &[RouterKind::GatewayApi];
const ISTIO_AND_GATEWAY: &[RouterKind] = &[RouterKind::Istio, RouterKind::GatewayApi];

fn refused_unless_honoured(service: &CanaryService) -> [Field; 10] {
    let field = |name, set, honoured_by| Field {
        name,
        set,
        honoured_by,
    };
    [
        field(
            "match",
            service.r#match.as_ref().is_some_and(|m| !m.is_empty()),
            ISTIO,
        ),
        field("rewrite", service.rewrite.is_some(), ISTIO),
        field("corsPolicy", service.cors_policy.is_some(), ISTIO),
        field("trafficPolicy", service.traffic_policy.is_some(), ISTIO),
        field("retries", service.retries.is_some(), ISTIO),
        field("delegation", service.delegation, ISTIO),
        field("headers", service.headers.is_some(), ISTIO_AND_GATEWAY),
        field("timeout", service.timeout.is_some(), ISTIO_AND_GATEWAY),
        field("backendTimeout", service.backend_timeout.is_some(), GATEWAY),
        field("mirror", !service.mirror.is_empty(), GATEWAY),
    ]
}

/// Refuses what `router` would drop, and warns about attachments it has no object for.
pub(super) fn check_service_fields(
    service: &CanaryService,
    router: RouterKind,
    findings: &mut Findings,
) {
    for field in refused_unless_honoured(service) {
        if field.set && !field.honoured_by.contains(&router) {
            let writers: Vec<String> = field.honoured_by.iter().map(|r| r.to_string()).collect();
            findings.error(
                &format!("spec.service.{}", field.name),
                format!(
                    "provider {router} cannot honour {}; it is written by {} only",
                    field.name,
                    writers.join(" and ")
                ),
            );
        }
    }
    let attachments = [
        ("gateways", !service.gateways.is_empty(), ISTIO),
        (
            "gatewayRefs",
            service.gateway_refs.as_ref().is_some_and(|r| !r.is_empty()),
            GATEWAY,
        ),
        ("hosts", !service.hosts.is_empty(), ISTIO_AND_GATEWAY),
    ];
    for (name, set, honoured_by) in attachments {
        if set && !honoured_by.contains(&router) {
            findings.warning(
                &format!("spec.service.{name}"),
                format!("provider {router} writes no object that {name} attaches; it is ignored"),
            );
        }
    }
    if !service.backends.is_empty() || service.mesh_name.is_some() {
        findings.warning(
            "spec.service.meshName",
            "meshName and backends are App Mesh's; no provider here reads them",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_the_router_drops_is_refused_at_its_path() {
        let service = CanaryService {
            port: 80,
            traffic_policy: Some(Default::default()),
            gateway_refs: Some(vec![Default::default()]),
            ..Default::default()
        };
        let mut findings = Findings::default();
        check_service_fields(&service, RouterKind::GatewayApi, &mut findings);
        let errors: Vec<_> = findings.errors().collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "spec.service.trafficPolicy");
        let mut findings = Findings::default();
        check_service_fields(&service, RouterKind::Istio, &mut findings);
        assert_eq!(findings.errors().count(), 0);
        assert!(
            !findings.0.is_empty(),
            "gatewayRefs under istio is a warning"
        );
    }
}
