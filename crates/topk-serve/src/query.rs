//! The serving layer's merge rule (DESIGN §7): a period is a set of buckets; the batch
//! layer's exact rows answer wherever they exist and the speed layer's approximate rows,
//! with their error bounds, fill the rest.
//!
//! A range's top K is found without summing every product of every bucket: the
//! threshold algorithm reads each bucket's ranked list to depth `m`, sums the candidates
//! exactly, and stops once the K-th candidate beats the most any product below depth `m`
//! in every list could have. Only when the stored lists are too short for that does it
//! sum whole buckets, up to [`WHOLE_SUM_ROWS`] rows; past that the answer says how many
//! of its leading ranks are certain.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use topk_core::time::{decompose, year_earlier_ms, Bucket, Granularity, RangeError};
use topk_core::timestamp::format_rfc3339;
use topk_store::{By, ExactBucket, ProductSum, ServingStore, SpeedBucket, SpeedRow, StoreError};
use utoipa::ToSchema;

mod bottom;
mod history;
mod movers;
mod projection;

pub use bottom::bottom;
pub use history::{buckets, history, trends, HistoryPoint, ProductHistory, Trend, Trends};
pub use movers::{movers, Change, Direction, MoverRow, MoversAnswer, MoversRequest};
pub use projection::{
    backtest, median, project, project_counted, Backtest, ProjectedRow, ProjectionAnswer, ProjectionMethod,
};

/// Largest K an answer may ask for (the depth of the stored top lists by default).
pub const MAX_K: usize = topk_core::DEFAULT_TOP_K;

/// Why an answer that only some periods can give (worst sellers, movers) was not given.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The period cannot answer it as asked: the message says which buckets and why.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a bucket's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The batch layer (or Kappa) has the exact numbers.
    Batch,
    /// Only the speed layer's estimates.
    Speed,
    /// Exact rows that are out of date: late events or refunds reached the bucket after
    /// its rollup and the re-roll has not landed yet (or, from before a fix, rows of a
    /// bucket rolled up before it ended). Counted as stored, but not exact.
    Pending,
    /// Neither layer has anything for it (no sales yet, or not processed yet).
    None,
}

impl Source {
    /// The name the API gives it (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Batch => "batch",
            Source::Speed => "speed",
            Source::Pending => "pending",
            Source::None => "none",
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BucketState {
    #[schema(value_type = String, example = "day")]
    pub granularity: Granularity,
    pub start: String,
    pub end: String,
    pub label: String,
    pub source: Source,
    /// For a speed bucket: when the speed layer last wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopRow {
    pub rank: usize,
    pub product_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Net quantity sold in the period (an estimate where `source` is `speed`).
    pub count: i64,
    /// The true count lies in `count ± error_bound`; 0 when exact.
    pub error_bound: i64,
    /// Revenue in the period; where `source` is `speed` it counts only the sales seen
    /// while the product was one of the speed layer's candidates (a lower bound).
    pub revenue_cents: i64,
    /// `count` (or `revenue_cents`, ranking by revenue) over the period's total; absent
    /// when the total is not known exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
    /// `batch` when every bucket of the period is exact for this row, else `speed`.
    pub source: Source,
    /// The row's rank in the previous period (see `baseline_from`), null when it was not
    /// among that period's first `baseline_depth`; absent on worst-seller lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_rank: Option<Option<usize>>,
    /// `previous_rank - rank`: how many places it rose (negative: fell); null when new.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank_change: Option<Option<i64>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Freshness {
    /// The oldest write of the speed layer among the approximate buckets used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approximate_as_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<i64>,
    /// When this answer was computed.
    pub computed_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopAnswer {
    pub from: String,
    pub to: String,
    pub k: usize,
    #[schema(example = "quantity")]
    pub by: &'static str,
    /// `desc`: the top K, best first; `asc`: the worst sellers, least first (products of
    /// the catalog that did not sell in the period count as 0).
    #[schema(example = "desc")]
    pub order: &'static str,
    /// Every row is exact and the set of rows is the true top K.
    pub exact: bool,
    /// The period has not ended yet: its numbers still grow (exact ones too, in Kappa).
    pub open: bool,
    /// How many leading rows are certainly the period's true top ones (their counts may
    /// still be estimates): all of them unless a note says otherwise.
    pub certain_rows: usize,
    /// When the answer is not exact: the most any product not listed can have (units, or
    /// cents ranking by revenue; absent where nothing bounds it: the speed layer's
    /// revenue). A listed row whose lower end (`count - error_bound`) is below it could
    /// be overtaken, which is why ranks past `certain_rows` are not certain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlisted_bound: Option<i64>,
    pub rows: Vec<TopRow>,
    /// The previous period the rows' `previous_rank` refers to, and how deep its ranking
    /// was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_depth: Option<usize>,
    /// The period's total (quantity, or revenue when ranking by revenue), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    pub freshness: Freshness,
    pub buckets: Vec<BucketState>,
    /// Why the answer is not exact, in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The breakdown the lists are of (`country=DE`), when filtered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<String>,
}

/// How the serving layer judges what the store holds.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub now_ms: i64,
    /// Lambda: exact rows come from the batch layer, which rolls up only ended buckets;
    /// Kappa's stream writes exact rows for open buckets too.
    pub lambda: bool,
}

/// What the store knows of each bucket of a period: each bucket's rows are exact and
/// current ([`Source::Batch`]), approximate ([`Source::Speed`]), exact but out of date
/// ([`Source::Pending`]) or missing.
struct Period {
    buckets: Vec<Bucket>,
    exact: HashMap<Bucket, ExactBucket>,
    speed: HashMap<Bucket, SpeedBucket>,
    sources: HashMap<Bucket, Source>,
}

impl Period {
    fn load(store: &mut dyn ServingStore, buckets: Vec<Bucket>, rules: Rules) -> Result<Period, StoreError> {
        let (mut exact, mut speed) = (HashMap::new(), HashMap::new());
        for g in Granularity::ALL {
            let of_g: Vec<i64> = buckets.iter().filter(|b| b.granularity == g).map(|b| b.start_ms).collect();
            let (Some(&lo), Some(&hi)) = (of_g.iter().min(), of_g.iter().max()) else { continue };
            let wanted: HashSet<i64> = of_g.iter().copied().collect();
            for e in store.exact_buckets(g, lo, hi + 1)? {
                if wanted.contains(&e.bucket.start_ms) {
                    exact.insert(e.bucket, e);
                }
            }
            for s in store.speed_buckets(g, lo, hi + 1)? {
                if wanted.contains(&s.bucket.start_ms) {
                    speed.insert(s.bucket, s);
                }
            }
        }
        // A bucket is exact only while nothing below it waits for a re-roll (DESIGN §4).
        let pending = if exact.is_empty() { Vec::new() } else { store.pending()? };
        let stale = |b: &Bucket| {
            (rules.lambda && b.end_ms() > rules.now_ms)
                || pending.iter().any(|p| {
                    p == b || (p.granularity.feeds(b.granularity) && p.start_ms < b.end_ms() && p.end_ms() > b.start_ms)
                })
        };
        let mut sources = HashMap::new();
        for &b in &buckets {
            let source = match (exact.contains_key(&b), speed.contains_key(&b)) {
                (true, _) if !stale(&b) => Source::Batch,
                (_, true) => Source::Speed,
                (true, false) => Source::Pending,
                (false, false) => Source::None,
            };
            sources.insert(b, source);
        }
        exact.retain(|b, _| matches!(sources.get(b), Some(Source::Batch | Source::Pending)));
        speed.retain(|b, _| sources.get(b) == Some(&Source::Speed));
        Ok(Period { buckets, exact, speed, sources })
    }

    fn source(&self, b: Bucket) -> Source {
        self.sources.get(&b).copied().unwrap_or(Source::None)
    }

    fn count(&self, source: Source) -> usize {
        self.buckets.iter().filter(|b| self.source(**b) == source).count()
    }

    fn states(&self) -> Vec<BucketState> {
        self.buckets
            .iter()
            .map(|&b| BucketState {
                granularity: b.granularity,
                start: format_rfc3339(b.start_ms),
                end: format_rfc3339(b.end_ms()),
                label: b.to_string(),
                source: self.source(b),
                updated: self.speed.get(&b).map(|s| format_rfc3339(s.updated_ms)),
            })
            .collect()
    }
}

fn value(by: By, count: i64, revenue: i64) -> i64 {
    match by {
        By::Quantity => count,
        By::Revenue => revenue,
    }
}

/// Best first by `by`, ties by product id: the order of every ranked answer.
fn best_first(by: By) -> impl Fn(&(String, Sums), &(String, Sums)) -> std::cmp::Ordering + Copy {
    move |(a, x), (b, y)| value(by, y.count, y.revenue).cmp(&value(by, x.count, x.revenue)).then_with(|| a.cmp(b))
}

/// One candidate's sums over the period.
#[derive(Debug, Default, Clone)]
struct Sums {
    count: i64,
    revenue: i64,
    error: i64,
}

/// The top `k` by `by` over `buckets` (disjoint, e.g. from `decompose`).
pub fn top(
    store: &mut dyn ServingStore,
    buckets: Vec<Bucket>,
    k: usize,
    by: By,
    rules: Rules,
) -> Result<TopAnswer, StoreError> {
    let now_ms = rules.now_ms;
    let (from_ms, to_ms) = span(&buckets);
    let baseline = previous(&buckets).ok();
    let period = Period::load(store, buckets, rules)?;
    let exact_buckets: Vec<&ExactBucket> = period.buckets.iter().filter_map(|b| period.exact.get(b)).collect();
    let speed_buckets: Vec<&SpeedBucket> = period.buckets.iter().filter_map(|b| period.speed.get(b)).collect();
    let missing = period.count(Source::None);
    let pending = period.count(Source::Pending);
    let Ranked { rows: mut ranked, certain, unlisted } = rank_period(store, &period, k, by)?;
    // The most a product left off the answer can have: below the lists' depth, or a
    // candidate ranked past K (at its upper bound).
    let beyond = ranked.iter().skip(k).map(|(_, s)| value(by, s.count, s.revenue).saturating_add(s.error)).max();
    let unlisted = unlisted.map(|u| u.max(beyond.unwrap_or(0)));
    ranked.truncate(k);
    let certified = certain >= ranked.len();

    let total = if speed_buckets.is_empty() || by == By::Quantity {
        let exact: i64 = exact_buckets.iter().map(|e| value(by, e.count, e.revenue_cents)).sum();
        Some(exact + speed_buckets.iter().map(|s| s.total_count).sum::<i64>())
    } else {
        None
    };
    let mut notes = Vec::new();
    if !speed_buckets.is_empty() {
        notes.push(format!(
            "{} of {} buckets are open or not yet exact: their numbers are the speed layer's estimates",
            speed_buckets.len(),
            period.buckets.len()
        ));
        if by == By::Revenue {
            notes.push("revenue estimates count only sales seen while a product was a candidate".into());
        }
    }
    if pending > 0 {
        notes.push(format!(
            "{pending} of {} buckets are waiting for a re-roll: late events or refunds reached them after their \
             rollup (or they were rolled up before they ended), so their numbers are the last rollup's",
            period.buckets.len()
        ));
    }
    if missing > 0 {
        notes.push(format!(
            "{missing} of {} buckets have no data (no sales yet, not yet processed, or past retention)",
            period.buckets.len()
        ));
    }
    if !certified {
        let most = unlisted.map_or(String::new(), |u| format!(" (a product not listed can have up to {u})"));
        notes.push(match certain {
            0 => format!("a product not listed could still belong in this top K{most}"),
            c => format!(
                "ranks 1–{c} are certain; below that a row's lower bound is under what a product not listed could have{most}, so it could be overtaken"
            ),
        });
    }
    let names = names(store, ranked.iter().map(|(id, _)| id.as_str()))?;
    let depth = baseline.as_deref().map(|b| baseline_depth(b, k));
    let baseline_span = baseline.as_deref().map(span);
    let previous_ranks = match (baseline, depth) {
        (Some(b), Some(depth)) => {
            let ids: Vec<&str> = ranked.iter().map(|(id, _)| id.as_str()).collect();
            let baseline = Period::load(store, b, rules)?;
            Some(ranks_in(store, &baseline, &ids, depth, by)?)
        }
        _ => None,
    };
    let source = match (speed_buckets.is_empty(), pending) {
        (false, _) => Source::Speed,
        (true, 0) => Source::Batch,
        (true, _) => Source::Pending,
    };
    let rows = ranked
        .into_iter()
        .enumerate()
        .map(|(i, (product_id, s))| TopRow {
            rank: i + 1,
            name: names.get(&product_id).cloned(),
            share: total.filter(|&t| t > 0).map(|t| value(by, s.count, s.revenue) as f64 / t as f64),
            count: s.count,
            error_bound: s.error,
            revenue_cents: s.revenue,
            source,
            previous_rank: previous_ranks.as_ref().map(|p| p.get(&product_id).copied()),
            rank_change: previous_ranks.as_ref().map(|p| p.get(&product_id).map(|&was| was as i64 - (i + 1) as i64)),
            product_id,
        })
        .collect();
    let oldest = speed_buckets.iter().map(|s| s.updated_ms).min();
    let exact = speed_buckets.is_empty() && pending == 0 && missing == 0 && certified;
    Ok(TopAnswer {
        from: format_rfc3339(from_ms),
        to: format_rfc3339(to_ms),
        k,
        by: by.as_str(),
        order: "desc",
        exact,
        open: to_ms > now_ms,
        certain_rows: certain.min(k),
        unlisted_bound: unlisted.filter(|_| !exact),
        rows,
        baseline_from: baseline_span.map(|(f, _)| format_rfc3339(f)),
        baseline_to: baseline_span.map(|(_, t)| format_rfc3339(t)),
        baseline_depth: depth,
        total,
        freshness: Freshness {
            approximate_as_of: oldest.map(format_rfc3339),
            age_ms: oldest.map(|t| (now_ms - t).max(0)),
            computed_at: format_rfc3339(now_ms),
        },
        buckets: period.states(),
        notes,
        breakdown: None,
    })
}

/// A period's candidates ranked by the threshold algorithm over its exact lists and its
/// speed rows (read whole: they are the speed layer's top N per bucket).
fn rank_period(store: &mut dyn ServingStore, period: &Period, k: usize, by: By) -> Result<Ranked, StoreError> {
    let exact: Vec<&ExactBucket> = period.buckets.iter().filter_map(|b| period.exact.get(b)).collect();
    let speed: Vec<&SpeedBucket> = period.buckets.iter().filter_map(|b| period.speed.get(b)).collect();
    let mut speed_rows: Vec<HashMap<String, SpeedRow>> = Vec::with_capacity(speed.len());
    for s in &speed {
        speed_rows.push(store.speed_rows(s.bucket)?.into_iter().map(|r| (r.product_id.clone(), r)).collect());
    }
    rank(store, &exact, &speed, &speed_rows, k, by, WHOLE_SUM_ROWS)
}

/// The period before a period: the bucket before one whole bucket, else the range of the
/// same length that ends where it starts.
pub fn previous(period: &[Bucket]) -> Result<Vec<Bucket>, RangeError> {
    match period {
        [one] => Ok(vec![one.prev()]),
        _ => {
            let (from, to) = span(period);
            decompose(from - (to - from), from)
        }
    }
}

/// The same period a year earlier: the same bucket (see `Bucket::year_earlier`) for one
/// whole bucket, else the range shifted by a calendar year.
pub fn same_last_year(period: &[Bucket]) -> Result<Vec<Bucket>, RangeError> {
    match period {
        [one] => Ok(vec![one.year_earlier()]),
        _ => {
            let (from, to) = span(period);
            decompose(year_earlier_ms(from), year_earlier_ms(to))
        }
    }
}

/// `[from, to)` of a set of buckets.
pub(crate) fn span(buckets: &[Bucket]) -> (i64, i64) {
    (buckets.iter().map(|b| b.start_ms).min().unwrap_or(0), buckets.iter().map(|b| b.end_ms()).max().unwrap_or(0))
}

/// How deep the baseline's ranking is read for `previous_rank`: a single bucket's whole
/// stored list; over a range, four times K (at least 100).
fn baseline_depth(baseline: &[Bucket], k: usize) -> usize {
    if baseline.len() == 1 {
        MAX_K
    } else {
        (4 * k).clamp(100, MAX_K)
    }
}

/// The ranks of `ids` in a period, among its first `depth` (absent beyond). One exact
/// bucket answers from its stored list, read once for all of them; otherwise the period
/// is ranked to `depth` by the threshold algorithm.
fn ranks_in(
    store: &mut dyn ServingStore,
    period: &Period,
    ids: &[&str],
    depth: usize,
    by: By,
) -> Result<HashMap<String, usize>, StoreError> {
    if let [one] = period.buckets[..] {
        if period.source(one) == Source::Batch && depth == MAX_K {
            let ranks = store.ranks_of(one, by, ids)?.into_iter();
            return Ok(ranks.filter(|&(_, r)| r >= 1 && r as usize <= depth).map(|(id, r)| (id, r as usize)).collect());
        }
    }
    let ranked = rank_period(store, period, depth, by)?;
    Ok(ranked.rows.into_iter().take(depth).enumerate().map(|(i, (id, _))| (id, i + 1)).collect())
}

/// Candidates ranked by value with their sums, and how many leading ones are certainly
/// the period's true top ones (all of them when the lists prove it).
struct Ranked {
    rows: Vec<(String, Sums)>,
    certain: usize,
    /// The most any product not among `rows` can have (`None` where nothing bounds it:
    /// the speed layer's revenue).
    unlisted: Option<i64>,
}

/// Summing whole buckets, when the stored lists cannot prove the top K, is done up to
/// this many bucket rows; past it the answer says which ranks are certain.
const WHOLE_SUM_ROWS: i64 = 2_000_000;

/// The threshold algorithm: read each list to `depth`, sum the candidates, and deepen
/// until the K-th is ahead of the most any unread product could have.
fn rank(
    store: &mut dyn ServingStore,
    exact: &[&ExactBucket],
    speed: &[&SpeedBucket],
    speed_rows: &[HashMap<String, SpeedRow>],
    k: usize,
    by: By,
    budget: i64,
) -> Result<Ranked, StoreError> {
    let single = exact.len() + speed.len() == 1;
    // Speed revenue has no upper bound, so no rank can be proven there.
    let provable = speed.is_empty() || by == By::Quantity;
    // Each speed bucket's rows ranked once; a pass takes the first `depth` of them.
    let speed_ranked: Vec<Vec<&SpeedRow>> = speed_rows
        .iter()
        .map(|rows| {
            let mut ranked: Vec<&SpeedRow> = rows.values().collect();
            ranked.sort_unstable_by_key(|r| std::cmp::Reverse(value(by, r.count, r.revenue_cents)));
            ranked
        })
        .collect();
    // Twice K: one pass usually proves a top K over a few dozen buckets.
    let mut depth = (2 * k).clamp(20, MAX_K);
    loop {
        // Each list's first `depth` products are candidates; `bound` is the most a
        // product below that depth in every list can have.
        let mut lists: Vec<HashMap<String, (i64, i64)>> = Vec::with_capacity(exact.len());
        let mut complete = Vec::with_capacity(exact.len());
        let mut bound: i64 = 0;
        let mut exhausted = true;
        // A list that is neither whole nor as deep as asked (stored lists are shorter).
        let mut short = false;
        for e in exact {
            let list = store.top_list(e.bucket, by, depth)?;
            let whole = list.len() as i64 >= e.products;
            short |= !whole && list.len() < depth;
            if !whole {
                bound = bound.saturating_add(list.last().map_or(0, |r| value(by, r.count, r.revenue_cents).max(0)));
                exhausted = false;
            }
            complete.push(whole);
            lists.push(list.into_iter().map(|r| (r.product_id, (r.count, r.revenue_cents))).collect());
        }
        let mut candidates: Vec<String> = lists.iter().flat_map(|l| l.keys().cloned()).collect();
        for (s, ranked) in speed.iter().zip(&speed_ranked) {
            let cut = ranked.iter().skip(depth).map(|r| r.count.saturating_add(r.error)).max().unwrap_or(0);
            bound = bound.saturating_add(s.unlisted_bound.max(cut));
            candidates.extend(ranked.iter().take(depth).map(|r| r.product_id.clone()));
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut sums: HashMap<&str, Sums> = candidates.iter().map(|id| (id.as_str(), Sums::default())).collect();
        for ((e, list), whole) in exact.iter().zip(&lists).zip(&complete) {
            let mut unread = Vec::new();
            for id in &candidates {
                match list.get(id) {
                    Some(&(c, r)) => add(sums.get_mut(id.as_str()).expect("a candidate"), c, r),
                    None if !whole => unread.push(id.as_str()),
                    None => {}
                }
            }
            for p in store.product_sums(e.bucket, &unread)? {
                add(sums.get_mut(p.product_id.as_str()).expect("asked for"), p.count, p.revenue_cents);
            }
        }
        for (s, rows) in speed.iter().zip(speed_rows) {
            for (id, sum) in sums.iter_mut() {
                match rows.get(*id) {
                    Some(r) => {
                        add(sum, r.count, r.revenue_cents);
                        sum.error += r.error;
                    }
                    None => sum.error += s.unlisted_bound,
                }
            }
        }
        let mut ranked: Vec<(String, Sums)> = sums.into_iter().map(|(id, s)| (id.to_string(), s)).collect();
        ranked.sort_unstable_by(best_first(by));
        let wanted = k.min(ranked.len());
        // Certain: ahead of anything unread even at its lowest (ties aside, one exact list
        // is its own proof). Speed revenue has no bound, so nothing is certain there.
        let certain = if speed.is_empty() && (exhausted || (single && !short)) {
            wanted
        } else if !provable {
            0
        } else {
            ranked.iter().take(wanted).take_while(|(_, s)| value(by, s.count, s.revenue) - s.error > bound).count()
        };
        tracing::debug!(depth, candidates = ranked.len(), certain, wanted, bound, "threshold pass");
        if certain >= wanted || !provable {
            return Ok(Ranked { rows: ranked, certain, unlisted: provable.then_some(bound) });
        }
        if depth >= MAX_K {
            // Approximate buckets cannot be summed whole: their rows are all there is.
            if speed.is_empty() && exact.iter().map(|e| e.products).sum::<i64>() <= budget {
                let rows = sum_whole(store, exact, k, by)?;
                return Ok(Ranked { certain: rows.len(), rows, unlisted: None });
            }
            return Ok(Ranked { rows: ranked, certain, unlisted: Some(bound) });
        }
        depth = (depth * 4).min(MAX_K);
    }
}

fn add(sum: &mut Sums, count: i64, revenue: i64) {
    sum.count += count;
    sum.revenue += revenue;
}

/// The fallback: every product of every bucket, summed.
fn sum_whole(
    store: &mut dyn ServingStore,
    exact: &[&ExactBucket],
    k: usize,
    by: By,
) -> Result<Vec<(String, Sums)>, StoreError> {
    let mut all: HashMap<String, Sums> = HashMap::new();
    for e in exact {
        for ProductSum { product_id, count, revenue_cents } in store.bucket_rows(e.bucket)? {
            add(all.entry(product_id).or_default(), count, revenue_cents);
        }
    }
    let mut ranked: Vec<(String, Sums)> = all.into_iter().collect();
    let cmp = best_first(by);
    if ranked.len() > k {
        ranked.select_nth_unstable_by(k, cmp);
        ranked.truncate(k);
    }
    ranked.sort_unstable_by(cmp);
    Ok(ranked)
}

fn names<'a>(
    store: &mut dyn ServingStore,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, String>, StoreError> {
    let ids: Vec<&str> = ids.collect();
    Ok(store.products(&ids)?.into_iter().filter_map(|p| Some((p.product_id, p.name?))).collect())
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
