//! Gate and rollback switches per canary, as the loadtester keeps them.

use parking_lot::Mutex;
use std::collections::HashMap;

/// The switches of one canary. Gates start closed: nothing passes a manual gate by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    pub gate_open: bool,
    pub rollback_open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Gate,
    Rollback,
}

impl Switch {
    pub fn as_str(self) -> &'static str {
        match self {
            Switch::Gate => "gate",
            Switch::Rollback => "rollback",
        }
    }
}

/// Canary `name.namespace` → its switches.
#[derive(Default)]
pub struct Gates {
    switches: Mutex<HashMap<String, Switches>>,
}

impl Gates {
    pub fn get(&self, canary: &str) -> Switches {
        self.switches
            .lock()
            .get(canary)
            .copied()
            .unwrap_or_default()
    }

    /// Sets one switch; returns whether it changed.
    pub fn set(&self, canary: &str, switch: Switch, open: bool) -> bool {
        let mut all = self.switches.lock();
        let entry = all.entry(canary.to_string()).or_default();
        let slot = match switch {
            Switch::Gate => &mut entry.gate_open,
            Switch::Rollback => &mut entry.rollback_open,
        };
        let changed = *slot != open;
        *slot = open;
        changed
    }

    /// How many gates are open and closed (for /metrics).
    pub fn counts(&self) -> (usize, usize) {
        let all = self.switches.lock();
        let open = all.values().filter(|s| s.gate_open).count();
        (open, all.len() - open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_start_closed_and_switch_per_canary() {
        let gates = Gates::default();
        assert!(!gates.get("a.test").gate_open);
        assert!(gates.set("a.test", Switch::Gate, true));
        assert!(!gates.set("a.test", Switch::Gate, true));
        assert!(gates.get("a.test").gate_open);
        assert!(!gates.get("b.test").gate_open);
        assert!(!gates.get("a.test").rollback_open);
    }
}
