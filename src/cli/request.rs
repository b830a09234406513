//! Writing an operator request onto a Canary.

use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use super::CliError;
use crate::api::{Canary, OperatorRequest, Verb};
use crate::naming::REQUEST_ANNOTATION;

/// How often, and how many times, to look whether an earlier request has been acted on.
const POLL: std::time::Duration = std::time::Duration::from_millis(500);
const PENDING_POLLS: u32 = 30;

/// The request on the canary the controller has not acted on yet, described.
fn pending(canary: &Canary) -> Option<String> {
    let text = canary
        .metadata
        .annotations
        .as_ref()?
        .get(REQUEST_ANNOTATION)?;
    let request = OperatorRequest::parse(text).ok()?;
    let handled = canary
        .status
        .as_ref()
        .and_then(|s| s.handled_request.as_deref());
    (handled != Some(request.id.as_str())).then(|| {
        format!(
            "{} by {} (request {}) has not been acted on yet; is the controller running?",
            request.verb.as_str(),
            request.by,
            request.id
        )
    })
}

/// Puts `verb` on the Canary as the caller; the controller acts on it and records an Event.
pub async fn send(
    client: &Client,
    namespace: &str,
    name: &str,
    verb: Verb,
) -> Result<OperatorRequest, CliError> {
    let by = super::who_am_i(client).await?;
    let now = jiff::Timestamp::now();
    let request = OperatorRequest {
        id: format!("{}-{:08x}", now.as_millisecond(), rand::random::<u32>()),
        verb,
        by: by.clone(),
        at: Some(now.to_string()),
    };
    let text = serde_json::to_string(&request).expect("a request always serialises");
    let api: Api<Canary> = Api::namespaced(client.clone(), namespace);
    // One request at a time: the annotation holds one, so a new one must not replace a request
    // the controller has not acted on yet. The write is conditional on the copy that showed it.
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let current = match api.get_opt(name).await {
            Ok(Some(canary)) => canary,
            Err(kube::Error::Api(status)) if status.code == 403 => {
                return Err(CliError::Forbidden {
                    user: by,
                    action: "get".into(),
                    namespace: namespace.into(),
                    name: name.into(),
                    message: status.message,
                })
            }
            Err(error) => return Err(error.into()),
            Ok(None) => {
                return Err(CliError::NotFound {
                    namespace: namespace.into(),
                    name: name.into(),
                })
            }
        };
        if let Some(pending) = pending(&current) {
            if attempt > PENDING_POLLS {
                return Err(CliError::Pending(pending));
            }
            tokio::time::sleep(POLL).await;
            continue;
        }
        let patch = json!({ "metadata": {
            "resourceVersion": current.metadata.resource_version,
            "annotations": { REQUEST_ANNOTATION: &text }
        } });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 409 && attempt <= PENDING_POLLS => {
                continue
            }
            other => break other,
        }
    };
    match result {
        Ok(_) => Ok(request),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(CliError::Forbidden {
            user: by,
            action: "patch".into(),
            namespace: namespace.into(),
            name: name.into(),
            message: status.message,
        }),
        Err(kube::Error::Api(status)) if status.code == 404 => Err(CliError::NotFound {
            namespace: namespace.into(),
            name: name.into(),
        }),
        Err(error) => Err(error.into()),
    }
}
