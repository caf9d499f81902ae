//! A flush batch's rows summed per bucket, breakdown and product: what each open
//! bucket's sketches absorb.
//!
//! A flush batch holds one row per (product, hour, dimension values), sorted by hour and
//! product, and each row counts in five buckets (hour to year) under the global key and one
//! key per breakdown set. Hashing every product id once per bucket and key (15 times a row
//! with the default two sets) was half of the speed role's time in a replay (a profile
//! of the 10M-event replay, BENCHMARKS.md): instead each (hour, product)'s rows, which
//! lie next to each other, are summed per key once, and the coarser buckets take the
//! hour's lists whole.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use topk_core::flush::AggRow;
use topk_core::partition::sketch_key;
use topk_core::time::{Bucket, Granularity};

use crate::sketch::Row;

/// The rows of `rows` summed per (bucket, key) and product, for every bucket of every
/// granularity that contains a row's hour and every key `keys_of` gives its row (by its
/// index in `rows`; the keys are indexes into the caller's names), leaving out the
/// (bucket, key) pairs that `wanted` refuses. Each list has each product once (but see [`each_product_once`]), whatever the order of
/// `rows`.
pub(crate) fn sum_per_bucket<'a, 'k>(
    rows: &'a [AggRow],
    keys_of: impl Fn(usize) -> &'k [u32],
    mut wanted: impl FnMut(Bucket, u32) -> bool,
) -> Vec<((Bucket, u32), Vec<Row<'a>>)> {
    // Per hour and key: the products' sums, one row per run of the same (hour, product).
    let mut hours: HashMap<(i64, u32), Vec<Row<'a>>, RandomState> = HashMap::default();
    let mut run: Vec<(u32, i64, i64)> = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let first = &rows[start];
        let same = |r: &AggRow| r.hour_ms == first.hour_ms && r.product_id == first.product_id;
        let end = start + rows[start..].iter().take_while(|r| same(r)).count();
        run.clear();
        for (i, r) in rows.iter().enumerate().take(end).skip(start) {
            run.extend(keys_of(i).iter().map(|&k| (k, r.count, r.revenue_cents)));
        }
        // A product's rows differ in their dimensions: few keys, so a sort is cheap.
        run.sort_unstable_by_key(|&(k, ..)| k);
        run.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                kept.1 = kept.1.saturating_add(next.1);
                kept.2 = kept.2.saturating_add(next.2);
            }
            same
        });
        let key = sketch_key(first.product_id.as_bytes());
        for &(k, quantity, revenue_cents) in &run {
            let row = Row { product_id: &first.product_id, key, quantity, revenue_cents };
            hours.entry((first.hour_ms, k)).or_default().push(row);
        }
        start = end;
    }
    // Per bucket and key: the hours it takes rows from.
    let mut members: HashMap<(Bucket, u32), Vec<i64>, RandomState> = HashMap::default();
    for &(hour_ms, k) in hours.keys() {
        for g in Granularity::ALL {
            let bucket = Bucket::containing(g, hour_ms);
            if wanted(bucket, k) {
                members.entry((bucket, k)).or_default().push(hour_ms);
            }
        }
    }
    // Buckets of the same hours (a batch's week, month and year, mostly) share one sum.
    let mut sums: HashMap<(u32, Vec<i64>), Vec<Row<'a>>, RandomState> = HashMap::default();
    let mut out = Vec::with_capacity(members.len());
    for ((bucket, k), mut of) in members {
        of.sort_unstable();
        let rows = sums.entry((k, of)).or_insert_with_key(|(k, of)| {
            let rows = of.iter().flat_map(|&h| &hours[&(h, *k)]).copied().collect();
            each_product_once(rows, of.len())
        });
        out.push(((bucket, k), rows.clone()));
    }
    out
}

/// The rows with each product once (its rows summed). One hour's rows in product-id order
/// (from a sorted batch) are that already; others are sorted by the products' sketch keys
/// alone (comparing ids in the sort was most of the speed role's time), so two products
/// whose 64-bit keys collide may stay apart and one of them appear twice: Kappa sums it by
/// id, and the sketches (which know a product by its key) absorb it as two rows, as they
/// would over two flushes.
fn each_product_once(mut rows: Vec<Row<'_>>, hours: usize) -> Vec<Row<'_>> {
    if hours == 1 && rows.windows(2).all(|w| w[0].product_id < w[1].product_id) {
        return rows;
    }
    rows.sort_unstable_by_key(|r| r.key);
    rows.dedup_by(|next, kept| {
        let same = next.key == kept.key && next.product_id == kept.product_id;
        if same {
            kept.quantity = kept.quantity.saturating_add(next.quantity);
            kept.revenue_cents = kept.revenue_cents.saturating_add(next.revenue_cents);
        }
        same
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use topk_core::breakdown::DimValues;

    fn row(product: &str, hour: i64, country: &str, count: i64) -> AggRow {
        AggRow {
            product_id: product.into(),
            hour_ms: hour * 3_600_000,
            count,
            revenue_cents: 100 * count,
            earliest_ts_ms: hour * 3_600_000,
            latest_ts_ms: hour * 3_600_000,
            dims: DimValues::from([country.into(), String::new(), String::new()]),
        }
    }

    /// Per (bucket, key): (product, quantity, revenue) in product-id order.
    type Sums = Vec<((Bucket, u32), Vec<(String, i64, i64)>)>;

    /// The naive sum the function replaces: a map per (bucket, key) of product sums.
    fn naive(rows: &[AggRow], keys: &[Vec<u32>]) -> Sums {
        let mut sums: std::collections::BTreeMap<(Bucket, u32), std::collections::BTreeMap<String, (i64, i64)>> =
            Default::default();
        for r in rows {
            for g in Granularity::ALL {
                for &k in keys_for(r, keys) {
                    let e = sums.entry((Bucket::containing(g, r.hour_ms), k)).or_default();
                    let e = e.entry(r.product_id.clone()).or_default();
                    e.0 += r.count;
                    e.1 += r.revenue_cents;
                }
            }
        }
        sums.into_iter().map(|(id, m)| (id, m.into_iter().map(|(p, (q, r))| (p, q, r)).collect())).collect()
    }

    /// Key 0 is the global list, key `c` (≥ 1) country `C{c}`: `keys[c]` is a row's keys.
    fn keys_for<'k>(r: &AggRow, keys: &'k [Vec<u32>]) -> &'k [u32] {
        &keys[r.dims[0].trim_start_matches('C').parse().unwrap_or(0)]
    }

    fn keys() -> Vec<Vec<u32>> {
        vec![vec![0], vec![0, 1], vec![0, 2], vec![0, 3]]
    }

    /// The lists by (bucket, key), each by product id (a product twice stays twice).
    fn sorted(out: Vec<((Bucket, u32), Vec<Row<'_>>)>) -> Sums {
        let mut out: Sums = out
            .into_iter()
            .map(|(id, rows)| {
                let mut rows: Vec<_> =
                    rows.into_iter().map(|r| (r.product_id.to_string(), r.quantity, r.revenue_cents)).collect();
                rows.sort();
                (id, rows)
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    #[test]
    fn sums_per_bucket_key_and_product_match_a_naive_sum_in_any_row_order() {
        let hour = 493_000; // 2026-03-29T16
        let mut rows = vec![
            row("a", hour, "C1", 2),
            row("a", hour, "C2", 3),
            row("a", hour, "C1", -1),
            row("b", hour, "C1", 5),
            row("b", hour, "", 1),
            row("a", hour + 1, "C3", 7),
            row("c", hour + 1, "C1", 1),
            row("a", hour + 30, "C2", 4),
        ];
        let keys = keys();
        for order in 0..3 {
            match order {
                0 => rows.sort_by(|a, b| (a.hour_ms, &a.product_id).cmp(&(b.hour_ms, &b.product_id))),
                1 => rows.reverse(),
                _ => rows.rotate_left(3),
            }
            let got = sorted(sum_per_bucket(&rows, |i| keys_for(&rows[i], &keys), |_, _| true));
            assert_eq!(got, naive(&rows, &keys), "order {order}");
            for (_, products) in &got {
                assert!(products.windows(2).all(|w| w[0].0 < w[1].0), "each product once");
            }
        }
        // The day of `hour`, global: a 2 - 1 + 3 + 7 = 11 (hour + 30 is the next day), b 6, c 1.
        let day = Bucket::containing(Granularity::Day, hour * 3_600_000);
        let got = sorted(sum_per_bucket(&rows, |i| keys_for(&rows[i], &keys), |_, _| true));
        let global_day = &got.iter().find(|(id, _)| *id == (day, 0)).expect("the day's global list").1;
        assert_eq!(global_day, &[("a".into(), 11, 1100), ("b".into(), 6, 600), ("c".into(), 1, 100)]);
    }

    #[test]
    fn refused_buckets_and_keys_are_left_out() {
        let hour = 493_000;
        let rows = vec![row("a", hour, "C1", 2), row("b", hour, "C2", 3)];
        let keys = keys();
        let wanted = |b: Bucket, k: u32| b.granularity == Granularity::Hour && k != 2;
        let got = sorted(sum_per_bucket(&rows, |i| keys_for(&rows[i], &keys), wanted));
        let ids: Vec<_> = got.iter().map(|(id, _)| *id).collect();
        let h = Bucket::containing(Granularity::Hour, hour * 3_600_000);
        assert_eq!(ids, [(h, 0), (h, 1)]);
        assert_eq!(got[0].1, [("a".into(), 2, 200), ("b".into(), 3, 300)]);
        assert_eq!(got[1].1, [("a".into(), 2, 200)]);
    }
}
