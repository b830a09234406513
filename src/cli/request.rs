//! Writing an operator request onto a Canary.

use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;

use super::CliError;
use crate::api::{Canary, OperatorRequest, Verb, REQUEST_ANNOTATION};

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
    let patch = json!({ "metadata": { "annotations": { REQUEST_ANNOTATION: text } } });
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
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
