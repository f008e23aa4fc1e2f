//! Durations as people write them in flags and probe URLs: `500ms`, `5s`, `10m`, `1h`, or bare seconds.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a duration: use a number with ms, s, m or h (for example 5s or 500ms)")]
pub struct DurationError(pub String);

pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| bad())
}

/// Seconds with one decimal, for log lines and probe bodies.
pub fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// Whole milliseconds, for log fields and files (`next_delay_ms`, `duration_ms`).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Seconds with one decimal, rounded up: a time past a limit never reads as the limit itself.
pub fn seconds_up(duration: Duration) -> String {
    format!("{:.1}s", (duration.as_secs_f64() * 10.0).ceil() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "s", "5 days", "-1s", "5x", "1e3", "..s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn formats_seconds() {
        assert_eq!(seconds(Duration::from_millis(1234)), "1.2s");
    }

    #[test]
    fn a_time_past_a_limit_rounds_up() {
        assert_eq!(seconds(Duration::from_millis(15_040)), "15.0s");
        assert_eq!(seconds_up(Duration::from_millis(15_040)), "15.1s");
        assert_eq!(seconds_up(Duration::from_secs(31)), "31.0s");
    }
}
