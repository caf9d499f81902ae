//! Update rates on one core: `cargo run --release -p topk-speed --example sketch_bench`.
//!
//! Count-min updates of pre-hashed keys (linear and conservative, at the speed layer's
//! per-partition shape and at a wide one), and candidate-sketch rows absorbed per second
//! from batches of 5 000 Zipf(1.1) rows over 1M products.

use std::hint::black_box;
use std::time::Instant;

use topk_core::partition::sketch_key;
use topk_core::random::{Rng, Zipf};
use topk_speed::sketch::{Admission, CountMin, Row, TopSketch};
use topk_speed::SpeedSizing;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let n = 20_000_000usize;
    let mut rng = Rng::new(1);
    let zipf = Zipf::new(1_000_000, 1.1);
    let ranks: Vec<u64> = (0..n).map(|_| zipf.sample(&mut rng)).collect();
    let keys: Vec<u64> = ranks.iter().map(|r| sketch_key(format!("p{r:07}").as_bytes())).collect();
    let sizing = SpeedSizing::default();
    let default = sizing.count_min(8).unwrap();
    for (width, depth) in [(default.width(), default.depth()), (4096, 5)] {
        for conservative in [false, true] {
            let runs: Vec<f64> = (0..5)
                .map(|_| {
                    let mut cms = CountMin::new(width, depth).unwrap();
                    let t = Instant::now();
                    for &k in &keys {
                        if conservative {
                            black_box(cms.add_conservative(k, 1));
                        } else {
                            cms.add(k, 1);
                        }
                    }
                    black_box(&cms);
                    n as f64 / t.elapsed().as_secs_f64() / 1e6
                })
                .collect();
            let kind = if conservative { "conservative" } else { "linear" };
            println!("count-min {width}x{depth} {kind:>12}: {:.1} M updates/s (median of 5)", median(runs));
        }
    }
    let ids: Vec<String> = ranks.iter().take(5_000_000).map(|r| format!("p{r:07}")).collect();
    let runs: Vec<f64> = (0..3)
        .map(|_| {
            let cms = sizing.count_min(8).unwrap();
            let mut sk = TopSketch::new(sizing.capacity(8), Admission::CountMin(cms)).unwrap();
            let t = Instant::now();
            let mut rows = 0usize;
            for chunk in ids.chunks(5_000) {
                let mut sums: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
                for id in chunk {
                    *sums.entry(id.as_str()).or_default() += 1;
                }
                let mut batch: Vec<Row<'_>> = sums
                    .iter()
                    .map(|(id, &q)| Row {
                        product_id: id,
                        key: sketch_key(id.as_bytes()),
                        quantity: q,
                        revenue_cents: 0,
                    })
                    .collect();
                rows += batch.len();
                sk.absorb(&mut batch);
            }
            black_box(&sk);
            rows as f64 / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    println!(
        "candidate sketch: {:.2} M batch rows/s absorbed, batching and hashing included (median of 3)",
        median(runs)
    );
}
