//! Time buckets: the hour/day/week/month/year windows that top-K results are computed over.
//!
//! Everything is UTC and every timestamp is `i64` epoch milliseconds. Weeks are ISO weeks
//! (Monday 00:00 UTC to the next Monday); months and years are calendar months and years.
//!
//! Two different "above" relations matter and are kept apart on purpose:
//!
//! * **containment** ([`Bucket::parent`]): which bucket of some granularity contains a
//!   timestamp. Weeks do not nest in months or years, so this is not a tree.
//! * **rollup lineage** ([`Bucket::children`], [`Bucket::rollup_parents`],
//!   [`Bucket::ancestors`]): which buckets a rollup reads from. Hours feed days; days feed
//!   both weeks and months; months feed years. This *is* exact (every child lies inside its
//!   parent), which is why weeks are built from days and years from months, never from weeks.
//!
//! The calendar arithmetic is done with integer algorithms (no chrono on the hot path) so
//! it is exact for pre-1970 timestamps and never fails; chrono is only used to parse
//! RFC 3339 input in [`Bucket::parse`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod civil;
mod label;
mod range;

pub use civil::{civil_from_days, days_from_civil, days_in_month};
use civil::{day_to_ms, iso_week, week_start_day};
#[cfg(test)]
use label::fmt_ts;
use label::{parse_label, YearFmt};
pub use range::{decompose, RangeError};

/// The hour of the week of an instant, UTC: 0 is Monday 00:00–01:00, 167 Sunday 23:00.
pub fn hour_of_week(ts_ms: i64) -> usize {
    let hour = ts_ms.div_euclid(HOUR_MS);
    let day = hour.div_euclid(24);
    ((day - week_start_day(day)) * 24 + hour.rem_euclid(24)) as usize
}

/// The same instant of the same calendar date a year earlier (29 February: the 28th).
pub fn year_earlier_ms(ts_ms: i64) -> i64 {
    let (y, m, d) = civil_from_days(ts_ms.div_euclid(DAY_MS));
    let d = d.min(days_in_month(y - 1, m));
    day_to_ms(days_from_civil(y - 1, m, d)).saturating_add(ts_ms.rem_euclid(DAY_MS))
}

use crate::{DAY_MS, HOUR_MS};

/// The size of a time bucket.
///
/// The derived order is from finest to coarsest, which is also the order rollups run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// A clock hour, `HH:00:00Z` to the next hour.
    Hour,
    /// A UTC calendar day.
    Day,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Week,
    /// A calendar month.
    Month,
    /// A calendar year.
    Year,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 5] =
        [Granularity::Hour, Granularity::Day, Granularity::Week, Granularity::Month, Granularity::Year];

    /// The lowercase name, as used in serde, URLs and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
            Granularity::Year => "year",
        }
    }

    /// The granularity this one's rollup reads from (`None` for hours, which are built
    /// from raw events). Weeks read days rather than hours so each level reads few inputs.
    pub const fn child(self) -> Option<Granularity> {
        match self {
            Granularity::Hour => None,
            Granularity::Day => Some(Granularity::Hour),
            Granularity::Week | Granularity::Month => Some(Granularity::Day),
            Granularity::Year => Some(Granularity::Month),
        }
    }

    /// The granularities whose rollups read this one directly (the inverse of [`child`]).
    ///
    /// [`child`]: Granularity::child
    pub const fn rollup_parents(self) -> &'static [Granularity] {
        match self {
            Granularity::Hour => &[Granularity::Day],
            Granularity::Day => &[Granularity::Week, Granularity::Month],
            Granularity::Month => &[Granularity::Year],
            Granularity::Week | Granularity::Year => &[],
        }
    }

    /// Whether buckets of this granularity feed, directly or through others, rollups of
    /// `coarser` (hour feeds day, week, month and year; week feeds nothing).
    pub fn feeds(self, coarser: Granularity) -> bool {
        self.rollup_parents().iter().any(|&p| p == coarser || p.feeds(coarser))
    }

    /// "a" or "an", for messages ("an hour", "a day").
    pub const fn article(self) -> &'static str {
        match self {
            Granularity::Hour => "an",
            _ => "a",
        }
    }

    /// Where a bucket of this granularity must start, for error messages.
    const fn boundary(self) -> &'static str {
        match self {
            Granularity::Hour => "an hour boundary (HH:00:00Z)",
            Granularity::Day => "a day boundary (00:00:00Z)",
            Granularity::Week => "a week boundary (a Monday at 00:00:00Z, ISO weeks)",
            Granularity::Month => "a month boundary (the 1st of a month at 00:00:00Z)",
            Granularity::Year => "a year boundary (January 1st at 00:00:00Z)",
        }
    }

    /// An example label, for error messages.
    const fn example(self) -> &'static str {
        match self {
            Granularity::Hour => "2026-11-28T07",
            Granularity::Day => "2026-11-28",
            Granularity::Week => "2026-W48",
            Granularity::Month => "2026-11",
            Granularity::Year => "2026",
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A string that is not the name of a [`Granularity`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown granularity {input:?} (expected hour, day, week, month or year)")]
pub struct ParseGranularityError {
    /// The rejected input.
    pub input: String,
}

impl FromStr for Granularity {
    type Err = ParseGranularityError;

    /// Case-insensitive, so `Day`, `DAY` and `day` all work on a command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Granularity::ALL
            .into_iter()
            .find(|g| g.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseGranularityError { input: s.to_owned() })
    }
}

/// One time window: `[start_ms, end_ms())` at some granularity.
///
/// Build buckets with [`Bucket::containing`], [`Bucket::aligned`] or [`Bucket::parse`] so
/// that `start_ms` is on a boundary. The fields are public for cheap (de)serialisation; a
/// hand-built bucket whose `start_ms` is not aligned behaves like the bucket containing it.
///
/// Arithmetic saturates at the `i64` limits (about ±292 million years) instead of
/// panicking; results are exact for every timestamp short of that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's size.
    pub granularity: Granularity,
    /// Inclusive start, epoch milliseconds UTC.
    pub start_ms: i64,
}

impl Bucket {
    /// The bucket of granularity `g` containing `ts_ms` (the floor of `ts_ms`).
    ///
    /// Uses Euclidean division so that timestamps before 1970 floor downwards too
    /// (plain `/` would round them towards 1970, into the wrong bucket).
    pub fn containing(g: Granularity, ts_ms: i64) -> Bucket {
        let day = ts_ms.div_euclid(DAY_MS);
        let start_ms = match g {
            Granularity::Hour => ts_ms.saturating_sub(ts_ms.rem_euclid(HOUR_MS)),
            Granularity::Day => day_to_ms(day),
            Granularity::Week => day_to_ms(week_start_day(day)),
            Granularity::Month => {
                let (y, m, _) = civil_from_days(day);
                day_to_ms(days_from_civil(y, m, 1))
            }
            Granularity::Year => {
                let (y, _, _) = civil_from_days(day);
                day_to_ms(days_from_civil(y, 1, 1))
            }
        };
        Bucket { granularity: g, start_ms }
    }

    /// The bucket of granularity `g` starting exactly at `start_ms`, or `None` if
    /// `start_ms` is not on a `g` boundary.
    pub fn aligned(g: Granularity, start_ms: i64) -> Option<Bucket> {
        Bucket::is_aligned(g, start_ms).then_some(Bucket { granularity: g, start_ms })
    }

    /// Whether `ts_ms` is the start of a `g` bucket. Same as the free function [`is_aligned`].
    pub fn is_aligned(g: Granularity, ts_ms: i64) -> bool {
        // Checked without going through `containing`, whose saturation at i64::MIN would
        // otherwise make that one unaligned value look aligned.
        if g == Granularity::Hour {
            return ts_ms.rem_euclid(HOUR_MS) == 0;
        }
        if ts_ms.rem_euclid(DAY_MS) != 0 {
            return false;
        }
        let day = ts_ms.div_euclid(DAY_MS);
        match g {
            Granularity::Hour | Granularity::Day => true,
            Granularity::Week => week_start_day(day) == day,
            Granularity::Month => civil_from_days(day).2 == 1,
            Granularity::Year => {
                let (_, m, d) = civil_from_days(day);
                m == 1 && d == 1
            }
        }
    }

    /// This bucket with `start_ms` moved to its boundary (a no-op for well-built buckets).
    fn normalized(self) -> Bucket {
        Bucket::containing(self.granularity, self.start_ms)
    }

    /// Exclusive end, epoch milliseconds: the start of [`next`](Bucket::next).
    pub fn end_ms(self) -> i64 {
        let b = self.normalized();
        let day = b.start_ms.div_euclid(DAY_MS);
        match b.granularity {
            Granularity::Hour => b.start_ms.saturating_add(HOUR_MS),
            Granularity::Day => day_to_ms(day + 1),
            Granularity::Week => day_to_ms(day + 7),
            Granularity::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                day_to_ms(days_from_civil(ny, nm, 1))
            }
            Granularity::Year => {
                let (y, _, _) = civil_from_days(day);
                day_to_ms(days_from_civil(y + 1, 1, 1))
            }
        }
    }

    /// Length in milliseconds (months and years vary).
    pub fn duration_ms(self) -> i64 {
        self.end_ms() - self.normalized().start_ms
    }

    /// Whether `ts_ms` falls inside `[start_ms, end_ms())`.
    pub fn contains(self, ts_ms: i64) -> bool {
        let b = self.normalized();
        b.start_ms <= ts_ms && ts_ms < b.end_ms()
    }

    /// The following bucket of the same granularity.
    pub fn next(self) -> Bucket {
        Bucket { granularity: self.granularity, start_ms: self.end_ms() }
    }

    /// The preceding bucket of the same granularity.
    pub fn prev(self) -> Bucket {
        let b = self.normalized();
        Bucket::containing(b.granularity, b.start_ms.saturating_sub(1))
    }

    /// The same bucket a year earlier (a baseline for "same period last year"): the same
    /// hour or day of the same date (29 February: the 28th), the same month or year, the
    /// same ISO week number (week 53: week 52 of a year that has no 53rd).
    pub fn year_earlier(self) -> Bucket {
        let b = self.normalized();
        if b.granularity != Granularity::Week {
            return Bucket::containing(b.granularity, year_earlier_ms(b.start_ms));
        }
        let (year, week) = iso_week(b.start_ms.div_euclid(DAY_MS));
        // Week 1 holds 4 January; 28 December is always in a year's last week.
        let first_monday = week_start_day(days_from_civil(year - 1, 1, 4));
        let weeks = iso_week(days_from_civil(year - 1, 12, 28)).1;
        Bucket {
            granularity: Granularity::Week,
            start_ms: day_to_ms(first_monday + 7 * (i64::from(week.min(weeks)) - 1)),
        }
    }

    /// The `g` bucket containing this bucket's start.
    ///
    /// For a coarser `g` that this granularity nests in (anything above an hour, day above
    /// a day, year above a month) that bucket contains the whole of `self`. A week is not
    /// contained in any one month or year, so `week.parent(Month)` is only the month of
    /// its Monday; rollups use [`rollup_parents`](Bucket::rollup_parents) instead.
    pub fn parent(self, g: Granularity) -> Bucket {
        Bucket::containing(g, self.start_ms)
    }

    /// The buckets this one's rollup is built from, in time order; they partition `self`
    /// exactly. Day -> its 24 hours, week -> its 7 days, month -> its 28–31 days,
    /// year -> its 12 months, hour -> none (hours are built from raw events).
    pub fn children(self) -> Vec<Bucket> {
        let b = self.normalized();
        let Some(child) = b.granularity.child() else {
            return Vec::new();
        };
        let end = b.end_ms();
        let mut out = Vec::with_capacity(31);
        let mut c = Bucket::containing(child, b.start_ms);
        while c.start_ms < end {
            out.push(c);
            let n = c.next();
            if n.start_ms <= c.start_ms {
                break; // saturated at i64::MAX; cannot happen for real timestamps
            }
            c = n;
        }
        out
    }

    /// The buckets whose rollups read this one directly (inverse of
    /// [`children`](Bucket::children)): hour -> its day; day -> its week and its month;
    /// month -> its year; week and year -> none. When this bucket changes, these are the
    /// ones to rebuild next.
    pub fn rollup_parents(self) -> Vec<Bucket> {
        self.granularity.rollup_parents().iter().map(|&g| self.parent(g)).collect()
    }

    /// Every bucket that depends on this one through the rollup lineage, transitively,
    /// finest first: hour -> day, week, month, year; day -> week, month, year;
    /// month -> year. Rebuilding these in order refreshes everything above a dirty bucket.
    pub fn ancestors(self) -> Vec<Bucket> {
        let mut out: Vec<Bucket> = Vec::new();
        let mut todo = self.rollup_parents();
        while let Some(b) = todo.pop() {
            if !out.contains(&b) {
                todo.extend(b.rollup_parents());
                out.push(b);
            }
        }
        out.sort_by_key(|b| b.granularity);
        out
    }

    /// Parses a bucket of granularity `g` from its label (`2026-11-28T07`, `2026-11-28`,
    /// `2026-W48`, `2026-11`, `2026`; see [`Display`](fmt::Display)), or from the start of
    /// the bucket written as a date `YYYY-MM-DD` or an RFC 3339 timestamp
    /// (`2026-11-28T07:00:00Z`; without an offset it is taken as UTC).
    ///
    /// A date or timestamp must be exactly on a `g` boundary: silently flooring
    /// `2026-11-28` to its week would hide a likely mistake, so it is an error that names
    /// the expected boundary and the bucket that does contain the instant.
    pub fn parse(g: Granularity, s: &str) -> Result<Bucket, ParseBucketError> {
        let invalid = |reason: String| ParseBucketError::Invalid { granularity: g, input: s.to_owned(), reason };
        match parse_label(s) {
            Some(Ok((lg, start_ms))) if lg == g => return Ok(Bucket { granularity: g, start_ms }),
            // A plain date is also accepted as "the instant this bucket starts".
            Some(Ok((Granularity::Day, start_ms))) => return check_aligned(g, s, start_ms),
            Some(Ok((lg, _))) => {
                return Err(invalid(format!(
                    "this is {} {lg} label; {} {g} bucket is written like {:?}",
                    lg.article(),
                    g.article(),
                    g.example()
                )))
            }
            Some(Err(reason)) => return Err(invalid(reason)),
            None => {}
        }
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return check_aligned_nanos(g, s, dt.timestamp_millis(), dt.timestamp_subsec_nanos());
        }
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
            let dt = dt.and_utc();
            return check_aligned_nanos(g, s, dt.timestamp_millis(), dt.timestamp_subsec_nanos());
        }
        Err(invalid(format!(
            "expected a label like {:?}, a date YYYY-MM-DD, or an RFC 3339 timestamp \
             such as 2026-11-28T07:00:00Z",
            g.example()
        )))
    }
}

/// Whether `ts_ms` is the start of a `g` bucket.
pub fn is_aligned(g: Granularity, ts_ms: i64) -> bool {
    Bucket::is_aligned(g, ts_ms)
}

fn check_aligned(g: Granularity, s: &str, ts_ms: i64) -> Result<Bucket, ParseBucketError> {
    Bucket::aligned(g, ts_ms).ok_or_else(|| ParseBucketError::NotAligned { granularity: g, input: s.to_owned(), ts_ms })
}

fn check_aligned_nanos(g: Granularity, s: &str, ts_ms: i64, subsec_nanos: u32) -> Result<Bucket, ParseBucketError> {
    if subsec_nanos.rem_euclid(1_000_000) != 0 {
        // Truncating to milliseconds could make a misaligned instant look aligned.
        return Err(ParseBucketError::NotAligned { granularity: g, input: s.to_owned(), ts_ms });
    }
    check_aligned(g, s, ts_ms)
}

/// Labels: `2026-11-28T07`, `2026-11-28`, `2026-W48` (ISO week-numbering year), `2026-11`,
/// `2026`. Years outside 0000–9999 are written with a sign (`+10000`, `-0001`), as in
/// ISO 8601's expanded form, so that labels always parse back.
impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.normalized();
        let day = b.start_ms.div_euclid(DAY_MS);
        let (y, m, d) = civil_from_days(day);
        match b.granularity {
            Granularity::Hour => {
                let h = b.start_ms.rem_euclid(DAY_MS) / HOUR_MS;
                write!(f, "{}-{m:02}-{d:02}T{h:02}", YearFmt(y))
            }
            Granularity::Day => write!(f, "{}-{m:02}-{d:02}", YearFmt(y)),
            Granularity::Week => {
                let (iy, w) = iso_week(day);
                write!(f, "{}-W{w:02}", YearFmt(iy))
            }
            Granularity::Month => write!(f, "{}-{m:02}", YearFmt(y)),
            Granularity::Year => write!(f, "{}", YearFmt(y)),
        }
    }
}

/// Parses a bare label, inferring the granularity from its shape (`2026` is a year,
/// `2026-11` a month, `2026-W48` a week, `2026-11-28` a day, `2026-11-28T07` an hour).
impl FromStr for Bucket {
    type Err = ParseBucketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_label(s) {
            Some(Ok((granularity, start_ms))) => Ok(Bucket { granularity, start_ms }),
            Some(Err(reason)) => Err(ParseBucketError::BadLabel { input: s.to_owned(), reason }),
            None => Err(ParseBucketError::BadLabel {
                input: s.to_owned(),
                reason: "expected 2026, 2026-11, 2026-W48, 2026-11-28 or 2026-11-28T07".into(),
            }),
        }
    }
}

/// Why [`Bucket::parse`] (or `str::parse::<Bucket>`) rejected its input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseBucketError {
    /// Not a recognisable label, date or timestamp, or one naming a day that does not exist.
    #[error("invalid {granularity} bucket {input:?}: {reason}")]
    Invalid {
        /// The granularity that was asked for.
        granularity: Granularity,
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A valid instant that is not where a bucket of this granularity starts.
    #[error(
        "{input:?} is not on {} (the {granularity} bucket containing it is {})",
        granularity.boundary(),
        Bucket::containing(*granularity, *ts_ms)
    )]
    NotAligned {
        /// The granularity that was asked for.
        granularity: Granularity,
        /// The rejected input.
        input: String,
        /// The instant it denotes (truncated to milliseconds).
        ts_ms: i64,
    },
    /// `str::parse::<Bucket>` got something that is not a bucket label.
    #[error("invalid bucket label {input:?}: {reason}")]
    BadLabel {
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
#[path = "time_tests.rs"]
mod tests;
