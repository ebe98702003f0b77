//! Wall-clock time, as every part of the server reads it, and the duration syntax of its
//! settings.
//!
//! One source of "now" keeps timestamps comparable across modules: inventory deadlines,
//! waiting-room places, channel publications and scans are all unix milliseconds from
//! [`now_ms`]; token claims are unix seconds from [`now_secs`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Current unix time in milliseconds (0 if the clock reads before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Current unix time in seconds (0 if the clock reads before 1970).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Parses a human duration such as `25s`, `500ms` or `10m`: the value parser of every
/// duration setting.
pub fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_read_the_same_clock() {
        let (ms, secs) = (now_ms(), now_secs());
        assert!(secs.abs_diff(ms / 1000) <= 1);
        assert!(ms > 1_700_000_000_000, "the clock reads after 2023");
    }

    #[test]
    fn durations_take_their_human_forms() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("soon").is_err());
    }
}
