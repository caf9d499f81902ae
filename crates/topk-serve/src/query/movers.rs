//! Movers: the products whose sales changed the most between a period and its baseline
//! (the previous period, the same one a year earlier, or any range), up or down, by
//! absolute or relative change.
//!
//! Each side sums every product of its exact buckets (the bottom of a list can move as
//! much as its top, so no stored list is deep enough) and adds the speed layer's rows of
//! its approximate buckets, where a product's count carries the row's error, or, for a
//! product the sketch does not list, the bucket's unlisted bound. A change then carries
//! the sum of its two counts' bounds, and a row is certain only while the lowest change it
//! can have is above the highest any product ranked after it (or listed nowhere) can have.
//! Where nothing bounds a count — speed-layer revenue, a bucket waiting for a re-roll, a
//! bucket without data — no row is called certain, and the notes say why.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use topk_core::time::Bucket;
use topk_core::timestamp::format_rfc3339;
use topk_store::{By, ServingStore, StoreError};
use utoipa::ToSchema;

use super::{
    names, rank_period, ranks_in, span, value, BucketState, Period, QueryError, Rules, Source, MAX_K, WHOLE_SUM_ROWS,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    /// 1 for gains, -1 for drops: a change times this is how far it moved the asked way.
    pub fn sign(self) -> i64 {
        match self {
            Direction::Up => 1,
            Direction::Down => -1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Absolute,
    Relative,
}

#[derive(Debug, Clone)]
pub struct MoversRequest {
    pub period: Vec<Bucket>,
    pub baseline: Vec<Bucket>,
    pub k: usize,
    pub by: By,
    pub direction: Direction,
    pub change: Change,
    /// A product is ranked only if it sold at least this many in the period or the
    /// baseline (absolute change), or in the baseline (relative change).
    pub min_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MoverRow {
    pub rank: usize,
    pub product_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Units (or revenue in cents, ranking by revenue) in the period.
    pub now: i64,
    /// The same in the baseline.
    pub then: i64,
    /// `now - then`.
    pub change: i64,
    /// The true change lies in `change ± change_error`; 0 when both sides are exact, null
    /// where nothing bounds it (speed-layer revenue, a bucket waiting for a re-roll).
    pub change_error: Option<i64>,
    /// `change / then`; null when the baseline sold nothing (a new product).
    pub relative_change: Option<f64>,
    /// The product's rank in the period and in the baseline among every product with
    /// sales there; null where it sold nothing.
    pub rank_now: Option<usize>,
    pub rank_then: Option<usize>,
    /// In the period's top K and not in the baseline's.
    pub entered: bool,
    /// In the baseline's top K and not in the period's.
    pub left: bool,
    /// `batch` when both periods are exact; else `speed` (or `pending`).
    pub source: Source,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MoversAnswer {
    pub from: String,
    pub to: String,
    pub baseline_from: String,
    pub baseline_to: String,
    pub k: usize,
    #[schema(example = "quantity")]
    pub by: &'static str,
    #[schema(example = "up")]
    pub direction: &'static str,
    #[schema(example = "absolute")]
    pub change: &'static str,
    pub min_count: i64,
    /// Both periods are exact: every row is exact and the list is the true one.
    pub exact: bool,
    /// The period has not ended yet.
    pub open: bool,
    /// How many leading rows are certainly the true biggest movers (their changes may
    /// still be estimates).
    pub certain_rows: usize,
    pub rows: Vec<MoverRow>,
    pub buckets: Vec<BucketState>,
    pub baseline_buckets: Vec<BucketState>,
    /// Why the answer is not exact, in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub computed_at: String,
}

/// One period's value per product, with error bounds where the speed layer answers.
struct Side {
    /// (value, error) of every product with a row in any of the period's buckets.
    values: HashMap<String, (i64, i64)>,
    /// The most a product without any row can have (its least is minus this).
    unseen: i64,
    /// Some bucket's numbers have no bound (speed revenue, pending, missing).
    unbounded: bool,
}

impl Side {
    fn load(store: &mut dyn ServingStore, period: &Period, by: By) -> Result<Side, StoreError> {
        let mut values: HashMap<String, (i64, i64)> = HashMap::new();
        let mut speed = Vec::new();
        for b in &period.buckets {
            if let Some(e) = period.exact.get(b) {
                for r in store.bucket_rows(e.bucket)? {
                    values.entry(r.product_id).or_default().0 += value(by, r.count, r.revenue_cents);
                }
            }
            if let Some(s) = period.speed.get(b) {
                let rows: HashMap<String, _> =
                    store.speed_rows(s.bucket)?.into_iter().map(|r| (r.product_id.clone(), r)).collect();
                speed.push((s.unlisted_bound, rows));
            }
        }
        for (_, rows) in &speed {
            for id in rows.keys() {
                values.entry(id.clone()).or_default();
            }
        }
        for (unlisted, rows) in &speed {
            for (id, v) in values.iter_mut() {
                match rows.get(id) {
                    Some(r) => {
                        v.0 += value(by, r.count, r.revenue_cents);
                        v.1 += r.error;
                    }
                    None => v.1 += unlisted,
                }
            }
        }
        let unseen = speed.iter().map(|(u, _)| *u).sum();
        let unbounded = (by == By::Revenue && !speed.is_empty())
            || period.count(Source::Pending) > 0
            || period.count(Source::None) > 0;
        Ok(Side { values, unseen, unbounded })
    }

    fn get(&self, id: &str) -> (i64, i64) {
        self.values.get(id).copied().unwrap_or((0, self.unseen))
    }
}

fn all_exact(period: &Period) -> bool {
    period.count(Source::Batch) == period.buckets.len()
}

/// What the buckets of a period are, in words, for the notes.
fn describe(period: &Period, name: &str, notes: &mut Vec<String>) {
    let n = period.buckets.len();
    for (source, what) in [
        (Source::Speed, "are open or not yet exact: their numbers are the speed layer's estimates"),
        (Source::Pending, "are waiting for a re-roll: their numbers are the last rollup's, with no bound"),
        (Source::None, "have no data (no sales yet, not yet processed, or past retention), counted as 0"),
    ] {
        let c = period.count(source);
        if c > 0 {
            notes.push(format!("{c} of the {name}'s {n} buckets {what}"));
        }
    }
}

/// One product's values in the period and the baseline, and the bound of its change.
pub(super) struct Moved {
    pub(super) id: String,
    pub(super) now: i64,
    pub(super) then: i64,
    pub(super) error: i64,
}

impl Moved {
    fn relative(&self) -> Option<f64> {
        (self.then > 0).then(|| (self.now - self.then) as f64 / self.then as f64)
    }
}

/// The ranked movers and how many leading ones are certain.
struct Movement {
    rows: Vec<Moved>,
    certain: usize,
    unbounded: bool,
}

/// Whether a product is ranked at all: it moved the asked way and passes min_count.
fn qualifies(req: &MoversRequest, now: i64, then: i64) -> bool {
    let sign = req.direction.sign();
    sign * (now - then) > 0
        && match req.change {
            Change::Absolute => now.max(then) >= req.min_count,
            Change::Relative => then >= req.min_count.max(1),
        }
}

/// Sorts and cuts qualifying rows: by change in the asked direction, ties by id.
fn rank_moves(rows: &mut Vec<Moved>, req: &MoversRequest) {
    let sign = req.direction.sign();
    match req.change {
        Change::Absolute => rows.sort_unstable_by(|a, b| {
            (sign * (b.now - b.then)).cmp(&(sign * (a.now - a.then))).then_with(|| a.id.cmp(&b.id))
        }),
        Change::Relative => rows.sort_unstable_by(|a, b| {
            let (ra, rb) = (a.relative().unwrap_or(0.0) * sign as f64, b.relative().unwrap_or(0.0) * sign as f64);
            rb.total_cmp(&ra).then_with(|| a.id.cmp(&b.id))
        }),
    }
    rows.truncate(req.k);
}

/// The least value any product can have over an exact period: each bucket adds its least
/// row, or 0 for a product without a row there (`None` where a minimum is not known).
fn floor(period: &Period, by: By) -> Option<i64> {
    period
        .buckets
        .iter()
        .map(|b| {
            let e = period.exact.get(b)?;
            let least = match by {
                By::Quantity => e.min_count,
                By::Revenue => e.min_revenue_cents,
            };
            Some(least.unwrap_or(0).min(0))
        })
        .sum()
}

/// Exact movers by absolute change without summing every product: the biggest gains are
/// among the period's best sellers (the drops among the baseline's) unless a product
/// below the lists' depth could gain more, which is at most what the lists leave
/// unlisted less the least the other period can hold. The threshold algorithm reads the
/// lists deeper until the K-th change is above that; `None` when even the whole stored
/// lists cannot prove it (the caller sums everything).
pub(super) fn through_lists(
    store: &mut dyn ServingStore,
    now: &Period,
    then: &Period,
    req: &MoversRequest,
) -> Result<Option<Vec<Moved>>, StoreError> {
    if req.change != Change::Absolute || !all_exact(now) || !all_exact(then) {
        return Ok(None);
    }
    let up = req.direction == Direction::Up;
    let (lead, other) = if up { (now, then) } else { (then, now) };
    let Some(floor) = floor(other, req.by) else { return Ok(None) };
    // As the top list starts: twice K usually proves a day's movers in one pass.
    let mut depth = (2 * req.k).clamp(20, MAX_K);
    loop {
        let ranked = rank_period(store, lead, depth, req.by)?;
        let Some(unlisted) = ranked.unlisted else { return Ok(None) };
        let beyond = unlisted.saturating_sub(floor);
        let ids: Vec<&str> = ranked.rows.iter().map(|(id, _)| id.as_str()).collect();
        let mut others: HashMap<String, i64> = HashMap::new();
        for e in other.buckets.iter().filter_map(|b| other.exact.get(b)) {
            for chunk in ids.chunks(1_000) {
                for p in store.product_sums(e.bucket, chunk)? {
                    *others.entry(p.product_id).or_default() += value(req.by, p.count, p.revenue_cents);
                }
            }
        }
        let mut rows: Vec<Moved> = ranked
            .rows
            .iter()
            .map(|(id, s)| {
                let (lead_value, other_value) =
                    (value(req.by, s.count, s.revenue), others.get(id).copied().unwrap_or(0));
                let (n, t) = if up { (lead_value, other_value) } else { (other_value, lead_value) };
                Moved { id: id.clone(), now: n, then: t, error: 0 }
            })
            .filter(|m| qualifies(req, m.now, m.then))
            .collect();
        rank_moves(&mut rows, req);
        let sign = req.direction.sign();
        let proven = match rows.get(req.k.saturating_sub(1)) {
            Some(last) if rows.len() == req.k => sign * (last.now - last.then) > beyond,
            _ => beyond <= 0,
        };
        tracing::debug!(depth, candidates = ranked.rows.len(), beyond, proven, "movers threshold pass");
        if proven {
            return Ok(Some(rows));
        }
        if depth >= MAX_K {
            return Ok(None);
        }
        depth = (depth * 4).min(MAX_K);
    }
}

/// Every product of both periods summed: exact where both are, bounded elsewhere.
fn summed(
    store: &mut dyn ServingStore,
    now: &Period,
    then: &Period,
    req: &MoversRequest,
) -> Result<Movement, QueryError> {
    let rows_to_sum: i64 = now.exact.values().chain(then.exact.values()).map(|e| e.products).sum::<i64>();
    if rows_to_sum > WHOLE_SUM_ROWS {
        return Err(QueryError::Refused(format!(
            "movers sum every product of both periods: {rows_to_sum} bucket rows, more than the {WHOLE_SUM_ROWS} one \
             answer may sum; ask for shorter periods or a coarser granularity"
        )));
    }
    let (now_side, then_side) = (Side::load(store, now, req.by)?, Side::load(store, then, req.by)?);
    let exact = all_exact(now) && all_exact(then);
    let unbounded = now_side.unbounded || then_side.unbounded;
    let ids: HashSet<&str> = now_side.values.keys().chain(then_side.values.keys()).map(String::as_str).collect();
    let all: Vec<Moved> = ids
        .into_iter()
        .map(|id| {
            let ((n, en), (t, et)) = (now_side.get(id), then_side.get(id));
            Moved { id: id.to_string(), now: n, then: t, error: en + et }
        })
        .collect();
    let mut rows: Vec<Moved> =
        all.iter().filter(|m| qualifies(req, m.now, m.then)).map(|m| Moved { id: m.id.clone(), ..*m }).collect();
    rank_moves(&mut rows, req);
    // Certain: a row's lowest change (in the asked direction) is above the highest any
    // product after it can have — a ranked one, an unranked one, or one listed nowhere.
    let sign = req.direction.sign();
    let certain = if exact {
        rows.len()
    } else if unbounded || req.change == Change::Relative {
        0
    } else {
        let upper = |m: &Moved| sign * (m.now - m.then) + m.error;
        let mut highest: Vec<(&str, i64)> = all.iter().map(|m| (m.id.as_str(), upper(m))).collect();
        let keep = (rows.len() + 1).min(highest.len());
        if keep > 0 && keep < highest.len() {
            highest.select_nth_unstable_by(keep - 1, |a, b| b.1.cmp(&a.1));
            highest.truncate(keep);
        }
        highest.sort_unstable_by_key(|h| std::cmp::Reverse(h.1));
        let nowhere = now_side.unseen + then_side.unseen;
        let mut above: HashSet<&str> = HashSet::new();
        rows.iter()
            .take_while(|m| {
                above.insert(m.id.as_str());
                let rival = highest.iter().find(|(id, _)| !above.contains(id)).map_or(nowhere, |h| h.1.max(nowhere));
                sign * (m.now - m.then) - m.error > rival
            })
            .count()
    };
    Ok(Movement { rows, certain, unbounded })
}

/// The biggest movers of `req.period` against `req.baseline`.
pub fn movers(store: &mut dyn ServingStore, req: MoversRequest, rules: Rules) -> Result<MoversAnswer, QueryError> {
    let ((from, to), (base_from, base_to)) = (span(&req.period), span(&req.baseline));
    let (by, k) = (req.by, req.k);
    let now = Period::load(store, req.period.clone(), rules)?;
    let then = Period::load(store, req.baseline.clone(), rules)?;
    let exact = all_exact(&now) && all_exact(&then);
    let Movement { rows: ranked, certain, unbounded } = match through_lists(store, &now, &then, &req)? {
        Some(rows) => Movement { certain: rows.len(), rows, unbounded: false },
        None => summed(store, &now, &then, &req)?,
    };

    // Each row's rank in either period's first MAX_K (as /top ranks them).
    let ids: Vec<&str> = ranked.iter().map(|m| m.id.as_str()).collect();
    let ranks_now = ranks_in(store, &now, &ids, MAX_K, by)?;
    let ranks_then = ranks_in(store, &then, &ids, MAX_K, by)?;
    let names = names(store, ranked.iter().map(|m| m.id.as_str()))?;
    let source = if exact {
        Source::Batch
    } else if now.count(Source::Speed) + then.count(Source::Speed) > 0 {
        Source::Speed
    } else {
        Source::Pending
    };
    let rows = ranked
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (rank_now, rank_then) = (ranks_now.get(&m.id).copied(), ranks_then.get(&m.id).copied());
            let in_top = |r: Option<usize>| r.is_some_and(|r| r <= k);
            MoverRow {
                rank: i + 1,
                product_id: m.id.clone(),
                name: names.get(&m.id).cloned(),
                now: m.now,
                then: m.then,
                change: m.now - m.then,
                change_error: (!unbounded).then_some(m.error),
                relative_change: m.relative(),
                rank_now,
                rank_then,
                entered: in_top(rank_now) && !in_top(rank_then),
                left: in_top(rank_then) && !in_top(rank_now),
                source,
            }
        })
        .collect();

    let mut notes = Vec::new();
    if to > rules.now_ms {
        notes.push("the period has not ended: its counts so far are compared with the baseline's whole".into());
    }
    describe(&now, "period", &mut notes);
    describe(&then, "baseline", &mut notes);
    if by == By::Revenue && (now.count(Source::Speed) + then.count(Source::Speed)) > 0 {
        notes.push("speed-layer revenue counts only sales seen while a product was a candidate: no bound".into());
    }
    if !exact && certain < k {
        notes.push(match (unbounded, req.change) {
            (true, _) => "some counts have no bound, so no row is certain".into(),
            (false, Change::Relative) => "relative changes of estimates are not bounded here: no row is certain".into(),
            (false, Change::Absolute) => format!(
                "{certain} leading rows are certain; below that a row's change, less its bound, could be overtaken"
            ),
        });
    }
    Ok(MoversAnswer {
        from: format_rfc3339(from),
        to: format_rfc3339(to),
        baseline_from: format_rfc3339(base_from),
        baseline_to: format_rfc3339(base_to),
        k,
        by: by.as_str(),
        direction: if req.direction == Direction::Up { "up" } else { "down" },
        change: if req.change == Change::Absolute { "absolute" } else { "relative" },
        min_count: req.min_count,
        exact,
        open: to > rules.now_ms,
        certain_rows: certain,
        rows,
        buckets: now.states(),
        baseline_buckets: then.states(),
        notes,
        computed_at: format_rfc3339(rules.now_ms),
    })
}
