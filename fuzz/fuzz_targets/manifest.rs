//! `aviary validate` over any text: findings, never a panic.
#![no_main]

use aviary::validate::{validate_text, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for allow_short_intervals in [false, true] {
        let options = Options {
            allow_short_intervals,
            ..Default::default()
        };
        let _ = validate_text(text, options);
    }
});
