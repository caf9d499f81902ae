//! Bucket labels (`2026`, `2026-W49`, `2026-12`, `2026-12-01`, `2026-12-01T05`) and
//! timestamps in messages.

use std::fmt;

use super::civil::{civil_from_days, days_from_civil, days_in_month, iso_week, week_start_day};
use super::{Granularity, DAY_MS, HOUR_MS};

/// Formats a year as 4 digits, or with a sign outside 0000–9999.
pub(super) struct YearFmt(pub(super) i64);

impl fmt::Display for YearFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (0..=9999).contains(&self.0) {
            write!(f, "{:04}", self.0)
        } else {
            write!(f, "{:+05}", self.0)
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.mmm]Z`, for error messages; works for any i64.
pub(super) fn fmt_ts(ts_ms: i64) -> String {
    let (y, m, d) = civil_from_days(ts_ms.div_euclid(DAY_MS));
    let ms_of_day = ts_ms.rem_euclid(DAY_MS);
    let (h, min) = (ms_of_day / HOUR_MS, ms_of_day / 60_000 % 60);
    let (s, ms) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    let year = YearFmt(y);
    if ms == 0 {
        format!("{year}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z")
    } else {
        format!("{year}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
    }
}

/// `YYYY` (4 digits) or a signed `±YYYY…` (4–9 digits), and the rest of the string.
fn split_year(s: &str) -> Option<(i64, &str)> {
    let (negative, signed, body) = match s.as_bytes().first()? {
        b'+' => (false, true, &s[1..]),
        b'-' => (true, true, &s[1..]),
        _ => (false, false, s),
    };
    let n = body.bytes().take_while(u8::is_ascii_digit).count();
    if !(4..=9).contains(&n) || (!signed && n != 4) {
        return None;
    }
    let y: i64 = body[..n].parse().ok()?;
    Some((if negative { -y } else { y }, &body[n..]))
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a @ b'0'..=b'9', c @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(c - b'0')),
        _ => None,
    }
}

/// Parses a bucket label. `None`: not shaped like a label at all (try other formats);
/// `Some(Err)`: label-shaped but naming something that does not exist (month 13, week 53
/// of a 52-week year, ...).
pub(super) fn parse_label(s: &str) -> Option<Result<(Granularity, i64), String>> {
    let (y, rest) = split_year(s)?;
    let b = rest.as_bytes();
    let (g, day, hour) = match b {
        [] => (Granularity::Year, days_from_civil(y, 1, 1), 0),
        [b'-', b'W', w @ ..] => {
            let w = two_digits(w)?;
            let weeks = iso_week(days_from_civil(y, 12, 28)).1; // Dec 28 is in the last week
            if w == 0 || w > weeks {
                return Some(Err(format!(
                    "week {w:02} does not exist: ISO year {} has weeks 01-{weeks:02}",
                    YearFmt(y)
                )));
            }
            let monday = week_start_day(days_from_civil(y, 1, 4)) + 7 * (i64::from(w) - 1);
            (Granularity::Week, monday, 0)
        }
        [b'-', mm @ ..] => {
            let (m, tail) = (two_digits(mm.get(..2)?)?, &mm[2..]);
            if !(1..=12).contains(&m) {
                return Some(Err(format!("month {m:02} is not in 01-12")));
            }
            match tail {
                [] => (Granularity::Month, days_from_civil(y, m, 1), 0),
                [b'-', dd @ ..] => {
                    let (d, tail) = (two_digits(dd.get(..2)?)?, &dd[2..]);
                    let max = days_in_month(y, m);
                    if d == 0 || d > max {
                        return Some(Err(format!("{}-{m:02} has days 01-{max:02}, not {d:02}", YearFmt(y))));
                    }
                    let day = days_from_civil(y, m, d);
                    match tail {
                        [] => (Granularity::Day, day, 0),
                        [b'T' | b't', hh @ ..] => {
                            let h = two_digits(hh)?;
                            if h > 23 {
                                return Some(Err(format!("hour {h:02} is not in 00-23")));
                            }
                            (Granularity::Hour, day, i64::from(h))
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    let start = day.checked_mul(DAY_MS).and_then(|ms| ms.checked_add(hour * HOUR_MS));
    Some(
        start
            .map(|ms| (g, ms))
            .ok_or_else(|| format!("year {} is outside the representable range of epoch milliseconds", YearFmt(y))),
    )
}
