//! CRD manifests generated from the Rust types, so the schema can never drift from the code.

use kube::CustomResourceExt;

use crate::api::{AlertProvider, Canary, MetricTemplate};

/// Every CRD Aviary serves, as one multi-document YAML stream.
pub fn all_crds_yaml() -> Result<String, serde_norway::Error> {
    let crds = [Canary::crd(), MetricTemplate::crd(), AlertProvider::crd()];
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd)?);
    }
    Ok(out)
}
