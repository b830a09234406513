//! Durations as Flagger writes them: `30s`, `1m`, `1m30s`, `500ms`, `2h`.

use std::time::Duration;

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error(
        "duration {0:?} must be a number followed by a unit (ms, s, m, h), for example 30s or 1m"
    )]
    Malformed(String),
    #[error("duration {0:?} is longer than the {1:?} any Aviary duration may be")]
    TooLong(String, Duration),
}

/// No duration Aviary reads may be longer than this; each field has a tighter cap of its own.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest `analysis.interval`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// The longest window a metric's query may cover (`metrics[].interval`).
pub const MAX_METRIC_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The longest a webhook may take (`webhooks[].timeout`); it is also held to the interval.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// The most retries a webhook may ask for.
pub const MAX_WEBHOOK_RETRIES: i32 = 10;
/// The longest a promotion window may stay open: windows recur, and a month covers any.
pub const MAX_WINDOW_LENGTH: Duration = Duration::from_secs(31 * 24 * 3600);

/// A duration as Go (and so Kubernetes' CEL `duration()`) writes it, in whole hours, minutes,
/// seconds or milliseconds: `744h`, `5m`.
pub fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    let unit = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
        .into_iter()
        .find(|(per, _)| millis.is_multiple_of(*per));
    match unit {
        Some((per, name)) => format!("{}{name}", millis / per),
        None => format!("{millis}ms"),
    }
}

/// Parses a Go-style duration made of `<number><unit>` parts.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed(text.to_string());
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(malformed)?;
        if digits == 0 {
            return Err(malformed());
        }
        let too_long = || DurationError::TooLong(text.to_string(), MAX_DURATION);
        let value: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let millis_per_unit: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(malformed()),
        };
        // Checked: a tenant's "18446744073709551615s1s" is an error, not an overflow.
        let part = value
            .checked_mul(millis_per_unit)
            .map(Duration::from_millis)
            .ok_or_else(too_long)?;
        total = total
            .checked_add(part)
            .filter(|sum| *sum <= MAX_DURATION)
            .ok_or_else(too_long)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_durations_are_errors_not_panics() {
        for text in [
            "18446744073709551615s1s",
            "18446744073709551615h",
            "99999999999999999999999s",
            "3000000000h",
            "9000h",
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(
                matches!(error, DurationError::TooLong(..)),
                "{text}: {error}"
            );
        }
        assert_eq!(
            parse_duration("8760h"),
            Ok(Duration::from_secs(8760 * 3600))
        );
    }

    #[test]
    fn reads_single_and_compound_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("m10").is_err());
        assert!(parse_duration("10d").is_err());
    }
}
