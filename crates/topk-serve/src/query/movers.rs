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

use super::{names, span, value, BucketState, Period, Rules, Source, WHOLE_SUM_ROWS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
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

/// Why a movers list was not given.
#[derive(Debug, thiserror::Error)]
pub enum MoversError {
    /// The request cannot be answered as asked: the message says why.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One period's value per product, with error bounds where the speed layer answers.
struct Side {
    period: Period,
    /// (value, error) of every product with a row in any of the period's buckets.
    values: HashMap<String, (i64, i64)>,
    /// The most a product without any row can have (its least is minus this).
    unseen: i64,
    /// Some bucket's numbers have no bound (speed revenue, pending, missing).
    unbounded: bool,
}

impl Side {
    fn load(store: &mut dyn ServingStore, period: Period, by: By) -> Result<Side, StoreError> {
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
        Ok(Side { period, values, unseen, unbounded })
    }

    fn exact(&self) -> bool {
        self.period.count(Source::Batch) == self.period.buckets.len()
    }

    fn get(&self, id: &str) -> (i64, i64) {
        self.values.get(id).copied().unwrap_or((0, self.unseen))
    }

    /// Every product with sales here, best first (ties by id), by its rank.
    fn ranks(&self) -> HashMap<&str, usize> {
        let mut sold: Vec<(&str, i64)> =
            self.values.iter().filter(|(_, v)| v.0 > 0).map(|(id, v)| (id.as_str(), v.0)).collect();
        sold.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        sold.into_iter().enumerate().map(|(i, (id, _))| (id, i + 1)).collect()
    }

    /// What the buckets of this side are, in words, for the notes.
    fn describe(&self, name: &str, notes: &mut Vec<String>) {
        let n = self.period.buckets.len();
        for (source, what) in [
            (Source::Speed, "are open or not yet exact: their numbers are the speed layer's estimates"),
            (Source::Pending, "are waiting for a re-roll: their numbers are the last rollup's, with no bound"),
            (Source::None, "have no data (no sales yet, not yet processed, or past retention), counted as 0"),
        ] {
            let c = self.period.count(source);
            if c > 0 {
                notes.push(format!("{c} of the {name}'s {n} buckets {what}"));
            }
        }
    }
}

/// The biggest movers of `req.period` against `req.baseline`.
pub fn movers(store: &mut dyn ServingStore, req: MoversRequest, rules: Rules) -> Result<MoversAnswer, MoversError> {
    let ((from, to), (base_from, base_to)) = (span(&req.period), span(&req.baseline));
    let (by, k) = (req.by, req.k);
    let now_period = Period::load(store, req.period, rules)?;
    let then_period = Period::load(store, req.baseline, rules)?;
    let rows_to_sum: i64 = now_period.exact.values().chain(then_period.exact.values()).map(|e| e.products).sum::<i64>();
    if rows_to_sum > WHOLE_SUM_ROWS {
        return Err(MoversError::Refused(format!(
            "movers sum every product of both periods: {rows_to_sum} bucket rows, more than the {WHOLE_SUM_ROWS} one \
             answer may sum; ask for shorter periods or a coarser granularity"
        )));
    }
    let now = Side::load(store, now_period, by)?;
    let then = Side::load(store, then_period, by)?;
    let exact = now.exact() && then.exact();
    let unbounded = now.unbounded || then.unbounded;

    // Every product of either side: its change, the change's bound, and whether it is
    // ranked (it moves the asked way and passes min_count).
    let sign = if req.direction == Direction::Up { 1 } else { -1 };
    let ids: HashSet<&str> = now.values.keys().chain(then.values.keys()).map(String::as_str).collect();
    struct Candidate<'a> {
        id: &'a str,
        now: i64,
        then: i64,
        error: i64,
    }
    let all: Vec<Candidate> = ids
        .into_iter()
        .map(|id| {
            let ((n, en), (t, et)) = (now.get(id), then.get(id));
            Candidate { id, now: n, then: t, error: en + et }
        })
        .collect();
    let relative = |c: &Candidate| (c.then > 0).then(|| (c.now - c.then) as f64 / c.then as f64);
    let mut ranked: Vec<&Candidate> = all
        .iter()
        .filter(|c| sign * (c.now - c.then) > 0)
        .filter(|c| match req.change {
            Change::Absolute => c.now.max(c.then) >= req.min_count,
            Change::Relative => c.then >= req.min_count.max(1),
        })
        .collect();
    match req.change {
        Change::Absolute => ranked.sort_unstable_by(|a, b| {
            (sign * (b.now - b.then)).cmp(&(sign * (a.now - a.then))).then_with(|| a.id.cmp(b.id))
        }),
        Change::Relative => ranked.sort_unstable_by(|a, b| {
            let (ra, rb) = (relative(a).unwrap_or(0.0) * sign as f64, relative(b).unwrap_or(0.0) * sign as f64);
            rb.total_cmp(&ra).then_with(|| a.id.cmp(b.id))
        }),
    }
    ranked.truncate(k);

    // Certain: a row's lowest change (in the asked direction) is above the highest any
    // product after it can have — a ranked one, an unranked one, or one listed nowhere.
    let certain = if exact {
        ranked.len()
    } else if unbounded || req.change == Change::Relative {
        0
    } else {
        let upper = |c: &Candidate| sign * (c.now - c.then) + c.error;
        let mut highest: Vec<(&str, i64)> = all.iter().map(|c| (c.id, upper(c))).collect();
        let keep = (ranked.len() + 1).min(highest.len());
        if keep > 0 && keep < highest.len() {
            highest.select_nth_unstable_by(keep - 1, |a, b| b.1.cmp(&a.1));
            highest.truncate(keep);
        }
        highest.sort_unstable_by_key(|h| std::cmp::Reverse(h.1));
        let nowhere = now.unseen + then.unseen;
        let mut above: HashSet<&str> = HashSet::new();
        ranked
            .iter()
            .take_while(|c| {
                above.insert(c.id);
                let rival = highest.iter().find(|(id, _)| !above.contains(id)).map_or(nowhere, |h| h.1.max(nowhere));
                sign * (c.now - c.then) - c.error > rival
            })
            .count()
    };

    let (ranks_now, ranks_then) = (now.ranks(), then.ranks());
    let names = names(store, ranked.iter().map(|c| c.id))?;
    let source = if exact {
        Source::Batch
    } else if now.period.count(Source::Speed) + then.period.count(Source::Speed) > 0 {
        Source::Speed
    } else {
        Source::Pending
    };
    let rows = ranked
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (rank_now, rank_then) = (ranks_now.get(c.id).copied(), ranks_then.get(c.id).copied());
            let in_top = |r: Option<usize>| r.is_some_and(|r| r <= k);
            MoverRow {
                rank: i + 1,
                product_id: c.id.to_string(),
                name: names.get(c.id).cloned(),
                now: c.now,
                then: c.then,
                change: c.now - c.then,
                change_error: (!unbounded).then_some(c.error),
                relative_change: relative(c),
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
    now.describe("period", &mut notes);
    then.describe("baseline", &mut notes);
    if by == By::Revenue && (now.period.count(Source::Speed) + then.period.count(Source::Speed)) > 0 {
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
        buckets: now.period.states(),
        baseline_buckets: then.period.states(),
        notes,
        computed_at: format_rfc3339(rules.now_ms),
    })
}
