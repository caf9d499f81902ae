//! Worst sellers (`order=asc`): the K least-selling products of a period whose every
//! bucket is exact, counting each catalog product that did not sell in it as 0.
//!
//! Only exact buckets can answer: a sketch keeps candidates for the top of a list and
//! knows nothing of its bottom, so an open (Lambda), approximate, pending or missing
//! bucket makes the request a refusal that says which buckets and why. In Kappa the
//! stream's exact rows of open buckets answer (the answer says `open`).
//!
//! The catalog holds every product that ever sold (and those imported), so "no sale in
//! the period" includes products that first sold after it.

use std::collections::HashMap;

use topk_core::time::Bucket;
use topk_core::timestamp::format_rfc3339;
use topk_store::{By, ProductSum, ServingStore, StoreError};

use super::{
    names, span, value, Freshness, Period, QueryError, Rules, Source, Sums, TopAnswer, TopRow, WHOLE_SUM_ROWS,
};

/// Catalog ids read per page while looking for products that did not sell.
const CATALOG_PAGE: usize = 5_000;

/// The `k` least-selling products by `by` over `buckets` (disjoint), least first, ties by
/// product id.
pub fn bottom(
    store: &mut dyn ServingStore,
    buckets: Vec<Bucket>,
    k: usize,
    by: By,
    rules: Rules,
) -> Result<TopAnswer, QueryError> {
    let (from_ms, to_ms) = span(&buckets);
    let period = Period::load(store, buckets, rules)?;
    let not_exact: Vec<String> = period
        .buckets
        .iter()
        .filter_map(|&b| {
            let why = match period.source(b) {
                Source::Batch => return None,
                _ if rules.lambda && b.end_ms() > rules.now_ms => "open",
                Source::Speed => "approximate",
                Source::Pending => "waiting for a re-roll",
                Source::None => "no exact data",
            };
            Some(format!("{b} ({why})"))
        })
        .collect();
    if !not_exact.is_empty() {
        let shown = not_exact.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = not_exact.len().saturating_sub(5);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        return Err(QueryError::Refused(format!(
            "order=asc needs every bucket of the period to be exact (the speed layer's sketches know the top of a \
             list, not its bottom); not exact: {shown}{more}"
        )));
    }
    let exact: Vec<_> = period.buckets.iter().filter_map(|b| period.exact.get(b)).collect();
    let rows_to_sum: i64 = exact.iter().map(|e| e.products).sum();
    if rows_to_sum > WHOLE_SUM_ROWS {
        return Err(QueryError::Refused(format!(
            "order=asc sums every product of the period: {rows_to_sum} bucket rows, more than the {WHOLE_SUM_ROWS} \
             one answer may sum; ask for a shorter period or a coarser granularity"
        )));
    }
    let mut sums: HashMap<String, Sums> = HashMap::new();
    for e in &exact {
        for ProductSum { product_id, count, revenue_cents } in store.bucket_rows(e.bucket)? {
            let s = sums.entry(product_id).or_default();
            s.count += count;
            s.revenue += revenue_cents;
        }
    }
    let worst_first = |(a, x): &(String, Sums), (b, y): &(String, Sums)| {
        value(by, x.count, x.revenue).cmp(&value(by, y.count, y.revenue)).then_with(|| a.cmp(b))
    };
    // The first k catalog products that did not sell (0 each), in id order, merged among
    // the sold ones: after the negative (refunds) and before the positive.
    let unsold = unsold_products(store, &sums, k)?;
    let mut sold: Vec<(String, Sums)> = sums.into_iter().collect();
    if sold.len() > k {
        sold.select_nth_unstable_by(k, worst_first);
        sold.truncate(k);
    }
    sold.sort_unstable_by(worst_first);
    let mut ranked: Vec<(String, Sums)> =
        sold.into_iter().chain(unsold.into_iter().map(|id| (id, Sums::default()))).collect();
    ranked.sort_unstable_by(worst_first);
    ranked.truncate(k);

    let total: i64 = exact.iter().map(|e| value(by, e.count, e.revenue_cents)).sum();
    let names = names(store, ranked.iter().map(|(id, _)| id.as_str()))?;
    let rows = ranked
        .into_iter()
        .enumerate()
        .map(|(i, (product_id, s))| TopRow {
            rank: i + 1,
            name: names.get(&product_id).cloned(),
            share: (total > 0).then(|| value(by, s.count, s.revenue) as f64 / total as f64),
            product_id,
            count: s.count,
            error_bound: 0,
            revenue_cents: s.revenue,
            source: Source::Batch,
            previous_rank: None,
            rank_change: None,
        })
        .collect::<Vec<_>>();
    Ok(TopAnswer {
        from: format_rfc3339(from_ms),
        to: format_rfc3339(to_ms),
        k,
        by: by.as_str(),
        order: "asc",
        exact: true,
        open: to_ms > rules.now_ms,
        certain_rows: rows.len(),
        unlisted_bound: None,
        rows,
        baseline_from: None,
        baseline_to: None,
        baseline_depth: None,
        total: Some(total),
        freshness: Freshness { approximate_as_of: None, age_ms: None, computed_at: format_rfc3339(rules.now_ms) },
        buckets: period.states(),
        notes: Vec::new(),
        breakdown: None,
    })
}

/// Up to `k` catalog ids, in byte order, of products without a row in `sold`.
fn unsold_products(
    store: &mut dyn ServingStore,
    sold: &HashMap<String, Sums>,
    k: usize,
) -> Result<Vec<String>, StoreError> {
    let mut unsold = Vec::with_capacity(k);
    let mut after = String::new();
    while unsold.len() < k {
        let page = store.catalog_ids_after(&after, CATALOG_PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.clone();
        let full = page.len() == CATALOG_PAGE;
        unsold.extend(page.into_iter().filter(|id| !sold.contains_key(id)).take(k - unsold.len()));
        if !full {
            break;
        }
    }
    Ok(unsold)
}
