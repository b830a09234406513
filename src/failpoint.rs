//! Crash points for the fault tests, compiled only with the `failpoints` feature.
//!
//! With `AVIARY_FAILPOINT=<point>:<phase>` set (say `routes-written:Failed`, the routes of a
//! rollback written and its target not yet scaled), the process that reaches that point in a
//! decision for that phase prints one line and stops itself with SIGSTOP, so that a test can
//! SIGKILL it exactly there; `#n` after it waits for the n-th time. The points follow the driver's actions:
//!
//! - `status-stored`: a transition's intent is stored, none of its effects made;
//! - `routes-written`: the routes are written;
//! - `primary-written`: the primary has the target's template;
//! - `target-scaled`: the target is scaled.
//!
//! Without the feature every call compiles to nothing.

use crate::api::CanaryPhase;

/// The line printed when a failpoint is reached, for the test to wait on.
pub const REACHED: &str = "failpoint reached:";

#[cfg(feature = "failpoints")]
pub fn reached(point: &str, phase: CanaryPhase) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PASSED: AtomicUsize = AtomicUsize::new(0);
    let Ok(wanted) = std::env::var("AVIARY_FAILPOINT") else {
        return;
    };
    let (place, nth) = match wanted.split_once('#') {
        Some((place, nth)) => (place, nth.parse().unwrap_or(1)),
        None => (wanted.as_str(), 1),
    };
    if place != format!("{point}:{phase}") || PASSED.fetch_add(1, Ordering::SeqCst) + 1 != nth {
        return;
    }
    // Straight to stderr, unbuffered: the process stops right after.
    eprintln!("{REACHED} {wanted}");
    let pid = std::process::id().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    if !stopped.is_ok_and(|s| s.success()) {
        // A failpoint that cannot stop must not let the run go on as if it had not crashed.
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn reached(_point: &str, _phase: CanaryPhase) {}
