//! `aviary status`: one Canary (or all in a namespace) as text, or as JSON.

use std::fmt::Write as _;

use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use super::CliError;
use crate::api::{Canary, CanaryStatus, HookType};
use crate::plan::{Plan, Strategy};

const BAR: usize = 20;

/// The status part of a Canary as JSON, with its name.
pub fn status_json(canary: &Canary) -> serde_json::Value {
    serde_json::json!({
        "name": canary.name_any(),
        "namespace": canary.namespace(),
        "status": canary.status.clone().unwrap_or_default(),
    })
}

/// The spec as the controller reads it, for what the view shows of it.
fn plan(canary: &Canary) -> Option<Plan> {
    let options = crate::plan::Options {
        allow_short_intervals: true,
        ..Default::default()
    };
    crate::plan::plan(&canary.spec, options).ok()
}

/// Step `n/N` of a canary's analysis, as the engine steps through it.
fn step(plan: Option<&Plan>, status: &CanaryStatus) -> String {
    let Some(plan) = plan else {
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
    let plan = plan(canary);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}/{}  {}  {}  {}",
        canary.namespace().unwrap_or_default(),
        canary.name_any(),
        status.phase,
        bar(status.canary_weight),
        step(plan.as_ref(), &status)
    );
    let promoted = status.condition(crate::api::ConditionType::Promoted);
    if let Some(message) = promoted.and_then(|c| c.message.as_deref()) {
        if !message.is_empty() {
            let _ = writeln!(out, "  {message}");
        }
    }
    let threshold = plan.as_ref().map_or(1, |p| p.analysis.threshold);
    let _ = writeln!(out, "  failed checks {}/{threshold}", status.failed_checks);
    checks(&mut out, &status);
    if let Some(plan) = &plan {
        gates(&mut out, plan);
    }
    if let Some(by) = &status.paused_by {
        let _ = writeln!(out, "  paused by {by}");
    }
    if let Some(by) = &status.approved_by {
        let _ = writeln!(out, "  next closed gate approved by {by}");
    }
    out
}

/// The last step's checks against their ranges, and the judge's verdicts.
fn checks(out: &mut String, status: &CanaryStatus) {
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
}

/// The webhooks that can hold or stop the rollout.
fn gates(out: &mut String, plan: &Plan) {
    let gates: Vec<String> = plan
        .analysis
        .webhooks
        .iter()
        .filter(|h| {
            matches!(
                h.kind,
                HookType::ConfirmRollout
                    | HookType::ConfirmTrafficIncrease
                    | HookType::ConfirmPromotion
                    | HookType::Rollback
            )
        })
        .map(|h| format!("{} ({})", h.name, h.kind.as_str()))
        .collect();
    if !gates.is_empty() {
        let _ = writeln!(out, "  gates: {}", gates.join(", "));
    }
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
    let mut changes = crate::controller::watch::relisting(api, config)
        .applied_objects()
        .boxed();
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
