//! Operator requests: what `aviary promote|abort|pause|resume|retry` ask of a rollout.
//!
//! The CLI writes one request into an annotation on the Canary, so the right to ask is exactly
//! the right to patch the Canary (Kubernetes RBAC), and the controller, which watches Canaries,
//! acts on each request once (the status remembers the id of the last one handled).

use serde::{Deserialize, Serialize};

use crate::naming::REQUEST_ANNOTATION;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRequest {
    /// Unique per request; a request is acted on once.
    pub id: String,
    pub verb: Verb,
    /// Who asked, as the API server authenticated the CLI (SelfSubjectReview).
    pub by: String,
    /// When the CLI wrote it (RFC 3339), for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    /// Pass the next closed gate (confirm-rollout, confirm-traffic-increase, confirm-promotion).
    Promote,
    /// Skip the remaining steps and promote now.
    PromoteFull,
    /// Roll back now.
    Abort,
    /// Hold the rollout where it is.
    Pause,
    Resume,
    /// Roll out a failed revision again.
    Retry,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Promote => "promote",
            Verb::PromoteFull => "promote-full",
            Verb::Abort => "abort",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Retry => "retry",
        }
    }
}

impl OperatorRequest {
    /// Reads the annotation value; the error names the annotation and what is wrong.
    pub fn parse(text: &str) -> Result<OperatorRequest, String> {
        serde_json::from_str(text)
            .map_err(|error| format!("annotation {REQUEST_ANNOTATION} is not a request: {error}"))
    }
}
