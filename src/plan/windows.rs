//! Promotion windows: whether `now` falls inside one, and if not, when the next one opens.
//! Pure: the time zone database is compiled in, and `now` is given.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use jiff::Timestamp;

use crate::api::PromotionWindow;

/// Where `now` stands relative to a set of windows.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowState {
    Open,
    /// Closed; the next opening, if any window ever opens again.
    Closed {
        opens_at: Option<Timestamp>,
    },
}

/// A window that cannot be read, with the reason (validation reports these with field paths).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    #[error("schedule {0:?} is not a cron expression: {1}")]
    Schedule(String, String),
    #[error("duration {0:?}: {1}")]
    Duration(String, String),
    #[error("timeZone {0:?} is not a known IANA time zone")]
    TimeZone(String),
}

pub use crate::api::MAX_WINDOW_LENGTH as MAX_LENGTH;

/// A window read and checked once.
#[derive(Clone)]
pub struct ParsedWindow {
    /// The schedule as written, for messages.
    text: String,
    schedule: cron::Schedule,
    length: chrono::Duration,
    zone: jiff::tz::TimeZone,
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// Standard cron numbers days of the week 0-7 from Sunday; the cron crate counts 1-7 from
/// Sunday. Numbers become names so `1-5` keeps meaning Monday to Friday.
fn named_days(field: &str) -> Result<String, String> {
    let name = |number: &str| -> Result<String, String> {
        match number.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(DAYS[n % 7].to_string()),
            Ok(n) => Err(format!("day of week {n} is not between 0 and 7")),
            Err(_) => Ok(number.to_string()),
        }
    };
    let mut parts = Vec::new();
    for part in field.split(',') {
        let (base, step) = match part.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (part, None),
        };
        let base = base
            .split('-')
            .map(name)
            .collect::<Result<Vec<_>, _>>()?
            .join("-");
        parts.push(match step {
            Some(step) => format!("{base}/{step}"),
            None => base,
        });
    }
    Ok(parts.join(","))
}

/// Reads a cron expression with 5 fields (standard: minute first, days of the week 0-7 from
/// Sunday) or 6 to 7 (the cron crate's: seconds first, days 1-7 from Sunday).
pub fn parse_schedule(text: &str) -> Result<cron::Schedule, WindowError> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let full = if fields.len() == 5 {
        let days = named_days(fields[4])
            .map_err(|reason| WindowError::Schedule(text.to_string(), reason))?;
        format!("0 {} {days}", fields[..4].join(" "))
    } else {
        text.to_string()
    };
    cron::Schedule::from_str(&full)
        .map_err(|error| WindowError::Schedule(text.to_string(), error.to_string()))
}

impl ParsedWindow {
    pub fn parse(window: &PromotionWindow) -> Result<ParsedWindow, WindowError> {
        let schedule = parse_schedule(&window.schedule)?;
        let length = crate::api::parse_duration(&window.duration)
            .map_err(|error| WindowError::Duration(window.duration.clone(), error.to_string()))?;
        if length > MAX_LENGTH {
            return Err(WindowError::Duration(
                window.duration.clone(),
                format!("a window may stay open for {MAX_LENGTH:?} at most"),
            ));
        }
        if length.is_zero() {
            return Err(WindowError::Duration(
                window.duration.clone(),
                "a window must stay open for some time".into(),
            ));
        }
        let zone = match window.time_zone.as_deref() {
            None | Some("UTC") => jiff::tz::TimeZone::UTC,
            Some(name) => jiff::tz::TimeZone::get(name)
                .map_err(|_| WindowError::TimeZone(name.to_string()))?,
        };
        Ok(ParsedWindow {
            text: window.schedule.clone(),
            schedule,
            length: chrono::Duration::from_std(length)
                .map_err(|e| WindowError::Duration(window.duration.clone(), e.to_string()))?,
            zone,
        })
    }

    /// The zone's offset at `at`. The schedule is read in the offset in force at `now`, so a
    /// window that crosses a daylight-saving change is off by that change.
    fn local(&self, at: Timestamp) -> DateTime<FixedOffset> {
        let seconds = self.zone.to_offset(at).seconds();
        let offset = FixedOffset::east_opt(seconds)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
        let utc = Utc
            .timestamp_opt(at.as_second(), at.subsec_nanosecond().max(0) as u32)
            .single()
            .unwrap_or_default();
        utc.with_timezone(&offset)
    }

    /// Open at `now` (a start within the last `duration`), or the next start after `now`.
    pub fn state(&self, now: Timestamp) -> WindowState {
        let local = self.local(now);
        let earliest = local - self.length;
        if let Some(start) = self.schedule.after(&earliest).next() {
            if start <= local {
                return WindowState::Open;
            }
        }
        let opens_at = self
            .schedule
            .after(&local)
            .next()
            .and_then(|start| Timestamp::from_second(start.timestamp()).ok());
        WindowState::Closed { opens_at }
    }
}

/// Open when any window is open (or none is declared); otherwise the earliest next opening.
pub fn state(windows: &[ParsedWindow], now: Timestamp) -> WindowState {
    if windows.is_empty() {
        return WindowState::Open;
    }
    let mut earliest: Option<Timestamp> = None;
    for window in windows {
        match window.state(now) {
            WindowState::Open => return WindowState::Open,
            WindowState::Closed { opens_at } => {
                earliest = match (earliest, opens_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }
    WindowState::Closed { opens_at: earliest }
}

/// Every promotion window read; each that does not read is an error at its field.
pub(super) fn promotion_windows(
    declared: &[PromotionWindow],
    findings: &mut super::Findings,
) -> Vec<ParsedWindow> {
    let mut read = Vec::new();
    for (index, window) in declared.iter().enumerate() {
        match ParsedWindow::parse(window) {
            Ok(parsed) => read.push(parsed),
            Err(error) => {
                let field = match error {
                    WindowError::Schedule(..) => "schedule",
                    WindowError::Duration(..) => "duration",
                    WindowError::TimeZone(..) => "timeZone",
                };
                findings.error(
                    &format!("spec.analysis.promotionWindows[{index}].{field}"),
                    error.to_string(),
                );
            }
        }
    }
    read
}

impl std::fmt::Debug for ParsedWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParsedWindow({:?}, {})", self.text, self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(schedule: &str, duration: &str, zone: Option<&str>) -> PromotionWindow {
        PromotionWindow {
            schedule: schedule.into(),
            duration: duration.into(),
            time_zone: zone.map(Into::into),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The windows read as the plan reads them, then asked about `now`.
    fn state(windows: &[PromotionWindow], now: Timestamp) -> Result<WindowState, WindowError> {
        let parsed = windows
            .iter()
            .map(ParsedWindow::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(super::state(&parsed, now))
    }

    #[test]
    fn a_weekday_office_window_in_berlin() {
        // 09:00-17:00 Berlin on weekdays; in November Berlin is UTC+1.
        let windows = [window("0 9 * * Mon-Fri", "8h", Some("Europe/Berlin"))];
        // Friday 2026-11-27 07:59 UTC is 08:59 in Berlin: closed, opens at 08:00 UTC.
        assert_eq!(
            state(&windows, at("2026-11-27T07:59:00Z")).unwrap(),
            WindowState::Closed {
                opens_at: Some(at("2026-11-27T08:00:00Z"))
            }
        );
        assert_eq!(
            state(&windows, at("2026-11-27T08:00:00Z")).unwrap(),
            WindowState::Open
        );
        assert_eq!(
            state(&windows, at("2026-11-27T15:59:59Z")).unwrap(),
            WindowState::Open
        );
        // Friday 17:00 Berlin: closed until Monday 09:00 Berlin.
        assert_eq!(
            state(&windows, at("2026-11-27T16:00:01Z")).unwrap(),
            WindowState::Closed {
                opens_at: Some(at("2026-11-30T08:00:00Z"))
            }
        );
    }

    #[test]
    fn any_open_window_opens_and_the_earliest_next_start_is_reported() {
        let windows = [
            window("0 0 22 * * *", "1h", None),
            window("0 30 12 * * *", "10m", None),
        ];
        assert_eq!(
            state(&windows, at("2026-11-27T12:35:00Z")).unwrap(),
            WindowState::Open
        );
        assert_eq!(
            state(&windows, at("2026-11-27T13:00:00Z")).unwrap(),
            WindowState::Closed {
                opens_at: Some(at("2026-11-27T22:00:00Z"))
            }
        );
    }

    #[test]
    fn standard_numeric_weekdays_keep_their_meaning() {
        // 1-5 is Monday to Friday in standard cron; 2026-11-29 is a Sunday.
        let weekdays = [window("0 9 * * 1-5", "8h", None)];
        assert_eq!(
            state(&weekdays, at("2026-11-29T10:00:00Z")).unwrap(),
            WindowState::Closed {
                opens_at: Some(at("2026-11-30T09:00:00Z"))
            }
        );
        let sundays = [
            window("0 9 * * 0", "8h", None),
            window("0 9 * * 7", "8h", None),
        ];
        assert_eq!(
            state(&sundays[..1], at("2026-11-29T10:00:00Z")).unwrap(),
            WindowState::Open
        );
        assert_eq!(
            state(&sundays[1..], at("2026-11-29T10:00:00Z")).unwrap(),
            WindowState::Open
        );
        assert!(state(
            &[window("0 9 * * 8", "1h", None)],
            at("2026-11-29T10:00:00Z")
        )
        .is_err());
    }

    #[test]
    fn unreadable_windows_say_what_is_wrong() {
        let bad = |w: PromotionWindow| state(&[w], at("2026-11-27T00:00:00Z")).unwrap_err();
        assert!(matches!(
            bad(window("61 * * * *", "1h", None)),
            WindowError::Schedule(..)
        ));
        assert!(matches!(
            bad(window("0 9 * * *", "soon", None)),
            WindowError::Duration(..)
        ));
        assert!(matches!(
            bad(window("0 9 * * *", "1h", Some("Mars/Olympus"))),
            WindowError::TimeZone(..)
        ));
    }
}
