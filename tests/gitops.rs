//! The Argo CD health check (`charts/aviary/gitops/argocd-health.lua`), run by a real Lua
//! interpreter (Debian's lua5.4, installed by `tests/env/testenv build`) over statuses the
//! engine's own types write: one per phase, and the cases between them.

use std::path::PathBuf;
use std::process::Command;

use aviary::api::{CanaryPhase, CanaryStatus};
use aviary::engine::{blocked, Obstacle, BLOCKED_RECHECK};
use jiff::Timestamp;
use serde_json::{json, Value};

const GENERATION: i64 = 4;

fn lua() -> PathBuf {
    let found = ["lua5.4", "lua"].iter().find_map(|name| {
        let out = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!path.is_empty()).then(|| PathBuf::from(path))
    });
    found.expect("no Lua interpreter on PATH: run tests/env/testenv build (it installs lua5.4)")
}

/// `value` as a Lua table constructor; JSON null is left out, as Argo CD's conversion does.
fn lua_value(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_value).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields = fields.iter().filter(|(_, v)| !v.is_null());
            let fields: Vec<String> = fields
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_value(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(text: &str) -> String {
    let escaped: String = text
        .chars()
        .map(|c| match c {
            '\\' => "\\\\".to_string(),
            '"' => "\\\"".to_string(),
            '\n' => "\\n".to_string(),
            c if c.is_control() => format!("\\{}", c as u32),
            c => c.to_string(),
        })
        .collect();
    format!("\"{escaped}\"")
}

/// What the health check says of a Canary with `status` at `generation`.
fn health(status: Option<&CanaryStatus>, generation: i64) -> (String, String) {
    let object = json!({
        "apiVersion": "aviary.dev/v1beta1",
        "kind": "Canary",
        "metadata": { "name": "podinfo", "namespace": "test", "generation": generation },
        "status": status,
    });
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/aviary/gitops/argocd-health.lua");
    let harness = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, '\\t', hs.message)",
        lua_value(&object),
        lua_string(&script.to_string_lossy())
    );
    let out = Command::new(lua()).args(["-e", &harness]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (state, message) = stdout.split_once('\t').expect("status and message");
    (state.to_string(), message.to_string())
}

fn at(phase: CanaryPhase) -> CanaryStatus {
    let now = Timestamp::now();
    let mut status = CanaryStatus {
        observed_generation: Some(GENERATION),
        ..CanaryStatus::default()
    };
    status.set_phase(phase, "test", now);
    status.set_standing(now);
    status
}

#[test]
fn every_phase_has_its_argo_cd_health() {
    use CanaryPhase::*;
    let expected = [
        (Initializing, "Progressing"),
        (Initialized, "Healthy"),
        (Waiting, "Suspended"),
        (Progressing, "Progressing"),
        (WaitingPromotion, "Suspended"),
        (Promoting, "Progressing"),
        (Finalising, "Progressing"),
        (Succeeded, "Healthy"),
        (Failed, "Degraded"),
        (Terminating, "Progressing"),
        (Terminated, "Healthy"),
    ];
    for (phase, want) in expected {
        let (got, message) = health(Some(&at(phase)), GENERATION);
        assert_eq!(got, want, "{phase}: {message}");
        assert!(!message.is_empty(), "{phase} has a message");
    }
}

#[test]
fn the_cases_between_phases_read_right() {
    let (state, _) = health(None, 1);
    assert_eq!(state, "Progressing", "no status yet");
    let (state, message) = health(Some(&at(CanaryPhase::Succeeded)), GENERATION + 1);
    assert_eq!(
        state, "Progressing",
        "a spec the controller has not seen: {message}"
    );
    let paused = CanaryStatus {
        paused_by: Some("alice".into()),
        ..at(CanaryPhase::Progressing)
    };
    assert_eq!(health(Some(&paused), GENERATION).0, "Suspended");
    // A rollback stored but not yet carried out is still under way.
    let mut pending = at(CanaryPhase::Failed);
    pending.effects_pending = true;
    pending.set_standing(Timestamp::now());
    assert_eq!(health(Some(&pending), GENERATION).0, "Progressing");
}

#[test]
fn a_canary_that_cannot_run_is_degraded_unless_its_target_may_yet_appear() {
    let now = Timestamp::now();
    let claimed = Obstacle::TargetClaimed {
        target: "podinfo".into(),
        owner: "older".into(),
    };
    let status = blocked(
        &at(CanaryPhase::Succeeded),
        (&claimed, BLOCKED_RECHECK),
        now,
    )
    .status;
    let (state, message) = health(Some(&status), GENERATION);
    assert_eq!(state, "Degraded");
    assert!(message.contains("older"), "{message}");
    let missing = Obstacle::TargetNotFound("Deployment test/podinfo".into());
    let status = blocked(
        &at(CanaryPhase::Initializing),
        (&missing, BLOCKED_RECHECK),
        now,
    )
    .status;
    assert_eq!(health(Some(&status), GENERATION).0, "Progressing");
}

#[test]
fn statuses_written_before_these_conditions_still_read() {
    let legacy = |phase: &str| -> (String, String) {
        let object = json!({ "phase": phase });
        let status: CanaryStatus = serde_json::from_value(object).unwrap();
        health(Some(&status), 1)
    };
    assert_eq!(legacy("Failed").0, "Degraded");
    assert_eq!(legacy("Succeeded").0, "Healthy");
    assert_eq!(legacy("Progressing").0, "Progressing");
}
