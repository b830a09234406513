//! The demo's live progress lines.

use std::time::Instant;

use crate::api::{BUILTIN_DURATION, BUILTIN_SUCCESS_RATE};
use crate::runner::Progress;

pub struct ProgressView {
    started: Instant,
    last_line: String,
}

impl ProgressView {
    pub fn new(started: Instant) -> Self {
        ProgressView {
            started,
            last_line: String::new(),
        }
    }

    pub fn show(&mut self, progress: &Progress) {
        let elapsed = self.started.elapsed().as_secs_f64();
        for event in &progress.events {
            println!("  {elapsed:6.1}s  {:<18} {}", event.reason, event.message);
        }
        let weight = progress.routes.canary_weight.clamp(0, 100) as usize;
        let filled = weight / 10;
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(10 - filled));
        let value = |name: &str, unit: &str| {
            progress
                .metrics
                .iter()
                .find(|m| m.name == name)
                .map(|m| match &m.value {
                    Ok(v) => format!("{v:.1}{unit}"),
                    Err(_) => "n/a".to_string(),
                })
                .unwrap_or_else(|| "-".to_string())
        };
        let line = format!(
            "{:<16} weight [{bar}] {:>3}%  success {:>7}  p99 {:>8}  failed checks {}",
            progress.status.phase.as_str(),
            progress.routes.canary_weight,
            value(BUILTIN_SUCCESS_RATE, "%"),
            value(BUILTIN_DURATION, "ms"),
            progress.status.failed_checks,
        );
        if line != self.last_line {
            println!("  {elapsed:6.1}s  {line}");
            self.last_line = line;
        }
    }
}
