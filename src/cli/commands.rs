//! The operator commands as the binary runs them: output and exit codes.

use std::time::Duration;

use kube::api::Api;

use super::{CliError, WaitFor, WaitOutcome};
use crate::api::{Canary, Verb};

/// `aviary promote|abort|pause|resume|retry`: writes the request and says what happens next.
pub async fn request(namespace: Option<String>, name: &str, verb: Verb) -> Result<u8, CliError> {
    let (client, namespace) = super::connect(namespace).await?;
    let request = super::send(&client, &namespace, name, verb).await?;
    println!(
        "{} requested on canary {namespace}/{name} by {} (request {}); the controller records it in an Event",
        verb.as_str(),
        request.by,
        request.id
    );
    Ok(0)
}

/// `aviary status [NAME] [-w] [-o json]`.
pub async fn status(
    namespace: Option<String>,
    name: Option<&str>,
    watch: bool,
    json: bool,
) -> Result<u8, CliError> {
    let (client, namespace) = super::connect(namespace).await?;
    if watch {
        super::watch_status(&client, &namespace, name, json).await?;
        return Ok(0);
    }
    let api: Api<Canary> = Api::namespaced(client, &namespace);
    let canaries = match name {
        Some(name) => vec![api.get_opt(name).await?.ok_or_else(|| CliError::NotFound {
            namespace: namespace.clone(),
            name: name.to_string(),
        })?],
        None => api.list(&Default::default()).await?.items,
    };
    if json {
        let all: Vec<serde_json::Value> = canaries.iter().map(super::status_json).collect();
        let value = match (name, all.as_slice()) {
            (Some(_), [one]) => one.clone(),
            _ => serde_json::Value::Array(all),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        for canary in &canaries {
            print!("{}", super::render(canary));
        }
    }
    Ok(0)
}

/// `aviary wait NAME --for ... --timeout ...`: 0 promoted (or phase reached), 1 failed,
/// 2 timed out; the last status is printed in every case.
pub async fn wait(
    namespace: Option<String>,
    name: &str,
    condition: &str,
    limit: Duration,
    json: bool,
) -> Result<u8, CliError> {
    let condition: WaitFor = condition.parse()?;
    let (client, namespace) = super::connect(namespace).await?;
    let outcome = super::wait(&client, &namespace, name, condition, limit, |canary| {
        if !json {
            let status = canary.status.clone().unwrap_or_default();
            eprintln!(
                "{}  {}  weight {}  failed checks {}",
                jiff::Timestamp::now().strftime("%H:%M:%S"),
                status.phase,
                status.canary_weight,
                status.failed_checks
            );
        }
    })
    .await?;
    let verdict = match &outcome {
        WaitOutcome::Promoted(_) => "promoted",
        WaitOutcome::Reached(_) => "reached",
        WaitOutcome::Failed(_) => "failed",
        WaitOutcome::TimedOut(_) => "timed out",
    };
    let api: Api<Canary> = Api::namespaced(client, &namespace);
    let current = api.get_opt(name).await.ok().flatten();
    if json {
        let value = serde_json::json!({
            "name": name,
            "namespace": namespace,
            "result": verdict,
            "status": outcome.status(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        println!("{namespace}/{name}: {verdict}");
        if let Some(canary) = &current {
            print!("{}", super::render(canary));
        }
    }
    Ok(outcome.code())
}
