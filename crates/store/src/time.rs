//! Timestamps: the store keeps unix epoch milliseconds (`i64`) in BIGINT columns because that is
//! the one representation SQLite and PostgreSQL agree on; these helpers convert for display.

use chrono::{DateTime, SecondsFormat, Utc};

/// The current wall-clock time in unix epoch milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Unix epoch milliseconds as a UTC date-time, `None` when out of chrono's range.
pub fn ms_to_datetime(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

/// Unix epoch milliseconds as RFC 3339 with millisecond precision and a `Z` suffix
/// (e.g. `2026-11-24T02:15:01.123Z`). Out-of-range values give the Unix epoch string so the
/// API never fails on a corrupt timestamp.
pub fn ms_to_rfc3339(ms: i64) -> String {
    ms_to_datetime(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Like [`ms_to_rfc3339`] for optional timestamps (e.g. `ended_at_ms`).
pub fn opt_ms_to_rfc3339(ms: Option<i64>) -> Option<String> {
    ms.map(ms_to_rfc3339)
}

/// Parses an RFC 3339 date-time (any offset) into unix epoch milliseconds; `None` if malformed.
/// Used for API date filters such as `start_date`.
pub fn rfc3339_to_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc).timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_milliseconds() {
        let ms = 1_795_000_000_123;
        let s = ms_to_rfc3339(ms);
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(rfc3339_to_ms(&s), Some(ms));
    }

    #[test]
    fn parses_offsets_and_rejects_garbage() {
        assert_eq!(rfc3339_to_ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(rfc3339_to_ms("yesterday"), None);
        assert_eq!(ms_to_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(opt_ms_to_rfc3339(None), None);
    }
}
