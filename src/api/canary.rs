//! The `Canary` kind: what to roll out, how traffic reaches it, and how each step is judged.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema;
use super::status::CanaryStatus;

/// A progressive rollout of one workload.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aviary.dev",
    version = "v1beta1",
    kind = "Canary",
    namespaced,
    status = "CanaryStatus",
    shortname = "canary",
    shortname = "canaries",
    category = "all",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"FailedChecks","type":"integer","jsonPath":".status.failedChecks","priority":1}"#,
    printcolumn = r#"{"name":"Interval","type":"string","jsonPath":".spec.analysis.interval","priority":1}"#,
    printcolumn = r#"{"name":"StepWeight","type":"integer","jsonPath":".spec.analysis.stepWeight","priority":1}"#,
    printcolumn = r#"{"name":"LastTransitionTime","type":"string","jsonPath":".status.lastTransitionTime"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanarySpec {
    /// The workload whose new revisions are rolled out (Deployment or DaemonSet).
    pub target_ref: TargetRef,
    /// The HPA that scales the target; a `-primary` copy is made for the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_ref: Option<AutoscalerRef>,
    /// Ingress object for ingress-based providers (kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_ref: Option<TargetRef>,
    /// Gloo upstream (kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ref: Option<TargetRef>,
    /// Mesh or ingress provider; overrides the controller's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Prometheus address; overrides the controller's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<String>,
    /// Seconds a rollout may make no progress before it is rolled back (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
    /// Promote after readiness only, with no analysis.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_analysis: bool,
    /// On deletion, restore the target and route traffic to it before the Canary goes away.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revert_on_deletion: bool,
    /// Stop acting on this canary; the current state is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// How the workload is exposed and routed.
    pub service: CanaryService,
    /// How each step is judged. Absent means skipAnalysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<CanaryAnalysis>,
    /// Aviary extension: upstreams for the standalone runner (`aviary run`), which has no cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standalone: Option<Standalone>,
}

impl CanarySpec {
    /// Default progress deadline in seconds, as Flagger documents it.
    pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

    pub fn progress_deadline(&self) -> std::time::Duration {
        let secs = self
            .progress_deadline_seconds
            .unwrap_or(Self::DEFAULT_PROGRESS_DEADLINE_SECONDS);
        std::time::Duration::from_secs(secs.max(0) as u64)
    }
}

/// A reference to another object in the Canary's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalerRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_queries: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_replicas: Option<ScalerReplicas>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalerReplicas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
}

/// The Services Aviary generates and the routing applied to them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryService {
    /// Name of the apex Service (default: the target's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int_or_string")]
    pub target_port: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub port_discovery: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::open_object_list")]
    pub r#match: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::open_object")]
    pub rewrite: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::open_object")]
    pub cors_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::open_object")]
    pub traffic_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::open_object_list")]
    pub gateway_refs: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delegation: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apex: Option<ServiceMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<ServiceMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<ServiceMetadata>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// Labels and annotations for a generated Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// How a rollout advances and how each step is judged.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryAnalysis {
    /// Time between steps, `^[0-9]+(m|s)$` (default 60s, minimum 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Failed checks before rollback (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub step_weights: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight_promotion: Option<i32>,
    /// Number of intervals for A/B testing and blue/green.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<i32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_ready_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_ready_threshold: Option<i32>,
    /// A/B conditions: requests matching any entry go to the canary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<RequestMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// Refuse to start a rollout unless the workload is under strict mTLS (Istio) or meshed
    /// (Linkerd): `-primary` pods must not escape the mesh's identity checks.
    #[serde(
        default,
        rename = "requireMTLS",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub require_mtls: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<CanaryMetric>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<CanaryWebhook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<CanaryAlert>,
    /// Aviary extension: promotion happens only inside one of these windows; outside them a
    /// finished analysis holds in WaitingPromotion at its current weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promotion_windows: Vec<PromotionWindow>,
}

/// A recurring window in which promotion may happen.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromotionWindow {
    /// When the window opens: a cron expression with 5 fields (`min hour dom month dow`) or
    /// 6 to 7 with seconds first (and a year last).
    pub schedule: String,
    /// How long it stays open, for example `2h` or `30m`.
    pub duration: String,
    /// IANA time zone the schedule is read in (default UTC), for example `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

impl CanarySpec {
    /// The analysis interval, also when there is no `analysis`: the one place its default is
    /// applied, for the engine, the controller and the runner alike.
    pub fn interval(&self) -> std::time::Duration {
        self.analysis
            .as_ref()
            .map(CanaryAnalysis::interval)
            .unwrap_or(CanaryAnalysis::DEFAULT_INTERVAL)
    }
}

impl CanaryAnalysis {
    pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
    pub const DEFAULT_THRESHOLD: i32 = 1;
    pub const DEFAULT_MAX_WEIGHT: i32 = 100;
    pub const DEFAULT_READY_THRESHOLD: i32 = 100;

    /// The analysis interval; an unreadable value falls back to the default (validation reports it).
    pub fn interval(&self) -> std::time::Duration {
        self.interval
            .as_deref()
            .and_then(|text| super::parse_duration(text).ok())
            .unwrap_or(Self::DEFAULT_INTERVAL)
    }

    pub fn threshold(&self) -> i32 {
        self.threshold.unwrap_or(Self::DEFAULT_THRESHOLD).max(1)
    }

    /// The highest canary weight: the last of `stepWeights` when given, else `maxWeight`.
    pub fn max_weight(&self) -> i32 {
        match self.step_weights.last() {
            Some(last) => *last,
            None => self.max_weight.unwrap_or(Self::DEFAULT_MAX_WEIGHT),
        }
    }
}

/// One A/B condition, a subset of Istio's HTTPMatchRequest.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_uri_case: Option<bool>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
}

/// Exactly one of exact, prefix, suffix or regex.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// A string condition once its one kind is known: every router reads this, never the fields, so
/// no two routers can pick different fields of the same condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matcher<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Suffix(&'a str),
    Regex(&'a str),
}

/// Why a string condition names no single kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("needs one of exact, prefix, suffix or regex")]
    Empty,
    #[error("sets {0}: exactly one of exact, prefix, suffix or regex may be set")]
    Several(String),
}

impl StringMatch {
    /// The one kind of condition this is; none, or more than one, is refused.
    pub fn matcher(&self) -> Result<Matcher<'_>, MatcherError> {
        let set: Vec<(&str, Matcher<'_>)> = [
            ("exact", self.exact.as_deref().map(Matcher::Exact)),
            ("prefix", self.prefix.as_deref().map(Matcher::Prefix)),
            ("suffix", self.suffix.as_deref().map(Matcher::Suffix)),
            ("regex", self.regex.as_deref().map(Matcher::Regex)),
        ]
        .into_iter()
        .filter_map(|(name, matcher)| matcher.map(|m| (name, m)))
        .collect();
        match set.as_slice() {
            [] => Err(MatcherError::Empty),
            [(_, only)] => Ok(*only),
            several => Err(MatcherError::Several(
                several
                    .iter()
                    .map(|(name, _)| *name)
                    .collect::<Vec<_>>()
                    .join(" and "),
            )),
        }
    }
}

impl RequestMatch {
    /// Every string condition with its field path below the match (`headers.x-user`, `uri`).
    pub fn conditions(&self) -> Vec<(String, &StringMatch)> {
        fn named<'m>(
            section: &str,
            map: &'m BTreeMap<String, StringMatch>,
        ) -> Vec<(String, &'m StringMatch)> {
            map.iter()
                .map(|(key, condition)| (format!("{section}.{key}"), condition))
                .collect()
        }
        let mut all = named("headers", &self.headers);
        all.extend(named("withoutHeaders", &self.without_headers));
        all.extend(named("queryParams", &self.query_params));
        for (field, condition) in [
            ("uri", &self.uri),
            ("method", &self.method),
            ("scheme", &self.scheme),
            ("authority", &self.authority),
        ] {
            all.extend(condition.as_ref().map(|c| (field.to_string(), c)));
        }
        all
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinity {
    pub cookie_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_cookie_name: Option<String>,
    /// Cookie lifetime in seconds (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i32>,
}

/// One metric check run at every analysis step.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryMetric {
    pub name: String,
    /// Window the query covers (default 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Deprecated upper bound, kept for old manifests; thresholdRange is preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    /// Deprecated inline query, kept for old manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<CrossNamespaceRef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_variables: BTreeMap<String, String>,
    /// Aviary extension: what a window without traffic means (default `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_no_data: Option<NoDataPolicy>,
    /// Aviary extension: fewer requests than this over the window is treated as no data
    /// (built-in checks, which know the request count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// Aviary extension: measure the primary the same way and judge the canary against it
    /// (`primary`), instead of against the fixed thresholdRange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<CompareWith>,
    /// How strict the comparison is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSpec>,
}

/// What a comparative metric is compared with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CompareWith {
    Primary,
}

/// The comparative judge's settings (Kayenta's vocabulary).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JudgeSpec {
    /// Probability of not failing a healthy canary over the whole analysis (default 0.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Percent the metric may rise before it counts (default 20; error counts default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_increase: Option<f64>,
    /// Percent the metric may fall before it counts (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_decrease: Option<f64>,
    /// Which change is a regression (default: decrease for request-success-rate, else increase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<crate::judge::Direction>,
}

/// What a metric window without data means.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoDataPolicy {
    /// A failed check, as Flagger counts it, with the reason "no traffic reached ...".
    #[default]
    Fail,
    /// Neither advance nor fail, until progressDeadlineSeconds; then fail with that reason.
    Hold,
    /// Count as a pass (for metrics that are legitimately empty, such as error counters).
    Pass,
}

impl CanaryMetric {
    pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

    pub fn interval(&self) -> std::time::Duration {
        self.interval
            .as_deref()
            .and_then(|text| super::parse_duration(text).ok())
            .unwrap_or(Self::DEFAULT_INTERVAL)
    }

    /// The accepted range; the deprecated `threshold` is read the way Flagger reads it for
    /// the built-ins: a minimum for success rate, a maximum for everything else.
    pub fn accepted_range(&self) -> ThresholdRange {
        if let Some(range) = &self.threshold_range {
            return range.clone();
        }
        match self.threshold {
            Some(limit) if self.name == BUILTIN_SUCCESS_RATE => ThresholdRange {
                min: Some(limit),
                max: None,
            },
            Some(limit) => ThresholdRange {
                min: None,
                max: Some(limit),
            },
            None => ThresholdRange::default(),
        }
    }
}

/// Name of the built-in success-rate check (percent of non-5xx responses).
pub const BUILTIN_SUCCESS_RATE: &str = "request-success-rate";
/// Name of the built-in latency check (P99 in milliseconds).
pub const BUILTIN_DURATION: &str = "request-duration";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThresholdRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl ThresholdRange {
    pub fn contains(&self, value: f64) -> bool {
        self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrossNamespaceRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// When a webhook is called and what its answer means.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum HookType {
    /// Gate before a new revision is scaled up; closed means Waiting.
    ConfirmRollout,
    /// Before traffic shifts; a failure counts a failed check.
    PreRollout,
    /// Every interval, before metrics (load tests).
    #[default]
    Rollout,
    /// Gate before each weight increase.
    ConfirmTrafficIncrease,
    /// Gate before promotion; closed means WaitingPromotion while analysis goes on.
    ConfirmPromotion,
    /// After Succeeded or Failed; failures are only logged.
    PostRollout,
    /// A 2xx answer means roll back now.
    Rollback,
    /// Receives every event.
    Event,
}

impl HookType {
    pub fn as_str(self) -> &'static str {
        match self {
            HookType::ConfirmRollout => "confirm-rollout",
            HookType::PreRollout => "pre-rollout",
            HookType::Rollout => "rollout",
            HookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
            HookType::ConfirmPromotion => "confirm-promotion",
            HookType::PostRollout => "post-rollout",
            HookType::Rollback => "rollback",
            HookType::Event => "event",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryWebhook {
    pub name: String,
    #[serde(default)]
    pub r#type: HookType,
    pub url: String,
    /// Request timeout (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mute_alert: bool,
    /// Aviary extension: sign each request with HMAC-SHA256 using this Secret's key, so the
    /// receiver can check who sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<WebhookSecretRef>,
}

/// A key of a Secret in the Canary's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSecretRef {
    pub name: String,
    /// The key holding the shared secret (default `secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl WebhookSecretRef {
    pub const DEFAULT_KEY: &'static str = "secret";

    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(Self::DEFAULT_KEY)
    }
}

impl CanaryWebhook {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
            .as_deref()
            .and_then(|text| super::parse_duration(text).ok())
            .unwrap_or(Self::DEFAULT_TIMEOUT)
    }
}

#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    #[default]
    Info,
    Warn,
    Error,
}

impl AlertSeverity {
    /// The Kubernetes Event type an event of this severity is recorded as.
    pub fn event_type(self) -> &'static str {
        match self {
            AlertSeverity::Info => "Normal",
            AlertSeverity::Warn | AlertSeverity::Error => "Warning",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warn => "warn",
            AlertSeverity::Error => "error",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryAlert {
    pub name: String,
    #[serde(default)]
    pub severity: AlertSeverity,
    pub provider_ref: CrossNamespaceRef,
}

/// Aviary extension for `aviary run`: where the two versions listen and where the gateway serves.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Standalone {
    /// Address the embedded gateway listens on, for example `127.0.0.1:8080`.
    pub listen: String,
    /// Address of the gateway's `/metrics` (default: an ephemeral loopback port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    pub primary: StandaloneUpstream,
    pub canary: StandaloneUpstream,
    /// Which proxy steers traffic: the embedded `gateway` (default) or a real `envoy`, started
    /// by Aviary with `listen` as its listener and `metricsListen` as its admin address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<StandaloneProxy>,
    /// The Envoy executable (default: `envoy` on PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_binary: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StandaloneProxy {
    Gateway,
    Envoy,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StandaloneUpstream {
    /// `host:port` of the upstream (HTTP).
    pub address: String,
    /// Revision label shown in status and events (default: the address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}
