//! Operator requests: what `aviary promote|abort|pause|resume|retry` ask of a rollout.
//!
//! The CLI writes one request into an annotation on the Canary, so the right to ask is exactly
//! the right to patch the Canary (Kubernetes RBAC), and the controller, which watches Canaries,
//! acts on each request once (the status remembers the id of the last one handled).

use serde::{Deserialize, Serialize};

use crate::naming::REQUEST_ANNOTATION;

/// The one form a request may take, byte for byte: what the CLI writes (`serde_json` of this
/// type: keys in declaration order, no spaces). The admission policy in `charts/aviary` checks
/// the same shape, so the `by` it compares with the author is the `by` the controller reads:
/// no nested, repeated or escaped `by` can slip past one of them and not the other.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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

/// Longest `id`, `by` and `at` the canonical form allows (the policy's regex says the same).
const MAX_ID: usize = 64;
const MAX_BY: usize = 256;
const MAX_AT: usize = 64;

impl OperatorRequest {
    /// Reads the annotation value; the error names the annotation and what is wrong. Only the
    /// canonical form is a request.
    pub fn parse(text: &str) -> Result<OperatorRequest, String> {
        let refuse =
            |why: String| format!("annotation {REQUEST_ANNOTATION} is not a request: {why}");
        let request: OperatorRequest =
            serde_json::from_str(text).map_err(|error| refuse(error.to_string()))?;
        request.check_fields().map_err(refuse)?;
        let canonical = serde_json::to_string(&request).map_err(|e| refuse(e.to_string()))?;
        if canonical != text {
            return Err(refuse(format!(
                "not in canonical form (write it with the aviary CLI): expected {canonical}"
            )));
        }
        Ok(request)
    }

    fn check_fields(&self) -> Result<(), String> {
        let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.id.is_empty() || self.id.len() > MAX_ID || !self.id.chars().all(id_char) {
            return Err(format!(
                "id must be 1 to {MAX_ID} of A-Z, a-z, 0-9, '.', '_' and '-'"
            ));
        }
        let by_char = |c: char| c != '"' && c != '\\' && !c.is_control();
        if self.by.is_empty() || self.by.len() > MAX_BY || !self.by.chars().all(by_char) {
            return Err(format!(
                "by must be 1 to {MAX_BY} characters with no quote, backslash or control character"
            ));
        }
        let at_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '+' | '-');
        if let Some(at) = &self.at {
            if at.is_empty() || at.len() > MAX_AT || !at.chars().all(at_char) {
                return Err("at must be an RFC 3339 timestamp".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_form_is_a_request() {
        let good = r#"{"id":"1-ab","verb":"resume","by":"alice","at":"2026-12-02T04:53:44.1Z"}"#;
        assert_eq!(OperatorRequest::parse(good).unwrap().by, "alice");
        for (forged, why) in [
            (
                r#"{"id":"1","verb":"resume","x":{"by":"alice"},"by":"mallory"}"#,
                "unknown field",
            ),
            (
                r#"{"id":"1","verb":"resume","by":"alice","by":"mallory"}"#,
                "duplicate field",
            ),
            (r#"{"id":"1", "verb":"resume","by":"alice"}"#, "canonical"),
            (r#"{"verb":"resume","id":"1","by":"alice"}"#, "canonical"),
            (
                r#"{"id":"1","verb":"resume","by":"al\u0069ce"}"#,
                "canonical",
            ),
            (r#"{"id":"1","verb":"resume","by":"a\"b"}"#, "no quote"),
            (r#"{"id":"a b","verb":"resume","by":"alice"}"#, "id must be"),
        ] {
            let error = OperatorRequest::parse(forged).unwrap_err();
            assert!(error.contains(why), "{forged}: {error}");
        }
    }
}
