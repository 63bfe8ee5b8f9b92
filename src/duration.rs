//! Human durations for flags and config: `90s`, `15m`, `24h`, `7d`, `250ms`, and sums like `1h30m`.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (use e.g. 250ms, 90s, 15m, 24h, 7d)")]
pub struct ParseDurationError {
    input: String,
    why: &'static str,
}

/// The longest duration any flag or key accepts: ten years. Longer ones are typos, and they
/// would overflow the deadline and timestamp arithmetic they feed (`Instant + d`, Unix seconds
/// minus `d`).
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `90s`, `15m`, `24h`, `7d`, `250ms`, `1h30m` or a bare `0`; at most [`MAX_DURATION`].
pub fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |why| ParseDurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = rest.split_at(unit_len);
        rest = tail;
        let part = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(|| err("too large"))?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(|| err("too large"))?),
            "d" => Duration::from_secs(value.checked_mul(86_400).ok_or_else(|| err("too large"))?),
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
        if total > MAX_DURATION {
            return Err(err("longer than the 3650d maximum"));
        }
    }
    Ok(total)
}

/// Formats a duration compactly for humans (`6d 23h`, `59m 12s`, `850ms`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {s}s"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// clap value parser for duration flags.
pub fn clap_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// serde adapter: durations in config files are strings like `7d`.
pub mod serde_str {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserializes an optional duration string.
    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "s", "10", "10y", "-5s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        // Absurd lengths are refused before they reach any arithmetic.
        assert_eq!(parse_duration("3650d"), Ok(MAX_DURATION));
        for huge in ["3651d", "3650d1s", "9999999999999s", "87601h"] {
            let msg = parse_duration(huge).unwrap_err().to_string();
            assert!(msg.contains("3650d maximum"), "{huge}: {msg}");
        }
        let msg = parse_duration("10y").unwrap_err().to_string();
        assert!(msg.contains("10y") && msg.contains("unknown unit"), "{msg}");
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(
            format_duration(Duration::from_secs(7 * 86_400 + 3600)),
            "7d 1h"
        );
        assert_eq!(format_duration(Duration::from_secs(61)), "1m 1s");
        assert_eq!(format_duration(Duration::from_millis(5)), "5ms");
    }
}
