//! The operator's commands: ask a rollout to promote, abort, pause, resume or retry; watch it;
//! wait on it from CI. They act only through the Kubernetes API with the caller's own
//! credentials, so what a user may do is exactly what RBAC lets them do to the Canary.

pub mod commands;
mod request;
mod view;
mod wait;

pub use request::send;
pub use view::{render, status_json, watch_status};
pub use wait::{wait, WaitFor, WaitOutcome};

use kube::Client;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the Kubernetes API: {0}")]
    Connect(#[source] kube::Error),
    #[error("{user} may not {action} Canary {namespace}/{name}: {message}")]
    Forbidden {
        user: String,
        action: String,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("Canary {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("an earlier request is pending: {0}")]
    Pending(String),
    #[error("cannot watch the Canary: {0}")]
    Watch(String),
    #[error("--for {0:?}: expected promoted, failed or phase=<Phase>")]
    BadCondition(String),
}

/// An error and its causes in one line, each cause once: many errors (kube's among them) already
/// write their source into their own message, so printing the chain as it is repeats it.
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// A client from KUBECONFIG or the in-cluster configuration, and the namespace it defaults to.
pub async fn connect(namespace: Option<String>) -> Result<(Client, String), CliError> {
    crate::http_client::install_crypto_provider();
    let config = kube::Config::infer()
        .await
        .map_err(|e| CliError::Connect(kube::Error::InferConfig(e)))?;
    let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(CliError::Connect)?;
    Ok((client, namespace))
}

/// Who the API server says the caller is (SelfSubjectReview); used to sign requests.
pub async fn who_am_i(client: &Client) -> Result<String, CliError> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client.clone());
    let review = api
        .create(&Default::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_else(|| "unknown".to_string()))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("file missing")]
    struct Root;

    /// Says its source in its own message too, as kube's errors do.
    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the config: {0}")]
    struct Repeating(#[source] Root);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot reach the Kubernetes API")]
    struct Outer(#[source] Repeating);

    #[test]
    fn each_cause_is_said_once() {
        let text = super::cause_chain(&Outer(Repeating(Root)));
        assert_eq!(
            text,
            "cannot reach the Kubernetes API: cannot read the config: file missing"
        );
    }
}
