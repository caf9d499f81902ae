//! The speed layer's per-country top lists on a generated day (see `topk_speed::simulate`):
//! precision@10, the widest error bound of the top 10, and sketch memory per country, and
//! the memory of every open sketch against the cap.
//!
//! `cargo run --release -p topk-speed --example breakdown_accuracy -- [EVENTS] [PRODUCTS]`

use topk_speed::simulate::{countries, Day};
use topk_speed::SpeedConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: u64| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let day = Day {
        events: arg(1, 10_000_000),
        products: arg(2, 1_000_000),
        countries: 50,
        partitions: 4,
        flush_events: 5_000,
        start_ms: 1_795_996_800_000,
        seed: 7,
    };
    let dir = tempfile::tempdir()?;
    let store = topk_store::SqlStore::open_sqlite(dir.path().join("store.db"))?;
    let cfg = SpeedConfig::default();
    let cap = cfg.breakdown_memory_bytes;
    let started = std::time::Instant::now();
    let (scores, memory) = countries(store, &day, cfg)?;
    println!("{day:?}: {:.1} s", started.elapsed().as_secs_f64());
    println!("| country | share | p@10 | p@100 | bound coverage | widest bound (top 10) | 10th count | sketch KiB |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for s in &scores {
        let a = &s.accuracy;
        println!(
            "| {} | {:.2} % | {:.2} | {:.2} | {:.3} | {} | {} | {:.0} |",
            s.country,
            100.0 * s.share,
            a.precision_at_10,
            a.precision_at_100,
            a.bound_coverage,
            s.max_bound,
            s.exact_top.last().map_or(0, |e| e.1),
            s.memory_bytes as f64 / 1024.0
        );
    }
    let big = scores.iter().filter(|s| s.share >= 0.01);
    let (n, exact) = big.fold((0, 0), |(n, e), s| (n + 1, e + usize::from(s.accuracy.precision_at_10 == 1.0)));
    println!("{exact} of {n} countries with ≥ 1 % of the volume have their exact top 10");
    let mib = |b: usize| b as f64 / 1048576.0;
    println!(
        "open sketches: global {:.1} MiB, breakdowns {:.1} MiB (cap {:.0} MiB)",
        mib(memory.0),
        mib(memory.1),
        mib(cap)
    );
    Ok(())
}
