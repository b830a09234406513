//! `aviary status`: one Canary (or all in a namespace) as text, or as JSON.

use std::fmt::Write as _;

use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use super::CliError;
use crate::api::{Canary, CanaryStatus, HookType};
use crate::plan::Strategy;

const BAR: usize = 20;

/// The status part of a Canary as JSON, with its name.
pub fn status_json(canary: &Canary) -> serde_json::Value {
    serde_json::json!({
        "name": canary.name_any(),
        "namespace": canary.namespace(),
        "status": canary.status.clone().unwrap_or_default(),
    })
}

/// Step `n/N` of a canary's analysis, as the engine steps through it.
fn step(canary: &Canary, status: &CanaryStatus) -> String {
    if canary.spec.analysis.is_none() {
        return "no analysis".into();
    }
    let options = crate::plan::Options {
        allow_short_intervals: true,
        ..Default::default()
    };
    let Ok(plan) = crate::plan::plan(&canary.spec, options) else {
        return "invalid spec".into();
    };
    let analysis = &plan.analysis;
    match plan.strategy {
        Strategy::Canary => {
            let weights = analysis.weights();
            let at = weights
                .iter()
                .take_while(|w| **w <= status.canary_weight)
                .count();
            format!("step {at}/{}", weights.len())
        }
        Strategy::SkipAnalysis => "analysis skipped".into(),
        _ => format!("iteration {}/{}", status.iterations, analysis.iterations),
    }
}

fn bar(weight: i32) -> String {
    let filled = (weight.clamp(0, 100) as usize * BAR).div_ceil(100);
    format!(
        "[{}{}] {weight:>3}%",
        "#".repeat(filled),
        ".".repeat(BAR - filled)
    )
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// The text view of one Canary.
pub fn render(canary: &Canary) -> String {
    let status = canary.status.clone().unwrap_or_default();
    let mut out = String::new();
    let message = status
        .conditions
        .iter()
        .find(|c| c.r#type == crate::api::ConditionType::Promoted.as_str())
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{}/{}  {}  {}  {}",
        canary.namespace().unwrap_or_default(),
        canary.name_any(),
        status.phase,
        bar(status.canary_weight),
        step(canary, &status)
    );
    if !message.is_empty() {
        let _ = writeln!(out, "  {message}");
    }
    let threshold = canary
        .spec
        .analysis
        .as_ref()
        .map(|a| a.threshold())
        .unwrap_or(1);
    let _ = writeln!(out, "  failed checks {}/{threshold}", status.failed_checks);
    for check in &status.last_checks {
        let range = match (check.min, check.max) {
            (Some(min), Some(max)) => format!("[{}, {}]", number(min), number(max)),
            (Some(min), None) => format!(">= {}", number(min)),
            (None, Some(max)) => format!("<= {}", number(max)),
            (None, None) => "any".into(),
        };
        let value = check.value.map(number).unwrap_or_else(|| "no value".into());
        let mark = if check.passed { "ok  " } else { "FAIL" };
        let _ = write!(
            out,
            "  {mark} {:<24} {value:>10}  want {range}",
            check.metric
        );
        if !check.detail.is_empty() {
            let _ = write!(out, "  ({})", check.detail);
        }
        out.push('\n');
    }
    for judgement in &status.judgements {
        let _ = writeln!(
            out,
            "  judge {:<22} {:?}: {}",
            judgement.metric, judgement.verdict, judgement.detail
        );
    }
    let gates: Vec<String> = canary
        .spec
        .analysis
        .iter()
        .flat_map(|a| &a.webhooks)
        .filter(|h| {
            matches!(
                h.r#type,
                HookType::ConfirmRollout
                    | HookType::ConfirmTrafficIncrease
                    | HookType::ConfirmPromotion
                    | HookType::Rollback
            )
        })
        .map(|h| format!("{} ({})", h.name, h.r#type.as_str()))
        .collect();
    if !gates.is_empty() {
        let _ = writeln!(out, "  gates: {}", gates.join(", "));
    }
    if let Some(by) = &status.paused_by {
        let _ = writeln!(out, "  paused by {by}");
    }
    if let Some(by) = &status.approved_by {
        let _ = writeln!(out, "  next closed gate approved by {by}");
    }
    out
}

/// Prints every change of the named Canary (or of all in the namespace) until interrupted.
pub async fn watch_status(
    client: &Client,
    namespace: &str,
    name: Option<&str>,
    json: bool,
) -> Result<(), CliError> {
    let api: Api<Canary> = Api::namespaced(client.clone(), namespace);
    let mut config = watcher::Config::default();
    if let Some(name) = name {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let mut changes = watcher(api, config).applied_objects().boxed();
    while let Some(canary) = changes
        .try_next()
        .await
        .map_err(|e| CliError::Kube(kube::Error::Service(Box::new(e))))?
    {
        if json {
            println!("{}", status_json(&canary));
        } else {
            print!("{}", render(&canary));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_is_proportional() {
        assert_eq!(bar(0), "[....................]   0%");
        assert_eq!(bar(50), "[##########..........]  50%");
        assert_eq!(bar(100), "[####################] 100%");
    }
}
