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
    let (hex, number) = colour(note.severity);
    match kind {
        "slack" | "rocket" => {
            let fields: Vec<Value> = note
                .fields
                .iter()
                .map(|(k, v)| json!({ "title": k, "value": v, "short": true }))
                .collect();
            let mut body = json!({
                "text": format!("{} {}", title(note), note.message),
                "attachments": [{
                    "color": hex,
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
        "msteams" => {
            let facts: Vec<Value> = note
                .fields
                .iter()
                .map(|(k, v)| json!({ "name": k, "value": v }))
                .collect();
            json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "themeColor": hex.trim_start_matches('#'),
                "summary": title(note),
                "sections": [{
                    "activityTitle": title(note),
                    "activitySubtitle": note.message,
                    "facts": facts,
                }],
            })
        }
        "discord" => {
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
                    "color": number,
                    "fields": fields,
                }],
            });
            if let Some(user) = &channel.username {
                body["username"] = json!(user);
            }
            body
        }
        "gchat" => {
            let facts: Vec<String> = note
                .fields
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            json!({
                "text": format!("*{}*\n{}\n{}", title(note), note.message, facts.join("\n")),
            })
        }
        // generic
        _ => json!({
            "name": note.name,
            "namespace": note.namespace,
            "phase": note.phase,
            "severity": note.severity.as_str(),
            "reason": note.reason,
            "message": note.message,
            "metadata": note.fields.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        }),
    }
}
