//! Wall-clock time as the project stores and shows it: whole seconds since the Unix epoch, or
//! nanoseconds where the seeds' time format needs them (`2020-07-16T14:56:10.276007415Z`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

/// `ns` nanoseconds after the epoch in RFC 3339 with nanoseconds, UTC:
/// `2020-07-16T14:56:10.276007415Z`.
pub fn rfc3339_nanos(ns: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_nanos(t).to_string()
}

/// The nanoseconds after the epoch of an RFC 3339 time, if it is one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(text).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_time_format_round_trips() {
        let ns = 1_594_911_370_276_007_415;
        assert_eq!(rfc3339_nanos(ns), "2020-07-16T14:56:10.276007415Z");
        assert_eq!(parse_rfc3339("2020-07-16T14:56:10.276007415Z"), Some(ns));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
