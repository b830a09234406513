//! Durations, cron schedules and promotion windows: a value or an error, never a panic; a
//! duration that reads is within the cap.
#![no_main]

use aviary::api::{parse_duration, PromotionWindow, MAX_DURATION};
use aviary::plan::ParsedWindow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(duration) = parse_duration(text) {
        assert!(duration <= MAX_DURATION, "{text:?} read as {duration:?}");
    }
    let _ = aviary::plan::windows::parse_schedule(text);
    let mut parts = text.splitn(3, '\n');
    let window = PromotionWindow {
        schedule: parts.next().unwrap_or_default().to_string(),
        duration: parts.next().unwrap_or_default().to_string(),
        time_zone: parts.next().map(str::to_string),
    };
    if let Ok(parsed) = ParsedWindow::parse(&window) {
        // The earliest, a present and the latest time the clock can show.
        for second in [-377_705_116_800, 1_800_000_000, 253_402_207_200] {
            let now = jiff::Timestamp::from_second(second).expect("in range");
            let _ = parsed.state(now);
        }
    }
});
