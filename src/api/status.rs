//! What Aviary reports about a canary. The engine owns every field; the adapters only persist it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;
use super::{ConditionStatus, ConditionType, Reason};

/// The rollout phases, named as Flagger names them so dashboards and `kubectl wait` keep working.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CanaryPhase {
    #[default]
    Initializing,
    Initialized,
    Waiting,
    Progressing,
    WaitingPromotion,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
    Terminating,
    Terminated,
}

impl CanaryPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryPhase::Initializing => "Initializing",
            CanaryPhase::Initialized => "Initialized",
            CanaryPhase::Waiting => "Waiting",
            CanaryPhase::Progressing => "Progressing",
            CanaryPhase::WaitingPromotion => "WaitingPromotion",
            CanaryPhase::Promoting => "Promoting",
            CanaryPhase::Finalising => "Finalising",
            CanaryPhase::Succeeded => "Succeeded",
            CanaryPhase::Failed => "Failed",
            CanaryPhase::Terminating => "Terminating",
            CanaryPhase::Terminated => "Terminated",
        }
    }

    /// Phases in which a rollout is under way (traffic may be on the canary).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            CanaryPhase::Progressing
                | CanaryPhase::WaitingPromotion
                | CanaryPhase::Promoting
                | CanaryPhase::Finalising
        )
    }

    /// Phases an operator may pause: a rollout waiting or under analysis. Promotion and its
    /// traffic shift back are never left half done.
    pub fn is_pausable(self) -> bool {
        matches!(
            self,
            CanaryPhase::Waiting | CanaryPhase::Progressing | CanaryPhase::WaitingPromotion
        )
    }

    /// The value of the `Promoted` condition for this phase.
    fn promoted_condition(self) -> ConditionStatus {
        match self {
            CanaryPhase::Initialized | CanaryPhase::Succeeded => ConditionStatus::True,
            CanaryPhase::Failed => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

impl std::fmt::Display for CanaryPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(default)]
    pub phase: CanaryPhase,
    #[serde(default)]
    pub failed_checks: i32,
    #[serde(default)]
    pub canary_weight: i32,
    #[serde(default)]
    pub iterations: i32,
    /// Checksums of the ConfigMaps and Secrets the pod template references.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tracked_configs: BTreeMap<String, String>,
    /// Revision (pod-template hash) the current or last rollout was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_spec: Option<String>,
    /// Revision that was last promoted to the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promoted_spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub last_transition_time: Option<Timestamp>,
    /// When the last analysis step ran; a restarted controller uses it to neither repeat nor skip one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub last_step_time: Option<Timestamp>,
    /// Since when analysis has been held without a verdict (no data under `onNoData: hold`, or a
    /// metrics provider that cannot be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub holding_since: Option<Timestamp>,
    /// Aviary: this status was stored ahead of the side effects of its transition (a promotion,
    /// a rollback, the switch to the primary) and they may not all have been made; the next
    /// reconcile reads the routes and the target back and finishes them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub effects_pending: bool,
    /// Whether the pre-rollout hooks of the current rollout have passed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_rollout_passed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CanaryCondition>,
    /// The session cookie (`name=value`) the canary's responses set in the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_cookie: Option<String>,
    /// The session cookie the primary's responses set in the current run (`primaryCookieName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_session_affinity_cookie: Option<String>,
    /// The canary's session cookie of the run before; it no longer pins anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_session_affinity_cookie: Option<String>,
    /// The `metadata.generation` of the spec this status was decided on (kstatus reads a
    /// status whose generation lags the spec as still in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Aviary: the comparative judge's last verdict per metric, with its numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judgements: Vec<MetricJudgement>,
    /// Aviary: the sequential tests of the running analysis, per metric.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub judge_state: BTreeMap<String, crate::judge::SequentialState>,
    /// Aviary: the sample tests of the running analysis, per metric (pooled sub-interval pairs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sample_tests: BTreeMap<String, crate::judge::PairedState>,
    /// Aviary: each metric's value at the last analysis step, against its range.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_checks: Vec<MetricCheck>,
    /// Aviary: who paused the rollout (`aviary pause`); nothing advances until resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
    /// Aviary: who approved passing the next closed gate (`aviary promote`), not yet used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Aviary: the id of the last operator request (the `aviary.dev/request` annotation) acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_request: Option<String>,
}

/// One metric at one analysis step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricCheck {
    pub metric: String,
    /// The measured value; absent when there was none (see `detail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Within range (comparative metrics: as the judge saw it).
    pub passed: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricJudgement {
    pub metric: String,
    pub verdict: crate::judge::Verdict,
    /// Canary over primary (ratio of error rates, or geometric mean ratio of the samples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The sequential test's evidence (it fails at 1 / (1 - confidence), or twice that for
    /// `direction: either`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<f64>,
    pub detail: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryCondition {
    pub r#type: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub last_update_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::optional_timestamp")]
    pub last_transition_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl CanaryStatus {
    /// Sets condition `kind` to `value` for `reason`; returns whether anything changed (a
    /// condition already at this status for this reason keeps its times and message).
    pub fn set_condition(
        &mut self,
        kind: ConditionType,
        value: ConditionStatus,
        (reason, message): (Reason, &str),
        now: Timestamp,
    ) -> bool {
        let (kind, value, reason) = (kind.as_str(), value.as_str(), reason.as_str());
        let updated = CanaryCondition {
            r#type: kind.into(),
            status: value.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(now),
            last_update_time: Some(now),
        };
        match self.conditions.iter_mut().find(|c| c.r#type == kind) {
            Some(existing)
                if existing.reason.as_deref() == Some(reason) && existing.status == value =>
            {
                false
            }
            Some(existing) => {
                *existing = updated;
                true
            }
            None => {
                self.conditions.push(updated);
                true
            }
        }
    }

    pub fn condition(&self, kind: ConditionType) -> Option<&CanaryCondition> {
        self.conditions.iter().find(|c| c.r#type == kind.as_str())
    }

    pub fn clear_condition(&mut self, kind: ConditionType) {
        self.conditions.retain(|c| c.r#type != kind.as_str());
    }

    /// Moves to `phase`, keeping `lastTransitionTime` and the `Promoted` condition in step with it.
    pub fn set_phase(&mut self, phase: CanaryPhase, message: &str, now: Timestamp) {
        if self.phase != phase || self.last_transition_time.is_none() {
            self.last_transition_time = Some(now);
        }
        self.phase = phase;
        let status = phase.promoted_condition().as_str().to_string();
        let existing = self
            .conditions
            .iter_mut()
            .find(|c| c.r#type == ConditionType::Promoted.as_str());
        match existing {
            Some(condition) => {
                if condition.status != status {
                    condition.last_transition_time = Some(now);
                }
                condition.status = status;
                condition.last_update_time = Some(now);
                condition.reason = Some(phase.as_str().to_string());
                condition.message = Some(message.to_string());
            }
            None => self.conditions.push(CanaryCondition {
                r#type: ConditionType::Promoted.as_str().to_string(),
                status,
                last_update_time: Some(now),
                last_transition_time: Some(now),
                reason: Some(phase.as_str().to_string()),
                message: Some(message.to_string()),
            }),
        }
    }
}
