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
        let present = jiff::Timestamp::from_second(1_800_000_000).expect("in range");
        for now in [jiff::Timestamp::MIN, present, jiff::Timestamp::MAX] {
            let _ = parsed.state(now);
        }
    }
});
