//! The `MetricTemplate` kind: a reusable query against a metrics provider.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aviary.dev",
    version = "v1beta1",
    kind = "MetricTemplate",
    namespaced,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider.type"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplateSpec {
    pub provider: MetricTemplateProvider,
    /// The query; `{{ name }}`, `{{ namespace }}`, `{{ target }}`, `{{ service }}`, `{{ interval }}`
    /// and `{{ variables.x }}` are filled in before it runs. It must return one number.
    pub query: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplateProvider {
    /// Provider type, for example `prometheus`.
    #[schemars(schema_with = "super::schema::metric_provider_kind")]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<k8s_openapi::api::core::v1::LocalObjectReference>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    /// Headers sent with every query (for example a tenant header of a multi-tenant Prometheus).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    /// A cloud provider's region (Flagger's CloudWatch); no Prometheus reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}
