//! `spec.autoscalerRef`: which autoscaler the primary gets a copy of. The kind decides how the
//! controller copies and pauses it, so a reference whose kind and API disagree, or that asks
//! for what only the other kind can do, is refused rather than ignored.

use crate::api::AutoscalerRef;

use super::Findings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoscalerKind {
    HorizontalPodAutoscaler,
    /// A KEDA ScaledObject (`keda.sh/v1alpha1`).
    ScaledObject,
}

/// Reads `autoscalerRef`; `None` when there is none (or it is refused, with findings).
pub(super) fn read(
    reference: Option<&AutoscalerRef>,
    findings: &mut Findings,
) -> Option<AutoscalerKind> {
    let reference = reference?;
    if reference.name.trim().is_empty() {
        findings.error(
            "spec.autoscalerRef.name",
            "autoscalerRef needs the name of the autoscaler",
        );
    }
    let Some(kind) = kind_of(reference) else {
        findings.error(
            "spec.autoscalerRef.kind",
            format!(
                "kind {:?} is not an autoscaler Aviary copies; use HorizontalPodAutoscaler or ScaledObject",
                reference.kind.as_deref().unwrap_or_default()
            ),
        );
        return None;
    };
    check_api_version(reference, kind, findings);
    if kind == AutoscalerKind::HorizontalPodAutoscaler && reference.primary_scaler_queries.is_some()
    {
        findings.error(
            "spec.autoscalerRef.primaryScalerQueries",
            "primaryScalerQueries rewrite a KEDA ScaledObject's triggers; set kind: ScaledObject (apiVersion keda.sh/v1alpha1)",
        );
    }
    Some(kind)
}

/// The kind `reference` names (HorizontalPodAutoscaler when it names none).
pub fn kind_of(reference: &AutoscalerRef) -> Option<AutoscalerKind> {
    match reference.kind.as_deref() {
        None | Some("HorizontalPodAutoscaler") => Some(AutoscalerKind::HorizontalPodAutoscaler),
        Some("ScaledObject") => Some(AutoscalerKind::ScaledObject),
        Some(_) => None,
    }
}

fn check_api_version(reference: &AutoscalerRef, kind: AutoscalerKind, findings: &mut Findings) {
    let Some(api_version) = reference.api_version.as_deref() else {
        return;
    };
    let (fits, expected) = match kind {
        AutoscalerKind::HorizontalPodAutoscaler => {
            (api_version.starts_with("autoscaling/"), "autoscaling/v2")
        }
        AutoscalerKind::ScaledObject => (api_version == "keda.sh/v1alpha1", "keda.sh/v1alpha1"),
    };
    if !fits {
        findings.error(
            "spec.autoscalerRef.apiVersion",
            format!("{api_version} does not serve {kind:?}; a {kind:?} is {expected}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(api_version: &str, kind: &str) -> AutoscalerRef {
        AutoscalerRef {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            name: "web".into(),
            ..Default::default()
        }
    }

    fn errors(reference: &AutoscalerRef) -> Vec<String> {
        let mut findings = Findings::default();
        read(Some(reference), &mut findings);
        findings
            .errors_joined()
            .split("; ")
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_kind_with_its_own_api_is_read() {
        let mut findings = Findings::default();
        let keda = reference("keda.sh/v1alpha1", "ScaledObject");
        assert_eq!(
            read(Some(&keda), &mut findings),
            Some(AutoscalerKind::ScaledObject)
        );
        let hpa = reference("autoscaling/v2", "HorizontalPodAutoscaler");
        assert_eq!(
            read(Some(&hpa), &mut findings),
            Some(AutoscalerKind::HorizontalPodAutoscaler)
        );
        assert!(!findings.has_errors());
    }

    #[test]
    fn a_kind_that_disagrees_with_its_api_or_its_fields_is_refused() {
        let wrong = errors(&reference("autoscaling/v2", "ScaledObject"));
        assert!(
            wrong[0].contains("spec.autoscalerRef.apiVersion"),
            "{wrong:?}"
        );
        let mut hpa = reference("autoscaling/v2", "HorizontalPodAutoscaler");
        hpa.primary_scaler_queries = Some([("rps".to_string(), "q".to_string())].into());
        let wrong = errors(&hpa);
        assert!(
            wrong[0].contains("spec.autoscalerRef.primaryScalerQueries"),
            "{wrong:?}"
        );
    }
}
