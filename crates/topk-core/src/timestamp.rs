//! Timestamps: RFC 3339 strings and epoch milliseconds, all normalised to UTC epoch ms.
//!
//! The common shape `YYYY-MM-DDTHH:MM:SS[.fff]Z` is parsed by hand because it is on the
//! ingest hot path; anything else RFC 3339 allows goes through chrono.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::time::{days_from_civil, days_in_month};

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
}

/// Fast path for `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`; `None` means "try the general parser".
fn parse_fast(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' || !matches!(s[s.len() - 1], b'Z' | b'z') {
        return None;
    }
    let year = i64::from(digits(&s[0..4])?);
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let (hour, min, sec) = (digits(&s[11..13])?, digits(&s[14..16])?, digits(&s[17..19])?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    let millis = match frac {
        [] => 0,
        [b'.', rest @ ..] if !rest.is_empty() && rest.len() <= 9 => {
            let mut ms = 0;
            for i in 0..3 {
                ms = ms * 10 + rest.get(i).map_or(Some(0), |c| digits(&[*c]))?;
            }
            digits(rest)?; // the digits past milliseconds must still be digits
            ms
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + i64::from(hour)) * 60 + i64::from(min)) * 60_000 + i64::from(sec) * 1000 + i64::from(millis))
}

/// Parses an RFC 3339 timestamp (any offset) into UTC epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    if let Some(ms) = parse_fast(s.as_bytes()) {
        return Ok(ms);
    }
    DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()).map_err(|e| {
        format!("{s:?} is not an RFC 3339 timestamp ({e}); expected e.g. 2026-11-28T07:36:00Z or epoch milliseconds")
    })
}

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision.
pub fn format_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms}ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fast_path_agrees_with_chrono_on_examples() {
        for s in [
            "2026-11-28T07:36:00Z",
            "2026-11-28T07:36:00.5Z",
            "2026-11-28T07:36:00.123456789Z",
            "2000-01-01T00:00:00Z",
            "2028-02-29T23:59:59.999Z",
            "1969-12-31T23:59:59.999Z",
        ] {
            let want = DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
            assert_eq!(parse_fast(s.as_bytes()), Some(want), "{s}");
        }
    }

    #[test]
    fn offsets_and_errors() {
        assert_eq!(parse_rfc3339("2026-11-28T08:36:00+01:00").unwrap(), parse_rfc3339("2026-11-28T07:36:00Z").unwrap());
        for bad in ["2026-02-30T00:00:00Z", "2026-11-28", "yesterday", "2026-11-28T24:00:00Z", ""] {
            let err = parse_rfc3339(bad).unwrap_err();
            assert!(err.contains("not an RFC 3339 timestamp"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(ms in -2_000_000_000_000i64..8_000_000_000_000i64) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ms)).unwrap(), ms);
        }
    }
}
