//! The JSON each chat service's incoming webhook accepts, built from one notification.

use serde_json::{json, Value};

use super::{Channel, Notification};
use crate::api::AlertSeverity;

/// Colours by severity: green, amber, red.
fn colour(severity: AlertSeverity) -> (&'static str, u32) {
    match severity {
        AlertSeverity::Info => ("#2eb886", 0x2eb886),
        AlertSeverity::Warn => ("#daa038", 0xdaa038),
        AlertSeverity::Error => ("#a30200", 0xa30200),
    }
}

fn title(note: &Notification) -> String {
    format!("{}.{}: {}", note.name, note.namespace, note.reason)
}

/// The body for `kind`, one of `super::KINDS`.
pub fn body(kind: &str, channel: &Channel, note: &Notification) -> Value {
    match kind {
        "slack" | "rocket" => slack(channel, note),
        "msteams" => teams(note),
        "discord" => discord(channel, note),
        "gchat" => google_chat(note),
        _ => generic(note),
    }
}

fn slack(channel: &Channel, note: &Notification) -> Value {
    let fields: Vec<Value> = note
        .fields
        .iter()
        .map(|(k, v)| json!({ "title": k, "value": v, "short": true }))
        .collect();
    let mut body = json!({
        "text": format!("{} {}", title(note), note.message),
        "attachments": [{
            "color": colour(note.severity).0,
            "title": title(note),
            "text": note.message,
            "fields": fields,
        }],
    });
    if let Some(name) = &channel.channel {
        body["channel"] = json!(name);
    }
    if let Some(user) = &channel.username {
        body["username"] = json!(user);
    }
    body
}

fn teams(note: &Notification) -> Value {
    let facts: Vec<Value> = note
        .fields
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    json!({
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "themeColor": colour(note.severity).0.trim_start_matches('#'),
        "summary": title(note),
        "sections": [{
            "activityTitle": title(note),
            "activitySubtitle": note.message,
            "facts": facts,
        }],
    })
}

fn discord(channel: &Channel, note: &Notification) -> Value {
    let fields: Vec<Value> = note
        .fields
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v, "inline": true }))
        .collect();
    let mut body = json!({
        "content": title(note),
        "embeds": [{
            "title": title(note),
            "description": note.message,
            "color": colour(note.severity).1,
            "fields": fields,
        }],
    });
    if let Some(user) = &channel.username {
        body["username"] = json!(user);
    }
    body
}

fn google_chat(note: &Notification) -> Value {
    let facts: Vec<String> = note
        .fields
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    json!({
        "text": format!("*{}*\n{}\n{}", title(note), note.message, facts.join("\n")),
    })
}

fn generic(note: &Notification) -> Value {
    json!({
        "name": note.name,
        "namespace": note.namespace,
        "phase": note.phase,
        "severity": note.severity.as_str(),
        "reason": note.reason,
        "message": note.message,
        "metadata": note.fields.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    })
}
