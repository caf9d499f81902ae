//! Ranges into the fewest aligned buckets.

use thiserror::Error;

use super::civil::{civil_from_days, days_from_civil};
use super::label::fmt_ts;
use super::{is_aligned, Bucket, Granularity, DAY_MS, HOUR_MS};

/// Why [`decompose`] rejected a range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RangeError {
    /// `from` is not at the start of an hour.
    #[error("range start {} is not on an hour boundary", fmt_ts(*from_ms))]
    StartNotAligned {
        /// The rejected start, epoch ms.
        from_ms: i64,
    },
    /// `to` is not at the start of an hour.
    #[error("range end {} is not on an hour boundary", fmt_ts(*to_ms))]
    EndNotAligned {
        /// The rejected end, epoch ms.
        to_ms: i64,
    },
    /// `from >= to`.
    #[error(
        "range is empty: from must be before to (from {}, to {})",
        fmt_ts(*from_ms),
        fmt_ts(*to_ms)
    )]
    Empty {
        /// The range start, epoch ms.
        from_ms: i64,
        /// The range end, epoch ms.
        to_ms: i64,
    },
}

/// Splits the hour-aligned range `[from_ms, to_ms)` into the fewest aligned buckets
/// (years, months, weeks, days, hours) whose disjoint union is exactly the range, sorted
/// by start. A query over the range then merges that many precomputed top-K lists.
///
/// Greedy "largest first" is not minimal because weeks and months do not nest: Monday
/// 2026-01-26 to Monday 2026-03-02 is 5 weeks, whereas taking February as a month forces
/// 6 + 1 + 1 = 8 pieces. So:
///
/// * Partial days at either end can only be hours (every larger piece is a whole day).
/// * Every calendar year lying inside the range is in every minimal cover: without it, at
///   most two weeks straddle its edges and at least 12 more pieces lie inside it, and
///   replacing those by the year plus at most 12 single days is strictly smaller.
/// * What is left are at most two stretches of whole days, each shorter than two years,
///   which are covered exactly by a shortest-path search over day boundaries with
///   month, week and day steps (about 730 positions at most).
pub fn decompose(from_ms: i64, to_ms: i64) -> Result<Vec<Bucket>, RangeError> {
    if !is_aligned(Granularity::Hour, from_ms) {
        return Err(RangeError::StartNotAligned { from_ms });
    }
    if !is_aligned(Granularity::Hour, to_ms) {
        return Err(RangeError::EndNotAligned { to_ms });
    }
    if from_ms >= to_ms {
        return Err(RangeError::Empty { from_ms, to_ms });
    }
    let mut out = Vec::new();
    let first_day = from_ms.div_euclid(DAY_MS) + i64::from(from_ms.rem_euclid(DAY_MS) != 0);
    let last_day = to_ms.div_euclid(DAY_MS);
    if first_day >= last_day {
        // No whole day inside: only hours fit.
        push_hours(from_ms, to_ms, &mut out);
        return Ok(out);
    }
    // first_day < last_day, so both day starts lie within [from_ms, to_ms]: no overflow.
    push_hours(from_ms, first_day * DAY_MS, &mut out);
    cover_days(first_day, last_day, &mut out);
    push_hours(last_day * DAY_MS, to_ms, &mut out);
    Ok(out)
}

fn push_hours(from_ms: i64, to_ms: i64, out: &mut Vec<Bucket>) {
    let mut t = from_ms;
    while t < to_ms {
        out.push(Bucket { granularity: Granularity::Hour, start_ms: t });
        t += HOUR_MS; // t + HOUR_MS <= to_ms since both are hour-aligned
    }
}

/// Minimal cover of the whole days `[d0, d1)`: all complete years (always optimal, see
/// [`decompose`]), and an exact search on the at most two stretches around them.
fn cover_days(d0: i64, d1: i64, out: &mut Vec<Bucket>) {
    let (y0, m0, dd0) = civil_from_days(d0);
    let first_year = if (m0, dd0) == (1, 1) { y0 } else { y0 + 1 };
    let (last_year, _, _) = civil_from_days(d1); // its January 1st is <= d1
    if first_year >= last_year {
        cover_days_exact(d0, d1, out);
        return;
    }
    cover_days_exact(d0, days_from_civil(first_year, 1, 1), out);
    for y in first_year..last_year {
        out.push(Bucket { granularity: Granularity::Year, start_ms: days_from_civil(y, 1, 1) * DAY_MS });
    }
    cover_days_exact(days_from_civil(last_year, 1, 1), d1, out);
}

/// Shortest path over the day boundaries of `[d0, d1)` where each step is one aligned
/// bucket (year, month, week or day) ending inside the range. Only called on stretches
/// shorter than two years, so it is a few hundred positions.
fn cover_days_exact(d0: i64, d1: i64, out: &mut Vec<Bucket>) {
    if d0 >= d1 {
        return;
    }
    let Ok(n) = usize::try_from(d1 - d0) else {
        return;
    };
    // best[i] = (pieces to reach day d0 + i, previous position, piece ending here)
    let mut best = vec![(u32::MAX, 0usize, Granularity::Day); n + 1];
    best[0].0 = 0;
    for i in 0..n {
        let cost = best[i].0;
        if cost == u32::MAX {
            continue; // unreachable position (cannot happen: day steps reach every day)
        }
        let start_ms = (d0 + i as i64) * DAY_MS;
        // Coarser first: on ties the earliest-reached, i.e. larger, last piece wins.
        for g in [Granularity::Year, Granularity::Month, Granularity::Week, Granularity::Day] {
            if !is_aligned(g, start_ms) {
                continue;
            }
            let len = (Bucket { granularity: g, start_ms }.end_ms() - start_ms) / DAY_MS;
            let j = i + len as usize;
            if j <= n && cost + 1 < best[j].0 {
                best[j] = (cost + 1, i, g);
            }
        }
    }
    let first = out.len();
    let mut j = n;
    while j > 0 {
        let (_, i, g) = best[j];
        out.push(Bucket { granularity: g, start_ms: (d0 + i as i64) * DAY_MS });
        j = i;
    }
    out[first..].reverse();
}
