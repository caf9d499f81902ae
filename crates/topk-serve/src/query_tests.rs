use super::*;
use topk_core::random::{Rng, Zipf};
use topk_store::{BatchStore, Product, SpeedStore, SpeedWrite, SqlStore};

/// Tuesday 2026-12-01.
const DAY0: i64 = 1_796_083_200_000;
const DAY: i64 = 86_400_000;

/// These tests write exact rows as Kappa does (open buckets included).
fn kappa(now_ms: i64) -> Rules {
    Rules { now_ms, lambda: false }
}

fn day(i: i64) -> Bucket {
    Bucket::containing(Granularity::Day, DAY0 + i * DAY)
}

/// Random exact days: Zipf-ish counts over `products`, written as Kappa writes them
/// with top lists `depth` deep. Returns the truth per product, summed over the days.
fn exact_days(
    store: &mut SqlStore,
    days: &[Bucket],
    products: u64,
    depth: usize,
    seed: u64,
) -> HashMap<String, (i64, i64)> {
    let mut rng = Rng::new(seed);
    let zipf = Zipf::new(products, 0.9);
    let mut truth: HashMap<String, (i64, i64)> = HashMap::new();
    for &b in days {
        let mut sums: HashMap<String, (i64, i64)> = HashMap::new();
        for _ in 0..20_000 {
            let id = format!("p{:05}", zipf.sample(&mut rng));
            let price = 100 + (rng.below(50) as i64) * 10;
            let e = sums.entry(id).or_default();
            e.0 += 1;
            e.1 += price;
        }
        let rows: Vec<ProductSum> = sums
            .iter()
            .map(|(id, &(count, revenue_cents))| ProductSum { product_id: id.clone(), count, revenue_cents })
            .collect();
        store.write_exact("test", &[(b, String::new(), rows)], depth, &[], &[]).unwrap();
        for (id, (c, r)) in sums {
            let t = truth.entry(id).or_default();
            t.0 += c;
            t.1 += r;
        }
    }
    truth
}

fn brute_top(truth: &HashMap<String, (i64, i64)>, k: usize, by: By) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = truth.iter().map(|(id, &(c, r))| (id.clone(), value(by, c, r))).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn got(answer: &TopAnswer, by: By) -> Vec<(String, i64)> {
    answer.rows.iter().map(|r| (r.product_id.clone(), value(by, r.count, r.revenue_cents))).collect()
}

#[test]
fn exact_ranges_equal_brute_force_through_deep_and_short_lists() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
    let days: Vec<Bucket> = (0..4).map(day).collect();
    // Deep lists (the default): the threshold algorithm certifies from the lists.
    let truth = exact_days(&mut store, &days, 5_000, 1000, 7);
    for by in By::ALL {
        for k in [1, 3, 10, 100, 1000] {
            let a = top(&mut store, days.clone(), k, by, kappa(0)).unwrap();
            assert!(a.exact, "k={k} by={by:?}: {:?}", a.notes);
            assert_eq!(got(&a, by), brute_top(&truth, k, by), "k={k} by={by:?}");
            let total: i64 = truth.values().map(|&(c, r)| value(by, c, r)).sum();
            assert_eq!(a.total, Some(total));
            assert!(a.rows.iter().all(|r| r.source == Source::Batch && r.error_bound == 0));
        }
    }
    // Lists only 5 deep: the answer must still be exact (whole buckets are summed).
    let short: Vec<Bucket> = (10..13).map(day).collect();
    let truth = exact_days(&mut store, &short, 5_000, 5, 8);
    for k in [1, 5, 10, 50] {
        let a = top(&mut store, short.clone(), k, By::Quantity, kappa(0)).unwrap();
        assert!(a.exact);
        assert_eq!(got(&a, By::Quantity), brute_top(&truth, k, By::Quantity), "k={k}");
    }
    // Past the whole-sum budget: the counts stay exact and the certain prefix is right.
    let period = Period::load(&mut store, short.clone(), kappa(0)).unwrap();
    let exact: Vec<&ExactBucket> = short.iter().map(|b| &period.exact[b]).collect();
    let r = rank(&mut store, &exact, &[], &[], 50, By::Quantity, 0).unwrap();
    assert!(r.certain < 50, "5-deep lists cannot prove a top 50");
    let want = brute_top(&truth, 50, By::Quantity);
    for (i, (id, sums)) in r.rows.iter().enumerate() {
        assert_eq!(sums.count, truth[id].0, "{id}: listed counts are exact sums");
        if i < r.certain {
            assert_eq!((id, sums.count), (&want[i].0, want[i].1), "certain rank {}", i + 1);
        }
    }
    // One bucket is answered from its own list.
    let single = exact_days(&mut store, &[day(20)], 5_000, 1000, 9);
    let a = top(&mut store, vec![day(20)], 10, By::Revenue, kappa(0)).unwrap();
    assert_eq!(got(&a, By::Revenue), brute_top(&single, 10, By::Revenue));
}

#[test]
fn half_exact_half_approximate_ranges_carry_the_speed_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
    let exact: Vec<Bucket> = (0..2).map(day).collect();
    let mut truth = exact_days(&mut store, &exact, 300, 1000, 3);
    // Two approximate days: the speed layer lists 40 products with bounds that hold,
    // and says the rest sold at most 9 each.
    let mut rng = Rng::new(5);
    let mut writes = Vec::new();
    for b in [day(2), day(3)] {
        let mut rows = Vec::new();
        for i in 0..60 {
            let id = format!("p{i:05}");
            let true_count = 300 - i * 4;
            let error = rng.below(5) as i64;
            let shown = true_count + error - 2 * (rng.below(error as u64 + 1) as i64);
            let t = truth.entry(id.clone()).or_default();
            t.0 += true_count;
            if i < 40 {
                rows.push(SpeedRow { product_id: id, count: shown, error, revenue_cents: 0, updated_ms: 1_000 });
            }
        }
        writes.push(SpeedWrite {
            breakdown: String::new(),
            bucket: b,
            rows,
            sketches: Vec::new(),
            finished: false,
            ended: false,
            unlisted_bound: 300 - 40 * 4,
            total_count: 99,
        });
    }
    store.write_speed("speed", &writes, &[], None, &[]).unwrap();
    let days: Vec<Bucket> = (0..4).map(day).collect();
    let a = top(&mut store, days, 10, By::Quantity, kappa(5_000)).unwrap();
    assert!(!a.exact);
    assert_eq!(
        a.buckets.iter().map(|b| b.source).collect::<Vec<_>>(),
        [Source::Batch, Source::Batch, Source::Speed, Source::Speed]
    );
    assert_eq!(a.freshness.age_ms, Some(4_000));
    assert_eq!(a.rows.len(), 10);
    for r in &a.rows {
        assert_eq!(r.source, Source::Speed);
        let t = truth[&r.product_id].0;
        assert!((r.count - t).abs() <= r.error_bound, "{}: {} ± {} vs true {t}", r.product_id, r.count, r.error_bound);
    }
    // The true top 10 is certain here: the 10th is far above anything unlisted.
    let want: Vec<String> = brute_top(&truth, 10, By::Quantity).into_iter().map(|(id, _)| id).collect();
    let mut listed: Vec<String> = a.rows.iter().map(|r| r.product_id.clone()).collect();
    listed.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(listed, want_sorted);
    assert!(
        a.notes.iter().all(|n| !n.contains("could still belong") && !n.contains("could be overtaken")),
        "{:?}",
        a.notes
    );
    // What an unlisted product could have: at least the two open days' unlisted bounds
    // (and the exact days' share of it), and below the 10th row's lower end.
    let unlisted = a.unlisted_bound.expect("approximate answers carry the cut-off");
    assert!(unlisted >= 2 * (300 - 40 * 4), "{unlisted}");
    let tenth = &a.rows[9];
    assert!(tenth.count - tenth.error_bound > unlisted, "{tenth:?} vs {unlisted}");
    // A product the speed layer did not list carries the unlisted bound.
    let tail = top(&mut store, (0..4).map(day).collect(), 100, By::Quantity, kappa(5_000)).unwrap();
    let unlisted = tail.rows.iter().find(|r| r.product_id == "p00050").expect("sold on the exact days");
    assert!(unlisted.error_bound >= 2 * (300 - 40 * 4));
    assert!((unlisted.count - truth["p00050"].0).abs() <= unlisted.error_bound);
    // The product's history marks each day's source.
    let h = history(&mut store, "p00001", Granularity::Day, DAY0, DAY0 + 5 * DAY, kappa(5_000)).unwrap().unwrap();
    assert_eq!(
        h.points.iter().map(|p| p.source).collect::<Vec<_>>(),
        [Source::Batch, Source::Batch, Source::Speed, Source::Speed, Source::None]
    );
    assert!(h.points[2].rank.is_some() && h.points[0].rank.is_some());
    // Batch wins: once a speed day has exact rows, they answer for it.
    let rows = vec![ProductSum { product_id: "p00001".into(), count: 7, revenue_cents: 70 }];
    store.write_exact("test", &[(day(2), String::new(), rows)], 1000, &[], &[]).unwrap();
    let h = history(&mut store, "p00001", Granularity::Day, DAY0, DAY0 + 5 * DAY, kappa(5_000)).unwrap().unwrap();
    assert_eq!((h.points[2].source, h.points[2].count, h.points[2].error_bound), (Source::Batch, 7, 0));
}

#[test]
fn a_bucket_waiting_for_a_reroll_or_not_ended_is_not_served_as_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
    let days: Vec<Bucket> = (0..3).map(day).collect();
    exact_days(&mut store, &days, 300, 1000, 1);
    let later = Rules { now_ms: DAY0 + 10 * DAY, lambda: true };
    let top_of = |store: &mut SqlStore, buckets: Vec<Bucket>, rules: Rules| {
        top(store, buckets, 10, By::Quantity, rules).unwrap()
    };
    assert!(top_of(&mut store, vec![day(1)], later).exact);
    // A late event reached 05:00 of day 1: that hour is pending, so the day is stale.
    let hour = Bucket::containing(Granularity::Hour, day(1).start_ms + 5 * topk_core::HOUR_MS);
    store.add_pending(&[hour]).unwrap();
    let a = top_of(&mut store, vec![day(1)], later);
    assert!(!a.exact);
    assert_eq!(a.buckets[0].source, Source::Pending);
    assert!(a.rows.iter().all(|r| r.source == Source::Pending));
    assert!(a.notes.iter().any(|n| n.contains("waiting for a re-roll")), "{:?}", a.notes);
    // The days around it stay exact; a range over day 1 is not.
    assert!(top_of(&mut store, vec![day(0), day(2)], later).exact);
    let range = top_of(&mut store, days.clone(), later);
    assert!(!range.exact);
    assert_eq!(
        range.buckets.iter().map(|b| b.source).collect::<Vec<_>>(),
        [Source::Batch, Source::Pending, Source::Batch]
    );
    let h = history(&mut store, "p00001", Granularity::Day, DAY0, DAY0 + 3 * DAY, later).unwrap().unwrap();
    assert!(history(&mut store, "never", Granularity::Day, DAY0, DAY0 + 3 * DAY, later).unwrap().is_none());
    assert_eq!(h.points.iter().map(|p| p.source).collect::<Vec<_>>(), [Source::Batch, Source::Pending, Source::Batch]);
    // The day itself pending (its hour re-rolled, the day not yet) is stale the same way.
    let g = store.pending_generation(hour).unwrap().unwrap();
    store.remove_pending(hour, g).unwrap();
    store.add_pending(&[day(1)]).unwrap();
    assert_eq!(top_of(&mut store, vec![day(1)], later).buckets[0].source, Source::Pending);
    let g = store.pending_generation(day(1)).unwrap().unwrap();
    store.remove_pending(day(1), g).unwrap();
    assert!(top_of(&mut store, vec![day(1)], later).exact, "the re-roll landed");
    // In Lambda only an ended bucket is exact: rows of an open one can only be stale ...
    let during = Rules { now_ms: day(1).start_ms + 12 * topk_core::HOUR_MS, lambda: true };
    assert_eq!(top_of(&mut store, vec![day(1)], during).buckets[0].source, Source::Pending);
    // ... and the speed layer's estimates of it win over them.
    let rows = vec![SpeedRow { product_id: "p00001".into(), count: 5, error: 1, revenue_cents: 0, updated_ms: 1 }];
    let write = SpeedWrite {
        breakdown: String::new(),
        bucket: day(1),
        rows,
        sketches: Vec::new(),
        finished: false,
        ended: false,
        unlisted_bound: 1,
        total_count: 5,
    };
    store.write_speed("speed", &[write], &[], None, &[]).unwrap();
    let a = top_of(&mut store, vec![day(1)], during);
    assert_eq!((a.buckets[0].source, a.rows[0].count, a.total), (Source::Speed, 5, Some(5)));
    // Kappa counts open buckets exactly.
    assert!(top_of(&mut store, vec![day(1)], Rules { lambda: false, ..during }).exact);
}

/// The `k` least by `by`, ties by id, over every sold product and every catalog product
/// (0 where it did not sell).
fn brute_bottom(truth: &HashMap<String, (i64, i64)>, catalog: &[String], k: usize, by: By) -> Vec<(String, i64)> {
    let mut all: HashMap<String, i64> = catalog.iter().map(|id| (id.clone(), 0)).collect();
    all.extend(truth.iter().map(|(id, &(c, r))| (id.clone(), value(by, c, r))));
    let mut all: Vec<(String, i64)> = all.into_iter().collect();
    all.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

#[test]
fn worst_sellers_count_unsold_catalog_products_as_zero_and_equal_brute_force() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
    let days: Vec<Bucket> = (0..3).map(day).collect();
    let mut truth = exact_days(&mut store, &days, 3_000, 1000, 11);
    // A fourth day: refunds that take one product below zero over the period, and one
    // whose sales and refunds cancel out (a row of 0).
    let sold = truth["p00001"];
    let rows = vec![
        ProductSum { product_id: "p00001".into(), count: -(sold.0 + 5), revenue_cents: -(sold.1 + 700) },
        ProductSum { product_id: "p01500-net-zero".into(), count: 0, revenue_cents: 0 },
    ];
    store.write_exact("test", &[(day(3), String::new(), rows)], 1000, &[], &[]).unwrap();
    truth.insert("p00001".into(), (-5, -700));
    truth.insert("p01500-net-zero".into(), (0, 0));
    // The catalog knows 4,000 products; about a quarter never sold in the period.
    let catalog: Vec<String> = (0..4_000).map(|i| format!("p{i:05}")).collect();
    let products: Vec<Product> = catalog
        .iter()
        .map(|id| Product { product_id: id.clone(), name: Some(format!("name {id}")), category: None })
        .collect();
    store.upsert_products(&products).unwrap();
    let unsold = catalog.iter().filter(|id| !truth.contains_key(*id)).count();
    assert!(unsold > 500, "{unsold} unsold: the test needs many");
    let period: Vec<Bucket> = (0..4).map(day).collect();
    let later = Rules { now_ms: DAY0 + 10 * DAY, lambda: true };
    for by in By::ALL {
        for k in [1, 2, 10, 1000, 5000] {
            let a = bottom(&mut store, period.clone(), k, by, later).unwrap();
            assert!(a.exact && !a.open && a.order == "asc", "k={k} by={by:?}");
            assert_eq!(got(&a, by), brute_bottom(&truth, &catalog, k, by), "k={k} by={by:?}");
            assert_eq!(a.total, Some(truth.values().map(|&(c, r)| value(by, c, r)).sum::<i64>()));
            assert_eq!(a.certain_rows, a.rows.len());
            assert!(a.rows.iter().enumerate().all(|(i, r)| r.rank == i + 1 && r.error_bound == 0));
        }
    }
    let a = bottom(&mut store, period.clone(), 3, By::Quantity, later).unwrap();
    assert_eq!(a.rows[0].product_id, "p00001", "the refunded product is the worst");
    assert_eq!(a.rows[1].name.as_deref(), Some(format!("name {}", a.rows[1].product_id).as_str()));

    // Refused, naming the buckets and why: one still open (Lambda), one without exact data,
    // one waiting for a re-roll.
    let during = Rules { now_ms: day(3).start_ms + topk_core::HOUR_MS, lambda: true };
    let refused = |store: &mut SqlStore, buckets: Vec<Bucket>, rules: Rules| match bottom(
        store,
        buckets,
        10,
        By::Quantity,
        rules,
    ) {
        Err(QueryError::Refused(why)) => why,
        other => panic!("not refused: {:?}", other.map(|a| a.rows.len())),
    };
    let why = refused(&mut store, period.clone(), during);
    assert!(why.contains("2026-12-04 (open)") && !why.contains("2026-12-03"), "{why}");
    let why = refused(&mut store, vec![day(0), day(9)], later);
    assert!(why.contains("2026-12-10 (no exact data)"), "{why}");
    store.add_pending(&[Bucket::containing(Granularity::Hour, day(2).start_ms)]).unwrap();
    let why = refused(&mut store, vec![day(2)], later);
    assert!(why.contains("2026-12-03 (waiting for a re-roll)"), "{why}");
    // Kappa's exact rows of an open bucket answer.
    let a = bottom(&mut store, vec![day(3)], 2, By::Quantity, Rules { lambda: false, ..during }).unwrap();
    assert!(a.open && a.exact);
    let ids: Vec<&str> = a.rows.iter().map(|r| r.product_id.as_str()).collect();
    assert_eq!(ids, ["p00001", "p00000"], "the refunded one, then the first by id of those without a sale that day");
}

/// Movers by brute force over per-product (units, revenue) of both periods: the rule the
/// API documents, applied to the truth.
fn brute_movers(
    now: &HashMap<String, (i64, i64)>,
    then: &HashMap<String, (i64, i64)>,
    by: By,
    up: bool,
    relative: bool,
    min_count: i64,
    k: usize,
) -> Vec<(String, i64, i64)> {
    let ids: HashSet<&String> = now.keys().chain(then.keys()).collect();
    let get = |m: &HashMap<String, (i64, i64)>, id: &str| m.get(id).map_or(0, |&(c, r)| value(by, c, r));
    let mut rows: Vec<(String, i64, i64)> = ids
        .into_iter()
        .map(|id| (id.clone(), get(now, id), get(then, id)))
        .filter(|(_, n, t)| if up { n > t } else { n < t })
        .filter(|(_, n, t)| if relative { *t >= min_count.max(1) } else { *n.max(t) >= min_count })
        .collect();
    let key = |(_, n, t): &(String, i64, i64)| if relative { (n - t) as f64 / *t as f64 } else { (n - t) as f64 };
    rows.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        (if up { kb.total_cmp(&ka) } else { ka.total_cmp(&kb) }).then_with(|| a.0.cmp(&b.0))
    });
    rows.truncate(k);
    rows
}

fn mover_rows(a: &MoversAnswer) -> Vec<(String, i64, i64)> {
    a.rows.iter().map(|r| (r.product_id.clone(), r.now, r.then)).collect()
}

#[test]
fn movers_of_exact_periods_equal_brute_force_in_every_direction_and_measure() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
    // Two days with different seeds: products move both ways; a few sell only on one day.
    let then = exact_days(&mut store, &[day(0)], 2_000, 1000, 21);
    let now = exact_days(&mut store, &[day(1)], 2_000, 1000, 22);
    assert!(now.keys().any(|id| !then.contains_key(id)) && then.keys().any(|id| !now.contains_key(id)));
    let later = Rules { now_ms: DAY0 + 10 * DAY, lambda: true };
    for by in By::ALL {
        for (up, relative, min_count) in
            [(true, false, 0), (false, false, 0), (true, true, 5), (false, true, 1), (true, false, 20)]
        {
            for k in [1, 10, 1000] {
                let req = MoversRequest {
                    period: vec![day(1)],
                    baseline: vec![day(0)],
                    k,
                    by,
                    direction: if up { Direction::Up } else { Direction::Down },
                    change: if relative { Change::Relative } else { Change::Absolute },
                    min_count,
                };
                let a = movers(&mut store, req, later).unwrap();
                let what = format!("by={by:?} up={up} relative={relative} min_count={min_count} k={k}");
                assert!(a.exact && a.notes.is_empty(), "{what}: {:?}", a.notes);
                assert_eq!(mover_rows(&a), brute_movers(&now, &then, by, up, relative, min_count, k), "{what}");
                assert_eq!(a.certain_rows, a.rows.len(), "{what}");
                for r in &a.rows {
                    assert_eq!(
                        (r.change, r.change_error, r.source),
                        (r.now - r.then, Some(0), Source::Batch),
                        "{what}"
                    );
                    assert_eq!(r.relative_change, (r.then > 0).then(|| r.change as f64 / r.then as f64));
                }
            }
        }
    }
    // Ranks now and then, and entering or leaving the top 10.
    let req = |k| MoversRequest {
        period: vec![day(1)],
        baseline: vec![day(0)],
        k,
        by: By::Quantity,
        direction: Direction::Up,
        change: Change::Absolute,
        min_count: 0,
    };
    let a = movers(&mut store, req(1000), later).unwrap();
    // Ranks within each period's first 1,000, as /top ranks them.
    let rank_in = |m: &HashMap<String, (i64, i64)>, id: &str| {
        let mut all: Vec<(&String, i64)> = m.iter().map(|(id, v)| (id, v.0)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        all.iter().take(MAX_K).position(|(x, _)| x.as_str() == id).map(|p| p + 1)
    };
    for r in &a.rows {
        assert_eq!((r.rank_now, r.rank_then), (rank_in(&now, &r.product_id), rank_in(&then, &r.product_id)));
        let top = |x: Option<usize>| x.is_some_and(|x| x <= 1000);
        assert_eq!((r.entered, r.left), (top(r.rank_now) && !top(r.rank_then), top(r.rank_then) && !top(r.rank_now)));
    }
    assert!(a.rows.iter().any(|r| r.rank_then.is_none()), "a product new on day 1 (or past rank 1,000) gained");
}

#[test]
fn exact_movers_come_from_the_lists_unless_a_product_below_them_could_move_more() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
    let mut then = exact_days(&mut store, &[day(0)], 3_000, 1000, 61);
    let now = exact_days(&mut store, &[day(1)], 3_000, 1000, 62);
    let later = Rules { now_ms: DAY0 + 10 * DAY, lambda: true };
    let req = |direction, k| MoversRequest {
        period: vec![day(1)],
        baseline: vec![day(0)],
        k,
        by: By::Quantity,
        direction,
        change: Change::Absolute,
        min_count: 0,
    };
    let load = |store: &mut SqlStore| {
        (Period::load(store, vec![day(1)], later).unwrap(), Period::load(store, vec![day(0)], later).unwrap())
    };
    // The stored lists prove both directions on their own.
    for direction in [Direction::Up, Direction::Down] {
        let (n, t) = load(&mut store);
        let rows =
            movers::through_lists(&mut store, &n, &t, &req(direction, 10)).unwrap().expect("proven from the lists");
        let got: Vec<(String, i64, i64)> = rows.iter().map(|m| (m.id.clone(), m.now, m.then)).collect();
        assert_eq!(got, brute_movers(&now, &then, By::Quantity, direction == Direction::Up, false, 0, 10));
    }
    // A refund-heavy product far below day 1's list (it sold 1 there) was at -5,000 on day
    // 0: its gain of 5,001 beats every best seller's, so the lists cannot prove the gains
    // (the day's least row bounds what a product below them can gain) and everything is
    // summed — with the same answer as brute force.
    let rows = vec![ProductSum { product_id: "zz-refunded".into(), count: -5_000, revenue_cents: -1 }];
    let mut day0 = then
        .iter()
        .map(|(id, &(c, r))| ProductSum { product_id: id.clone(), count: c, revenue_cents: r })
        .collect::<Vec<_>>();
    day0.extend(rows);
    store.write_exact("test", &[(day(0), String::new(), day0)], 1000, &[], &[]).unwrap();
    then.insert("zz-refunded".into(), (-5_000, -1));
    let mut now = now;
    let mut day1 = now
        .iter()
        .map(|(id, &(c, r))| ProductSum { product_id: id.clone(), count: c, revenue_cents: r })
        .collect::<Vec<_>>();
    day1.push(ProductSum { product_id: "zz-refunded".into(), count: 1, revenue_cents: 1 });
    store.write_exact("test", &[(day(1), String::new(), day1)], 1000, &[], &[]).unwrap();
    now.insert("zz-refunded".into(), (1, 1));
    let (n, t) = load(&mut store);
    assert!(movers::through_lists(&mut store, &n, &t, &req(Direction::Up, 10)).unwrap().is_none());
    let a = movers(&mut store, req(Direction::Up, 10), later).unwrap();
    assert_eq!(a.rows[0].product_id, "zz-refunded");
    assert_eq!(mover_rows(&a), brute_movers(&now, &then, By::Quantity, true, false, 0, 10));
    // Drops are still proven from day 0's list: day 1's least row is 1.
    let (n, t) = load(&mut store);
    assert!(movers::through_lists(&mut store, &n, &t, &req(Direction::Down, 10)).unwrap().is_some());
}

#[test]
fn movers_over_approximate_periods_hold_every_true_change_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
    let then = exact_days(&mut store, &[day(0)], 300, 1000, 31);
    // Day 1 approximate: the speed layer lists 80 of 300 products with bounds that hold
    // and says the rest sold at most 6 each.
    let mut rng = Rng::new(9);
    let mut now: HashMap<String, (i64, i64)> = HashMap::new();
    let mut rows = Vec::new();
    for i in 0..300u64 {
        let id = format!("p{i:05}");
        let true_count = if i < 80 { 10 + rng.below(400) as i64 } else { rng.below(7) as i64 };
        now.insert(id.clone(), (true_count, 0));
        if i < 80 {
            let error = rng.below(6) as i64;
            let shown = true_count + error - 2 * (rng.below(error as u64 + 1) as i64);
            rows.push(SpeedRow { product_id: id, count: shown, error, revenue_cents: 0, updated_ms: 1 });
        }
    }
    let write = SpeedWrite {
        breakdown: String::new(),
        bucket: day(1),
        rows,
        sketches: Vec::new(),
        finished: false,
        ended: false,
        unlisted_bound: 6,
        total_count: 1,
    };
    store.write_speed("speed", &[write], &[], None, &[]).unwrap();
    let during = Rules { now_ms: day(1).start_ms + 12 * topk_core::HOUR_MS, lambda: true };
    for direction in [Direction::Up, Direction::Down] {
        let req = MoversRequest {
            period: vec![day(1)],
            baseline: vec![day(0)],
            k: 50,
            by: By::Quantity,
            direction,
            change: Change::Absolute,
            min_count: 0,
        };
        let a = movers(&mut store, req, during).unwrap();
        assert!(!a.exact && a.open);
        assert!(a.notes.iter().any(|n| n.contains("speed layer's estimates")), "{:?}", a.notes);
        assert!(a.notes.iter().any(|n| n.contains("has not ended")), "{:?}", a.notes);
        let truth = |id: &str| now.get(id).map_or(0, |v| v.0) - then.get(id).map_or(0, |v| v.0);
        for r in &a.rows {
            let e = r.change_error.expect("quantity is bounded");
            assert!(
                (truth(&r.product_id) - r.change).abs() <= e,
                "{}: true {} vs {} ± {e}",
                r.product_id,
                truth(&r.product_id),
                r.change
            );
            assert_eq!(r.source, Source::Speed);
        }
        // The certain rows are truly the leading ones: each beats every product after it.
        let sign = direction.sign();
        let ids: HashSet<&String> = now.keys().chain(then.keys()).collect();
        for r in a.rows.iter().take(a.certain_rows) {
            let mine = sign * truth(&r.product_id);
            let above: HashSet<&str> = a.rows.iter().take(r.rank).map(|x| x.product_id.as_str()).collect();
            for id in ids.iter().filter(|id| !above.contains(id.as_str())) {
                assert!(mine > sign * truth(id), "certain row {} ({mine}) is not ahead of {id}", r.product_id);
            }
        }
        assert!(
            a.certain_rows > 0 && a.certain_rows < a.rows.len(),
            "{direction:?}: {} certain of {}",
            a.certain_rows,
            a.rows.len()
        );
    }
    // Revenue of speed buckets has no bound: nothing is certain, and the reply says so.
    let req = MoversRequest {
        period: vec![day(1)],
        baseline: vec![day(0)],
        k: 10,
        by: By::Revenue,
        direction: Direction::Down,
        change: Change::Absolute,
        min_count: 0,
    };
    let a = movers(&mut store, req, during).unwrap();
    assert_eq!(a.certain_rows, 0);
    assert!(a.rows.iter().all(|r| r.change_error.is_none()));
    assert!(a.notes.iter().any(|n| n.contains("no bound")), "{:?}", a.notes);
}

#[test]
fn every_top_row_carries_its_rank_in_the_previous_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
    let day0 = exact_days(&mut store, &[day(0)], 2_000, 1000, 51);
    exact_days(&mut store, &[day(1)], 2_000, 1000, 52);
    exact_days(&mut store, &[day(2)], 2_000, 1000, 53);
    let later = Rules { now_ms: DAY0 + 10 * DAY, lambda: true };
    let rank_in = |truth: &HashMap<String, (i64, i64)>, depth: usize| -> HashMap<String, usize> {
        brute_top(truth, depth, By::Quantity).into_iter().enumerate().map(|(i, (id, _))| (id, i + 1)).collect()
    };
    // One day: its rank in the day before, from that day's whole stored list.
    let a = top(&mut store, vec![day(1)], 50, By::Quantity, later).unwrap();
    assert_eq!((a.baseline_from.as_deref(), a.baseline_depth), (Some("2026-12-01T00:00:00.000Z"), Some(1000)));
    let before = rank_in(&day0, 1000);
    for r in &a.rows {
        let want = before.get(&r.product_id).copied();
        assert_eq!(r.previous_rank, Some(want), "{}", r.product_id);
        assert_eq!(r.rank_change, Some(want.map(|w| w as i64 - r.rank as i64)));
    }
    assert!(a.rows.iter().any(|r| r.rank_change.flatten().is_some_and(|c| c != 0)));
    // A two-day range: the two days before it (day 0 and a day without data), 100 deep.
    let a = top(&mut store, vec![day(1), day(2)], 10, By::Quantity, later).unwrap();
    assert_eq!((a.baseline_from.as_deref(), a.baseline_depth), (Some("2026-11-30T00:00:00.000Z"), Some(100)));
    let before = rank_in(&day0, 100);
    assert!(a.rows.iter().all(|r| r.previous_rank == Some(before.get(&r.product_id).copied())));
    // The first day's previous day has no data: every row is new.
    let a = top(&mut store, vec![day(0)], 5, By::Quantity, later).unwrap();
    assert!(a.rows.iter().all(|r| r.previous_rank == Some(None) && r.rank_change == Some(None)));
}
