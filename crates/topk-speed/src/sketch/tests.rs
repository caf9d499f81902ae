use std::collections::HashMap;

use proptest::prelude::*;
use topk_core::partition::sketch_key;

use super::*;

fn id(i: u32) -> String {
    format!("p{i}")
}

/// A stream of (product index, quantity) with a skew: small indices are frequent.
fn stream() -> impl Strategy<Value = Vec<(u32, i64)>> {
    prop::collection::vec((0u32..400, 1i64..20).prop_map(|(i, q)| ((i * i) / 400, q)), 0..1500)
}

fn truth(s: &[(u32, i64)]) -> HashMap<u32, i64> {
    let mut t = HashMap::new();
    for &(i, q) in s {
        *t.entry(i).or_default() += q;
    }
    t
}

/// Feeds the stream in batches of `batch` events, summed per product as a flush is.
fn sketch_of_batches(s: &[(u32, i64)], batch: usize, mut sk: TopSketch) -> TopSketch {
    for chunk in s.chunks(batch.max(1)) {
        let mut sums: std::collections::BTreeMap<u32, i64> = Default::default();
        for &(i, q) in chunk {
            *sums.entry(i).or_default() += q;
        }
        let ids: Vec<(String, i64)> = sums.into_iter().map(|(i, q)| (id(i), q)).collect();
        let mut rows: Vec<Row<'_>> = ids
            .iter()
            .map(|(p, q)| Row { product_id: p, key: sketch_key(p.as_bytes()), quantity: *q, revenue_cents: q * 100 })
            .collect();
        sk.absorb(&mut rows);
    }
    sk
}

fn sketch_of(s: &[(u32, i64)], sk: TopSketch) -> TopSketch {
    sketch_of_batches(s, 1, sk)
}

/// Every candidate's interval contains its true count; the heap and index are consistent.
fn assert_bounds(sk: &TopSketch, truth: &HashMap<u32, i64>) {
    for e in sk.top(sk.capacity()) {
        let t = truth.get(&e.product_id[1..].parse::<u32>().unwrap()).copied().unwrap_or(0);
        assert!(
            e.count - e.error <= t && t <= e.count + e.error,
            "{}: true {t} outside {} ± {}",
            e.product_id,
            e.count,
            e.error
        );
        assert!(e.error >= 0);
        assert_eq!(sk.get(&e.product_id, sketch_key(e.product_id.as_bytes())).as_ref(), Some(&e));
    }
    for i in 1..sk.heap.len() {
        assert!(!sk.less(sk.heap[i], sk.heap[(i - 1) / 2]), "heap order broken at {i}");
    }
    for (i, &s) in sk.heap.iter().enumerate() {
        assert_eq!(sk.pos[s as usize] as usize, i);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn count_min_never_underestimates(s in stream(), conservative in any::<bool>()) {
        let mut cms = CountMin::new(16, 3).unwrap();
        for &(i, q) in &s {
            let key = sketch_key(id(i).as_bytes());
            if conservative { cms.add_conservative(key, q as u64); } else { cms.add(key, q as u64); }
        }
        for (i, t) in truth(&s) {
            prop_assert!(cms.estimate(sketch_key(id(i).as_bytes())) >= t as u64);
        }
        prop_assert_eq!(cms.total(), s.iter().map(|x| x.1 as u64).sum::<u64>());
    }

    #[test]
    fn merged_count_min_equals_sketch_of_concatenation(a in stream(), b in stream()) {
        let sketch = |s: &[(u32, i64)]| {
            let mut cms = CountMin::new(32, 4).unwrap();
            for &(i, q) in s { cms.add(sketch_key(id(i).as_bytes()), q as u64); }
            cms
        };
        let mut merged = sketch(&a);
        merged.merge(&sketch(&b)).unwrap();
        let both: Vec<_> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(merged, sketch(&both));
    }

    #[test]
    fn merged_conservative_count_min_bounds_the_concatenation(a in stream(), b in stream()) {
        let sketch = |s: &[(u32, i64)], conservative: bool| {
            let mut cms = CountMin::new(32, 4).unwrap();
            for &(i, q) in s {
                let key = sketch_key(id(i).as_bytes());
                if conservative { cms.add_conservative(key, q as u64); } else { cms.add(key, q as u64); }
            }
            cms
        };
        let mut merged = sketch(&a, true);
        merged.merge(&sketch(&b, true)).unwrap();
        let both: Vec<_> = a.iter().chain(&b).copied().collect();
        let linear = sketch(&both, false);
        for (i, t) in truth(&both) {
            let key = sketch_key(id(i).as_bytes());
            prop_assert!(merged.estimate(key) >= t as u64);
            prop_assert!(merged.estimate(key) <= linear.estimate(key), "conservative merge is tighter than linear");
        }
    }

    #[test]
    fn candidates_bound_their_true_counts(s in stream(), cap in 1usize..40, space_saving in any::<bool>()) {
        let admission = if space_saving { Admission::SpaceSaving } else { Admission::CountMin(CountMin::new(64, 3).unwrap()) };
        let sk = sketch_of(&s, TopSketch::new(cap, admission).unwrap());
        let t = truth(&s);
        assert_bounds(&sk, &t);
        prop_assert_eq!(sk.len(), cap.min(t.len()));
        prop_assert_eq!(sk.total(), s.iter().map(|x| x.1).sum::<i64>());
    }

    #[test]
    fn batched_candidates_bound_their_true_counts(s in stream(), cap in 1usize..40, batch in 1usize..300) {
        let sk = sketch_of_batches(&s, batch, TopSketch::new(cap, Admission::CountMin(CountMin::new(64, 3).unwrap())).unwrap());
        let t = truth(&s);
        assert_bounds(&sk, &t);
        // Nothing outside the candidates counted more than the floor.
        for (i, c) in &t {
            if sk.get(&id(*i), sketch_key(id(*i).as_bytes())).is_none() {
                prop_assert!(*c <= sk.floor(), "{} counted {c} > floor {}", id(*i), sk.floor());
            }
        }
    }

    #[test]
    fn space_saving_invariants(s in stream(), cap in 1usize..40) {
        let sk = sketch_of(&s, TopSketch::new(cap, Admission::SpaceSaving).unwrap());
        let n: i64 = s.iter().map(|x| x.1).sum();
        let top = sk.top(cap);
        // The counters sum to the stream's weight, the smallest is at most N/m, and every
        // product heavier than N/m is a candidate.
        prop_assert_eq!(top.iter().map(|e| e.count).sum::<i64>(), n);
        if let Some(min) = top.last() {
            prop_assert!(sk.len() < cap || min.count * cap as i64 <= n);
        }
        for (i, c) in truth(&s) {
            if c * cap as i64 > n {
                prop_assert!(top.iter().any(|e| e.product_id == id(i)), "heavy {} missing", id(i));
            }
        }
    }

    #[test]
    fn refunds_keep_candidates_within_bounds(s in stream(), refunds in prop::collection::vec((0u32..400, 1i64..5), 0..200)) {
        // Refunds follow their sales (a refund never exceeds what was sold).
        let mut t = truth(&s);
        let mut all = s.clone();
        for (i, q) in refunds {
            let i = (i * i) / 400;
            if let Some(c) = t.get_mut(&i) {
                let q = q.min(*c);
                *c -= q;
                all.push((i, -q));
            }
        }
        for admission in [Admission::SpaceSaving, Admission::CountMin(CountMin::new(32, 2).unwrap())] {
            assert_bounds(&sketch_of_batches(&all, 50, TopSketch::new(8, admission).unwrap()), &t);
        }
    }

    #[test]
    fn merged_top_sketches_bound_the_union(a in stream(), b in stream(), cap in 1usize..30, space_saving in any::<bool>()) {
        let make = || if space_saving { Admission::SpaceSaving } else { Admission::CountMin(CountMin::new(64, 3).unwrap()) };
        let mut merged = sketch_of(&a, TopSketch::new(cap, make()).unwrap());
        merged.merge(&sketch_of(&b, TopSketch::new(cap, make()).unwrap())).unwrap();
        let both: Vec<_> = a.iter().chain(&b).copied().collect();
        assert_bounds(&merged, &truth(&both));
        prop_assert_eq!(merged.total(), both.iter().map(|x| x.1).sum::<i64>());
    }

    #[test]
    fn top_sketch_round_trips_through_bytes(s in stream(), cap in 1usize..40, space_saving in any::<bool>()) {
        let admission = if space_saving { Admission::SpaceSaving } else { Admission::CountMin(CountMin::new(64, 3).unwrap()) };
        let sk = sketch_of(&s, TopSketch::new(cap, admission).unwrap());
        let back = TopSketch::decode(&sk.encode()).unwrap();
        prop_assert_eq!(back.top(cap), sk.top(cap));
        prop_assert_eq!(back.admission(), sk.admission());
        prop_assert_eq!(back.total(), sk.total());
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = TopSketch::decode(&bytes);
        let _ = CountMin::decode(&bytes);
    }
}

#[test]
fn count_min_bound_holds_at_the_promised_rate() {
    // 200 independent hash functions (seeds) over a Zipf-like stream: the share of
    // (seed, product) estimates off by more than ε·N must stay within δ.
    let (epsilon, delta) = (0.01, 0.05);
    let stream: Vec<(u64, u64)> = (1..=3000u64).map(|i| (i, 1 + 3000 / i)).collect();
    let n: u64 = stream.iter().map(|x| x.1).sum();
    let (mut misses, mut queries) = (0u64, 0u64);
    for seed in 0..200u64 {
        for conservative in [false, true] {
            let mut cms = CountMin::with_error(epsilon, delta).unwrap();
            let key = |i: u64| xxhash_rust::xxh3::xxh3_64_with_seed(&i.to_le_bytes(), seed);
            for &(i, c) in &stream {
                if conservative {
                    cms.add_conservative(key(i), c);
                } else {
                    cms.add(key(i), c);
                }
            }
            let bound = cms.epsilon() * n as f64;
            for &(i, c) in &stream {
                queries += 1;
                misses += u64::from((cms.estimate(key(i)) - c) as f64 > bound);
            }
        }
    }
    let rate = misses as f64 / queries as f64;
    assert!(rate <= delta, "bound missed for {misses} of {queries} estimates ({rate:.4} > δ = {delta})");
}

#[test]
fn with_error_derives_width_and_depth() {
    let cms = CountMin::with_error(0.001, 0.01).unwrap();
    assert_eq!((cms.width(), cms.depth()), (4096, 5), "e/0.001 = 2719 -> 4096; ln(100) = 4.6 -> 5");
    assert!(cms.epsilon() <= 0.001 && cms.delta() <= 0.01);
    let shard = CountMin::shard_of(0.02, 0.05, 8).unwrap();
    assert_eq!((shard.width(), shard.depth()), (32, 3), "e/0.02 = 136 -> 256 columns over 8 shards; ln(20) = 3.0 -> 3");
    assert!(CountMin::with_error(0.0, 0.1).is_err());
    assert!(CountMin::new(100, 3).unwrap_err().to_string().contains("power of two"));
    assert!(TopSketch::new(0, Admission::SpaceSaving).is_err());
}

#[test]
fn saturated_cells_read_as_unbounded() {
    let mut cms = CountMin::new(8, 1).unwrap();
    cms.add(7, u64::from(u32::MAX) + 5);
    assert_eq!(cms.estimate(7), u64::MAX);
}

#[test]
fn shapes_must_match_to_merge() {
    let mut a = CountMin::new(8, 2).unwrap();
    assert!(matches!(a.merge(&CountMin::new(16, 2).unwrap()), Err(SketchError::Shape(_))));
    let mut s = TopSketch::new(4, Admission::SpaceSaving).unwrap();
    let c = TopSketch::new(4, Admission::CountMin(CountMin::new(8, 2).unwrap())).unwrap();
    assert!(matches!(s.merge(&c), Err(SketchError::Shape(_))));
}

#[test]
fn ids_are_compacted_under_churn() {
    let mut sk = TopSketch::new(16, Admission::SpaceSaving).unwrap();
    for i in 0..100_000u32 {
        let p = id(i);
        sk.update(&p, sketch_key(p.as_bytes()), 1, 0);
    }
    assert!(sk.ids.len() <= sk.live_id_bytes + (sk.live_id_bytes / 4).max(64), "arena grew to {}", sk.ids.len());
    assert_eq!(sk.top(16).iter().map(|e| e.count).sum::<i64>(), 100_000);
}
