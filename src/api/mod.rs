//! The `aviary.dev/v1beta1` API: field-compatible with Flagger's `flagger.app/v1beta1`,
//! so a Flagger manifest only needs its apiVersion changed.

mod alert_provider;
mod analysis;
mod canary;
mod duration;
mod gateway;
mod istio;
mod kstatus;
mod metric_template;
mod provider;
mod request;
mod schema;
mod standalone;
mod status;
mod vocabulary;

pub use alert_provider::{AlertProvider, AlertProviderSpec};
pub use analysis::*;
pub use canary::*;
pub use duration::{
    go_duration, parse_duration, DurationError, MAX_DURATION, MAX_INTERVAL, MAX_METRIC_WINDOW,
    MAX_WEBHOOK_RETRIES, MAX_WEBHOOK_TIMEOUT, MAX_WINDOW_LENGTH,
};
pub use gateway::{BackendReference, ParentReference, RequestMirror};
pub use istio::*;
pub use metric_template::{MetricTemplate, MetricTemplateProvider, MetricTemplateSpec};
pub use provider::{RouterKind, SmiVersion, UnknownProvider, PROVIDER_NAMES};
pub use request::{OperatorRequest, Verb};
pub use standalone::{Standalone, StandaloneProxy, StandaloneUpstream};
pub use status::{CanaryCondition, CanaryPhase, CanaryStatus, MetricCheck, MetricJudgement};
pub use vocabulary::{ConditionStatus, ConditionType, Reason};

/// The API group shared by every Aviary kind.
pub const GROUP: &str = "aviary.dev";
/// The only served version; it mirrors Flagger's.
pub const VERSION: &str = "v1beta1";
