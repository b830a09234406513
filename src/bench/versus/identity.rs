//! Each controller under its own ServiceAccount, and its API requests counted by that identity
//! from the API server's audit log.
//!
//! The test environment's audit policy logs every request of the ServiceAccounts in
//! [`NAMESPACE`] at Metadata level, so a count is the server's own record of what that
//! controller asked, whatever its client library does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;

use crate::bench::{start_error, BenchError};

/// The namespace of the controllers' ServiceAccounts; the audit policy names its group.
pub const NAMESPACE: &str = "aviary-bench-identities";

/// A controller's identity: its user name and a kubeconfig that authenticates as it.
pub struct Identity {
    pub user: String,
    pub kubeconfig: PathBuf,
}

async fn create_or_keep<K>(api: &Api<K>, object: serde_json::Value) -> Result<(), BenchError>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let object: K =
        serde_json::from_value(object).map_err(|e| BenchError::Timeout(e.to_string()))?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The ServiceAccount `name` bound to cluster-admin (the benchmark compares requests, not
/// rights), with a token written into a kubeconfig under `dir`.
pub async fn identity(client: &Client, name: &str, dir: &Path) -> Result<Identity, BenchError> {
    create_or_keep(
        &Api::<Namespace>::all(client.clone()),
        json!({ "metadata": { "name": NAMESPACE } }),
    )
    .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    create_or_keep(&accounts, json!({ "metadata": { "name": name } })).await?;
    let binding = json!({
        "metadata": { "name": format!("{NAMESPACE}-{name}") },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin" },
        "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": NAMESPACE }]
    });
    create_or_keep(&Api::<ClusterRoleBinding>::all(client.clone()), binding).await?;
    let request: TokenRequest =
        serde_json::from_value(json!({ "spec": { "expirationSeconds": 86400 } }))
            .map_err(|e| BenchError::Timeout(e.to_string()))?;
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await?
        .status
        .map(|s| s.token)
        .ok_or_else(|| BenchError::Timeout(format!("no token issued for {name}")))?;
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    write_kubeconfig(&kubeconfig, &token)?;
    Ok(Identity {
        user: format!("system:serviceaccount:{NAMESPACE}:{name}"),
        kubeconfig,
    })
}

/// The current context's cluster (server and CA) with `token` as the user.
fn write_kubeconfig(path: &Path, token: &str) -> Result<(), BenchError> {
    let config = kube::config::Kubeconfig::read()
        .map_err(|e| BenchError::Timeout(format!("reading KUBECONFIG: {e}")))?;
    let context_name = config.current_context.clone().unwrap_or_default();
    let cluster_name = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.clone())
        .ok_or_else(|| BenchError::Timeout("KUBECONFIG has no current cluster".into()))?;
    let mut entry = json!({ "server": cluster.server });
    if let Some(data) = cluster.certificate_authority_data {
        entry["certificate-authority-data"] = json!(data);
    }
    if let Some(file) = cluster.certificate_authority {
        entry["certificate-authority"] = json!(file);
    }
    let document = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "bench",
        "clusters": [{ "name": "bench", "cluster": entry }],
        "users": [{ "name": "bench", "user": { "token": token } }],
        "contexts": [{ "name": "bench", "context": { "cluster": "bench", "user": "bench" } }]
    });
    std::fs::write(path, document.to_string()).map_err(start_error("a kubeconfig"))
}

/// Requests by verb, for one user, between two offsets of the audit log.
pub type VerbCounts = BTreeMap<String, u64>;

/// The audit log the test environment's API server writes.
pub fn audit_log() -> Result<PathBuf, BenchError> {
    let run = std::env::var("AVIARY_TESTENV_RUN").map_err(|_| BenchError::Start {
        what: "the audit log",
        reason: "AVIARY_TESTENV_RUN is not set: run under tests/env/testenv".into(),
    })?;
    Ok(Path::new(&run).join("logs/audit.log"))
}

pub fn audit_offset(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// Counts `user`'s requests by verb in the log between byte offsets `from` and `to`: one per
/// request (its ResponseComplete event; a watch by its ResponseStarted one, as it may never
/// complete in the window).
pub fn count_requests(
    log: &Path,
    (from, to): (u64, u64),
    user: &str,
) -> Result<VerbCounts, BenchError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).map_err(start_error("the audit log"))?;
    file.seek(SeekFrom::Start(from))
        .map_err(start_error("the audit log"))?;
    let mut text = String::new();
    file.take(to.saturating_sub(from))
        .read_to_string(&mut text)
        .map_err(start_error("the audit log"))?;
    let mut counts = VerbCounts::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["user"]["username"] != user {
            continue;
        }
        let verb = event["verb"].as_str().unwrap_or_default();
        let wanted = if verb == "watch" {
            "ResponseStarted"
        } else {
            "ResponseComplete"
        };
        if event["stage"] == wanted {
            *counts.entry(verb.to_string()).or_default() += 1;
        }
    }
    Ok(counts)
}

/// Reads (get, list) and writes (create, update, patch, delete) among the counts.
pub fn reads_and_writes(counts: &VerbCounts) -> (u64, u64) {
    let sum = |verbs: &[&str]| {
        verbs
            .iter()
            .map(|v| counts.get(*v).copied().unwrap_or(0))
            .sum()
    };
    (
        sum(&["get", "list"]),
        sum(&["create", "update", "patch", "delete", "deletecollection"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_once_each_by_user_and_verb() {
        let user = "system:serviceaccount:aviary-bench-identities:flagger";
        let lines = [
            json!({ "stage": "ResponseComplete", "verb": "get", "user": { "username": user } }),
            json!({ "stage": "ResponseStarted", "verb": "watch", "user": { "username": user } }),
            json!({ "stage": "ResponseComplete", "verb": "watch", "user": { "username": user } }),
            json!({ "stage": "ResponseComplete", "verb": "patch", "user": { "username": user } }),
            json!({ "stage": "ResponseComplete", "verb": "get", "user": { "username": "admin" } }),
        ];
        let text: String = lines.iter().map(|l| format!("{l}\nnot json\n")).collect();
        let path = std::env::temp_dir().join(format!("aviary-audit-test-{}", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let counts = count_requests(&path, (0, text.len() as u64), user).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(counts.get("get"), Some(&1));
        assert_eq!(counts.get("watch"), Some(&1));
        assert_eq!(reads_and_writes(&counts), (1, 1));
    }
}
