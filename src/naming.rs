//! Every name Aviary makes up or writes on others' objects: the `-primary` and `-canary`
//! copies, its labels and annotations, its field manager and its finalizer. Routers, bootstrap,
//! templates and cleanup read them here, so the copies they expect are the copies made.

/// The server-side-apply field manager for every object Aviary writes.
pub const FIELD_MANAGER: &str = "aviary";
/// Finalizer put on Canaries with `revertOnDeletion`, and on those whose routing object is
/// cluster-scoped (Kuma), which no owner reference can remove. The name predates the second
/// use; it stays, so Canaries that carry it are still released.
pub const FINALIZER: &str = "aviary.dev/revert-on-deletion";
/// The label that marks objects Aviary made where no owner reference can (cluster-scoped).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "aviary";
/// Annotation on a cluster-scoped object: the `namespace/name` of the Canary it routes for.
pub const CANARY_ANNOTATION: &str = "aviary.dev/canary";
/// Label on objects a Canary owns where no owner reference can say so (a cluster-scoped route,
/// a Knative Service's primary-revision annotation): the Canary's uid.
pub const CANARY_UID_LABEL: &str = "aviary.dev/canary-uid";
/// Annotation on the primary Deployment: the revision its template was copied from.
pub const REVISION_ANNOTATION: &str = "aviary.dev/revision";
/// Annotation on a Canary that carries the latest operator request, as JSON.
pub const REQUEST_ANNOTATION: &str = "aviary.dev/request";
/// Label on every policy copy: the name of the policy it was made from.
pub const COPY_OF_LABEL: &str = "aviary.dev/copy-of";

/// Whether `name` is a DNS label (RFC 1123): what Kubernetes accepts as a Service's or a
/// namespace's name, and so safe inside a PromQL label matcher or an object name.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(inner)
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The copy that serves the stable revision: Deployment, Service, ConfigMap, Secret, policy,
/// and the value of the primary pods' selector label.
pub fn primary(name: &str) -> String {
    format!("{name}-primary")
}

/// The Service in front of the target's (the canary's) pods.
pub fn canary(name: &str) -> String {
    format!("{name}-canary")
}

#[cfg(test)]
mod tests {
    #[test]
    fn copies_are_suffixed() {
        assert_eq!(super::primary("podinfo"), "podinfo-primary");
        assert_eq!(super::canary("podinfo"), "podinfo-canary");
    }
}
