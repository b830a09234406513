//! CRD manifests generated from the Rust types, so the schema can never drift from the code.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{json, Value};

use crate::api::{AlertProvider, Canary, MetricTemplate};

/// Every CRD Aviary serves, as one multi-document YAML stream.
pub fn all_crds_yaml() -> Result<String, serde_norway::Error> {
    let crds = [Canary::crd(), MetricTemplate::crd(), AlertProvider::crd()];
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&bounded(crd))?);
    }
    Ok(out)
}

/// The CRD with every int32 held to int32's range: the API server stores 2147483648 in an
/// `int32` field unless the schema says otherwise, and such an object could not be decoded.
fn bounded(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut value = serde_json::to_value(&crd).expect("a CRD serialises");
    bound_int32(&mut value);
    serde_json::from_value(value).expect("bounds keep a CRD valid")
}

fn bound_int32(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            if fields.get("format") == Some(&json!("int32")) {
                fields.entry("minimum").or_insert(json!(i32::MIN));
                fields.entry("maximum").or_insert(json!(i32::MAX));
            }
            fields.values_mut().for_each(bound_int32);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_int32),
        _ => {}
    }
}
