//! Projections of open periods: each listed product's end-of-period count from its run
//! rate so far and the shape of the same hours in history, with an 80 % interval, and a
//! backtest that scores the same projection on closed periods.
//!
//! The model. Let V(a, b) be the volume history expects between a and b: the sum over
//! those hours of the mean total of the same hour of the week (weekday × hour of day,
//! UTC) in the last [`HISTORY_WEEKS`] weeks, prorated within an hour. At `as_of`, the share
//! of the period's volume that should have sold is s = V(start, as_of) / V(start, end), and
//! a product counted at c is projected to P = c / s: the period's run rate, shaped by
//! history. Every product is assumed to follow the shop's shape, so the projected top K is
//! the counted top K, re-scaled.
//!
//! The interval. The relative error of P has two parts, taken as independent:
//! - the shape: how far one week's s strays from the mean's, σ_shape (the spread of 1/s
//!   over the history weeks that are complete, times √(1 + 1/weeks));
//! - the count: the rest of the period's sales arrive at random, relative variance
//!   d·(1 − s)/(s·P), where d is the dispersion of products' hourly counts around the
//!   shop's hourly shape (Pearson χ² over degrees of freedom; 1 for a Poisson process),
//!   measured on the top products of the last closed day.
//!
//! The 80 % interval is P·(1 ± 1.2816·σ), widened by the speed layer's own error bound
//! over s, and never below what is already counted (less that bound).

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use topk_core::time::{decompose, hour_of_week, Bucket, Granularity};
use topk_core::timestamp::format_rfc3339;
use topk_core::{DAY_MS, HOUR_MS};
use topk_store::{By, ServingStore, StoreError};
use utoipa::ToSchema;

use super::{top, Freshness, Period, QueryError, Rules, Source, TopAnswer};

/// How many weeks of hourly totals the shape is learnt from.
pub const HISTORY_WEEKS: usize = 4;
/// The interval's nominal coverage, and the normal quantile that gives it.
pub const INTERVAL: f64 = 0.8;
const Z: f64 = 1.281_551_6;
const WEEK_MS: i64 = 7 * DAY_MS;
const WEEK_HOURS: usize = 168;
/// Products of the last closed day whose hourly counts measure the dispersion.
const DISPERSION_PRODUCTS: usize = 100;

/// One projected row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectedRow {
    pub rank: usize,
    pub product_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Counted so far (an estimate where `source` is `speed`; `counted ± counted_error_bound`).
    pub counted: i64,
    pub counted_error_bound: i64,
    /// Revenue counted so far.
    pub counted_revenue_cents: i64,
    /// Projected quantity at the end of the period, and its interval (`interval`).
    pub projected: i64,
    pub projected_low: i64,
    pub projected_high: i64,
    /// Projected revenue at the end of the period (revenue so far over `expected_share`).
    pub projected_revenue_cents: i64,
    /// Where the counted numbers come from.
    pub source: Source,
}

/// How the projection was made, so a reader can judge it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectionMethod {
    /// Weeks of hourly totals that had any data (of [`HISTORY_WEEKS`]); 0: no history, so
    /// the shape is flat and the projection is the run rate alone.
    pub history_weeks: usize,
    /// Of those, the weeks with every hour, from which `shape_spread` is measured.
    pub complete_weeks: usize,
    /// σ_shape: the relative spread of the projection due to the shape (0 when fewer than
    /// two complete weeks).
    pub shape_spread: f64,
    /// d: the dispersion of products' hourly counts around the shop's shape (1 for a
    /// Poisson process); absent when the last closed day has no exact hours, and then 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispersion: Option<f64>,
}

/// An open period's projected end: every number here is `projected` unless it says
/// `counted`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectionAnswer {
    /// Always `projected`: these numbers are not counted sales.
    #[schema(example = "projected")]
    pub kind: &'static str,
    #[schema(value_type = String, example = "day")]
    pub granularity: Granularity,
    pub label: String,
    pub from: String,
    pub to: String,
    /// The counts are as of this time.
    pub as_of: String,
    /// The share of the period's time that has passed.
    pub elapsed: f64,
    /// s: the share of the period's volume that history expects by `as_of`.
    pub expected_share: f64,
    pub k: usize,
    #[schema(example = "quantity")]
    pub by: &'static str,
    /// The nominal coverage of `projected_low`..`projected_high` (0.8).
    pub interval: f64,
    /// The period's total so far, and projected (with its interval), when it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counted_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_total_low: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected_total_high: Option<i64>,
    /// Whether the counted rows are exact (Kappa) or the speed layer's estimates.
    pub counted_exact: bool,
    /// How many leading rows are certainly the counted top ones so far.
    pub certain_rows: usize,
    pub rows: Vec<ProjectedRow>,
    pub method: ProjectionMethod,
    pub freshness: Freshness,
    pub notes: Vec<String>,
}

/// The projected end of an open bucket, from what is counted at `rules.now_ms`.
pub fn project(
    store: &mut dyn ServingStore,
    bucket: Bucket,
    k: usize,
    by: By,
    rules: Rules,
) -> Result<ProjectionAnswer, QueryError> {
    let what = format!("{} {bucket}", bucket.granularity.as_str());
    if bucket.end_ms() <= rules.now_ms {
        return Err(QueryError::Refused(format!(
            "{what} has ended: its numbers are counted, not projected (ask /api/v1/top)"
        )));
    }
    if bucket.start_ms >= rules.now_ms {
        return Err(QueryError::Refused(format!("{what} has not started: nothing is counted to project from")));
    }
    // Counted so far: the exact hours (or, until the batch layer has them, the speed
    // layer's) and the open hour, rather than the bucket's own sketch, whose bound is wider.
    let hour = Bucket::containing(Granularity::Hour, rules.now_ms);
    let mut so_far = if hour.start_ms > bucket.start_ms {
        decompose(bucket.start_ms, hour.start_ms).map_err(|e| QueryError::Refused(e.to_string()))?
    } else {
        Vec::new()
    };
    so_far.push(hour);
    let counted = top(store, so_far, k, by, rules)?;
    Ok(project_counted(store, bucket, counted, rules.now_ms, by)?)
}

/// The projection of `bucket` from `counted`, its top K as of `as_of`.
pub fn project_counted(
    store: &mut dyn ServingStore,
    bucket: Bucket,
    counted: TopAnswer,
    as_of: i64,
    by: By,
) -> Result<ProjectionAnswer, StoreError> {
    let (start, end) = (bucket.start_ms, bucket.end_ms());
    let as_of = as_of.clamp(start + 1, end);
    let elapsed = (as_of - start) as f64 / (end - start) as f64;
    let day_start = as_of.div_euclid(DAY_MS) * DAY_MS;
    let shape = Shape::learn(store, day_start)?;
    let dispersion = dispersion(store, Bucket::containing(Granularity::Day, day_start).prev())?;
    let s = shape.share(&shape.mean, start, as_of, end);
    let spread = shape.spread(start, as_of, end);
    let d = dispersion.unwrap_or(1.0);
    let interval = |count: i64, error: i64| -> (i64, i64, i64) {
        let p = count as f64 / s;
        let relative = (spread * spread + d * (1.0 - s) / (s * p.max(1.0))).sqrt();
        let half = Z * relative * p.abs() + error as f64 / s;
        let low = (p - half).max((count - error) as f64);
        (p.round() as i64, low.floor() as i64, (p + half).ceil() as i64)
    };
    let rows: Vec<ProjectedRow> = counted
        .rows
        .into_iter()
        .map(|r| {
            let (projected, projected_low, projected_high) = interval(r.count, r.error_bound);
            ProjectedRow {
                rank: r.rank,
                product_id: r.product_id,
                name: r.name,
                counted: r.count,
                counted_error_bound: r.error_bound,
                counted_revenue_cents: r.revenue_cents,
                projected,
                projected_low,
                projected_high,
                projected_revenue_cents: (r.revenue_cents as f64 / s).round() as i64,
                source: r.source,
            }
        })
        .collect();
    let totals = counted.total.map(|t| interval(t, 0));
    let mut notes = counted.notes;
    notes.insert(
        0,
        format!(
            "projected: {:.0} % of the period's time has passed and history expects {:.0} % of its volume by now, so \
             each count so far is scaled by {:.2}; the projected top K is the counted one, assuming every product \
             follows the shop's shape",
            100.0 * elapsed,
            100.0 * s,
            1.0 / s
        ),
    );
    if shape.weeks == 0 {
        notes.push("no exact hourly history before this day: the shape is flat, the run rate alone".into());
    } else if shape.complete_weeks.len() < 2 {
        notes.push(format!(
            "fewer than two complete weeks of hourly history ({} with data): the interval leaves out how much the \
             shape varies",
            shape.weeks
        ));
    }
    if dispersion.is_none() {
        notes.push("the last closed day has no exact hours: the interval assumes Poisson arrivals (d = 1)".into());
    }
    if by == By::Revenue {
        notes.push("the interval is of quantities; revenue is projected by the same scale, without one".into());
    }
    Ok(ProjectionAnswer {
        kind: "projected",
        granularity: bucket.granularity,
        label: bucket.to_string(),
        from: format_rfc3339(start),
        to: format_rfc3339(end),
        as_of: format_rfc3339(as_of),
        elapsed,
        expected_share: s,
        k: counted.k,
        by: by.as_str(),
        interval: INTERVAL,
        counted_total: counted.total,
        projected_total: totals.map(|t| t.0),
        projected_total_low: totals.map(|t| t.1),
        projected_total_high: totals.map(|t| t.2),
        counted_exact: counted.exact,
        certain_rows: counted.certain_rows,
        rows,
        method: ProjectionMethod {
            history_weeks: shape.weeks,
            complete_weeks: shape.complete_weeks.len(),
            shape_spread: spread,
            dispersion,
        },
        freshness: counted.freshness,
        notes,
    })
}

/// The volume of each hour of the week, as history has it.
struct Shape {
    /// The mean over the weeks with data, holes filled (see [`Shape::learn`]).
    mean: Vec<f64>,
    /// The complete weeks, each on its own.
    complete_weeks: Vec<Vec<f64>>,
    /// The weeks with any data.
    weeks: usize,
}

impl Shape {
    /// The exact hourly totals of the [`HISTORY_WEEKS`] weeks before `before_ms`. An hour
    /// of the week no week has is filled with the mean of the same hour of the day, else
    /// of every hour, else 1 (flat).
    fn learn(store: &mut dyn ServingStore, before_ms: i64) -> Result<Shape, StoreError> {
        let from = before_ms - HISTORY_WEEKS as i64 * WEEK_MS;
        let mut weeks = vec![vec![None; WEEK_HOURS]; HISTORY_WEEKS];
        for e in store.exact_buckets(Granularity::Hour, from, before_ms)? {
            let w = ((before_ms - 1 - e.bucket.start_ms) / WEEK_MS) as usize;
            if let Some(week) = weeks.get_mut(w) {
                week[hour_of_week(e.bucket.start_ms)] = Some(e.count.max(0) as f64);
            }
        }
        let slots: Vec<Option<f64>> = (0..WEEK_HOURS).map(|h| average(weeks.iter().filter_map(|w| w[h]))).collect();
        let overall = average(slots.iter().flatten().copied()).unwrap_or(1.0);
        let by_hour_of_day: Vec<Option<f64>> =
            (0..24).map(|hd| average((0..7).filter_map(|wd| slots[wd * 24 + hd]))).collect();
        let complete_weeks: Vec<Vec<f64>> = weeks
            .iter()
            .filter(|w| w.iter().all(Option::is_some))
            .map(|w| w.iter().map(|v| v.unwrap_or(0.0)).collect())
            .collect();
        Ok(Shape {
            mean: slots.iter().enumerate().map(|(h, m)| m.or(by_hour_of_day[h % 24]).unwrap_or(overall)).collect(),
            weeks: weeks.iter().filter(|w| w.iter().any(Option::is_some)).count(),
            complete_weeks,
        })
    }

    /// V(from, to) under `profile`: each hour's volume, prorated where the span cuts it.
    fn volume(profile: &[f64], from: i64, to: i64) -> f64 {
        let mut total = 0.0;
        let mut h = from.div_euclid(HOUR_MS) * HOUR_MS;
        while h < to {
            let overlap = (to.min(h + HOUR_MS) - from.max(h)) as f64 / HOUR_MS as f64;
            total += overlap * profile[hour_of_week(h)];
            h += HOUR_MS;
        }
        total
    }

    /// s: the share of `[start, end)`'s volume that falls before `as_of` (the share of its
    /// time where the profile has no volume at all).
    fn share(&self, profile: &[f64], start: i64, as_of: i64, end: i64) -> f64 {
        let whole = Self::volume(profile, start, end);
        let share = Self::volume(profile, start, as_of) / whole;
        if whole > 0.0 && share > 0.0 {
            share
        } else {
            (as_of - start) as f64 / (end - start) as f64
        }
    }

    /// σ_shape: the relative spread of 1/s over the complete weeks, for one new week.
    fn spread(&self, start: i64, as_of: i64, end: i64) -> f64 {
        let n = self.complete_weeks.len();
        if n < 2 {
            return 0.0;
        }
        let scales: Vec<f64> = self.complete_weeks.iter().map(|w| 1.0 / self.share(w, start, as_of, end)).collect();
        let mean = scales.iter().sum::<f64>() / n as f64;
        let variance = scales.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (variance.sqrt() / mean) * (1.0 + 1.0 / n as f64).sqrt()
    }
}

/// d: the dispersion of the top products' hourly counts in `day` around the day's hourly
/// shape (Pearson χ² over its degrees of freedom, at least 1); `None` when the day has no
/// exact list or fewer than two exact hours.
fn dispersion(store: &mut dyn ServingStore, day: Bucket) -> Result<Option<f64>, StoreError> {
    let top = store.top_list(day, By::Quantity, DISPERSION_PRODUCTS)?;
    let hours = store.exact_buckets(Granularity::Hour, day.start_ms, day.end_ms())?;
    if top.is_empty() || hours.len() < 2 {
        return Ok(None);
    }
    let ids: Vec<&str> = top.iter().map(|r| r.product_id.as_str()).collect();
    let mut counts: Vec<HashMap<String, i64>> = Vec::with_capacity(hours.len());
    for h in &hours {
        counts.push(store.product_sums(h.bucket, &ids)?.into_iter().map(|p| (p.product_id, p.count)).collect());
    }
    let day_total: f64 = hours.iter().map(|h| h.count.max(0) as f64).sum();
    let (mut chi2, mut dof) = (0.0, 0usize);
    for id in &ids {
        let of_product: Vec<f64> = counts.iter().map(|c| c.get(*id).copied().unwrap_or(0).max(0) as f64).collect();
        let total: f64 = of_product.iter().sum();
        if total <= 0.0 || day_total <= 0.0 {
            continue;
        }
        for (x, h) in of_product.iter().zip(&hours) {
            let expected = total * h.count.max(0) as f64 / day_total;
            if expected > 0.0 {
                chi2 += (x - expected).powi(2) / expected;
            }
        }
        dof += hours.len() - 1;
    }
    Ok((dof > 0).then(|| (chi2 / dof as f64).max(1.0)))
}

/// How a projection made at `at` of a closed period did against what was then counted.
#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    pub bucket: Bucket,
    /// The share of the period's time at which it was projected.
    pub at: f64,
    /// Weeks of hourly history the shape was learnt from.
    pub history_weeks: usize,
    /// How many of the final top `k` the projected top `k` held, over `k`.
    pub top_overlap: f64,
    /// The median absolute percentage error of the projected rows' counts.
    pub median_ape: f64,
    /// The share of projected rows whose final count lies in their interval.
    pub coverage: f64,
    /// Each projected row's absolute percentage error, and whether its interval held.
    pub errors: Vec<(f64, bool)>,
}

/// The projection of a closed, exact `bucket` made at `at` of its time (on an hour
/// boundary), from the exact hours before that, scored against its exact end. `None`
/// when the bucket is not exact.
pub fn backtest(
    store: &mut dyn ServingStore,
    bucket: Bucket,
    at: f64,
    k: usize,
) -> Result<Option<Backtest>, QueryError> {
    let rules = Rules { now_ms: bucket.end_ms(), lambda: true };
    if Period::load(store, vec![bucket], rules)?.source(bucket) != Source::Batch {
        return Ok(None);
    }
    let span = bucket.end_ms() - bucket.start_ms;
    let as_of = bucket.start_ms + ((at * span as f64) as i64).div_euclid(HOUR_MS).max(1) * HOUR_MS;
    let so_far = decompose(bucket.start_ms, as_of).map_err(|e| QueryError::Refused(e.to_string()))?;
    let counted = top(store, so_far, k, By::Quantity, rules)?;
    let projection = project_counted(store, bucket, counted, as_of, By::Quantity)?;
    let finals: HashSet<String> = store.top_list(bucket, By::Quantity, k)?.into_iter().map(|r| r.product_id).collect();
    let ids: Vec<&str> = projection.rows.iter().map(|r| r.product_id.as_str()).collect();
    let ended: HashMap<String, i64> =
        store.product_sums(bucket, &ids)?.into_iter().map(|p| (p.product_id, p.count)).collect();
    let errors: Vec<(f64, bool)> = projection
        .rows
        .iter()
        .filter_map(|r| {
            let end = *ended.get(&r.product_id)?;
            (end > 0).then(|| {
                let ape = (r.projected - end).abs() as f64 / end as f64;
                (ape, (r.projected_low..=r.projected_high).contains(&end))
            })
        })
        .collect();
    let held = projection.rows.iter().filter(|r| finals.contains(&r.product_id)).count();
    let mut apes: Vec<f64> = errors.iter().map(|e| e.0).collect();
    apes.sort_by(f64::total_cmp);
    Ok(Some(Backtest {
        bucket,
        at: projection.elapsed,
        history_weeks: projection.method.history_weeks,
        top_overlap: held as f64 / k.min(finals.len()).max(1) as f64,
        median_ape: median(&apes),
        coverage: errors.iter().filter(|e| e.1).count() as f64 / errors.len().max(1) as f64,
        errors,
    }))
}

/// The mean of some values, `None` of none.
fn average(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(sum, n), v| (sum + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The median of sorted values (0 when there are none).
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}
