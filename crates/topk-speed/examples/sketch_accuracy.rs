//! Accuracy and memory of the speed layer's sketches on a Zipf stream, without the pipeline:
//! `cargo run --release -p topk-speed --example sketch_accuracy -- ZIPF [EVENTS] [BATCH]`.
//!
//! Events are pre-aggregated in batches of `BATCH` per partition (as the aggregator's
//! flushes are) and fed to one sketch per partition; the per-partition top lists are then
//! merged, as the speed role does. Prints precision@10/@100, the relative errors of the
//! true top 10, the share of true counts inside their bounds and the bytes per bucket, for
//! count-min admission and for Space-Saving.

use std::collections::HashMap;
use std::time::Instant;

use topk_core::partition::{partition_of, sketch_key};
use topk_core::random::{Rng, Zipf};
use topk_speed::sketch::{Admission, Row, TopSketch};
use topk_speed::{merge_partitions, score, SpeedSizing};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let zipf: f64 = args.first().map_or(1.1, |a| a.parse().expect("zipf"));
    let events: u64 = args.get(1).map_or(10_000_000, |a| a.parse().expect("events"));
    let batch: u64 = args.get(2).map_or(100_000, |a| a.parse().expect("batch"));
    let products = 1_000_000usize;
    let mut sizing = SpeedSizing::default();
    if let Some(e) = args.get(3) {
        sizing.epsilon = e.parse().expect("epsilon");
    }
    if let Some(c) = args.get(4) {
        sizing.candidates_per_row = c.parse().expect("candidates per row");
    }
    let partitions = 8u32;

    let zipf_sampler = Zipf::new(products as u64, zipf);
    let ids: Vec<String> = (0..products).map(|i| format!("p{i:07}")).collect();
    let keys: Vec<u64> = ids.iter().map(|id| sketch_key(id.as_bytes())).collect();
    let part: Vec<u32> = ids.iter().map(|id| partition_of(id.as_bytes(), partitions)).collect();

    for kind in ["count-min", "space-saving"] {
        let mut rng = Rng::new(7);
        let mut sketches: Vec<TopSketch> = (0..partitions)
            .map(|_| {
                let admission = match kind {
                    "count-min" => Admission::CountMin(sizing.count_min(partitions).expect("cms")),
                    _ => Admission::SpaceSaving,
                };
                TopSketch::new(sizing.capacity(partitions), admission).expect("sketch")
            })
            .collect();
        let mut truth = vec![0i64; products];
        let mut pending: Vec<HashMap<usize, i64>> = vec![HashMap::new(); partitions as usize];
        let started = Instant::now();
        let mut updates = 0u64;
        let flush = |pending: &mut Vec<HashMap<usize, i64>>, sketches: &mut Vec<TopSketch>, updates: &mut u64| {
            for (p, rows) in pending.iter_mut().enumerate() {
                let mut rows: Vec<Row<'_>> = rows
                    .drain()
                    .map(|(i, c)| Row { product_id: &ids[i], key: keys[i], quantity: c, revenue_cents: 0 })
                    .collect();
                *updates += rows.len() as u64;
                sketches[p].absorb(&mut rows);
            }
        };
        for n in 0..events {
            let i = zipf_sampler.sample(&mut rng) as usize - 1;
            truth[i] += 1;
            *pending[part[i] as usize].entry(i).or_default() += 1;
            if (n + 1) % (batch * u64::from(partitions)) == 0 {
                flush(&mut pending, &mut sketches, &mut updates);
            }
        }
        flush(&mut pending, &mut sketches, &mut updates);
        let elapsed = started.elapsed();
        let bytes: usize = sketches.iter().map(|s| s.memory_bytes()).sum();
        let merged = merge_partitions(&sketches, sizing.top_n);
        let exact: Vec<(String, i64)> = {
            let mut t: Vec<(String, i64)> = truth.iter().enumerate().map(|(i, &c)| (ids[i].clone(), c)).collect();
            t.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            t
        };
        let speed: Vec<(String, i64, i64)> = merged.into_iter().map(|e| (e.product_id, e.count, e.error)).collect();
        let s = score(&exact, &speed);
        let mean_error_top100 = speed.iter().take(100).map(|r| r.2 as f64 / r.1.max(1) as f64).sum::<f64>() / 100.0;
        println!(
            "zipf {zipf} events {events} batch {batch}/partition {kind:>12}: p@10 {:.2} p@100 {:.2} \
             top-10 rel err max {:.5} mean {:.5}, bounds hold {:.4} (mean ±{:.4} of the count in the top 100), {:.1} KiB/bucket, {:.1} M row updates/s",
            s.precision_at_10,
            s.precision_at_100,
            s.max_relative_error,
            s.mean_relative_error,
            s.bound_coverage,
            mean_error_top100,
            bytes as f64 / 1024.0,
            updates as f64 / elapsed.as_secs_f64() / 1e6,
        );
    }
}
