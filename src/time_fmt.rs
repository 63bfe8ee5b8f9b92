//! Time as certgate shows and reads it: RFC 3339 UTC, Unix seconds inside.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-24T10:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Parses an RFC 3339 timestamp into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| format!("invalid RFC 3339 time {s:?}: {e} (e.g. 2026-11-24T10:00:00Z)"))
}

/// The wall clock in Unix seconds. The only place logic may read the clock is its caller.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let t = parse_rfc3339("2026-11-24T10:00:00Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-24T10:00:00Z");
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
