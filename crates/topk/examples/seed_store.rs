//! Fills a data directory's store with exact history for the API latency benchmark
//! (BENCHMARKS.md): a catalog of `--products` products, `--days` days of Zipf-distributed
//! sales ending at `--end` (a core of steady sellers plus a daily-shifting trending
//! share), and the whole weeks and months they roll up into — written as the batch
//! layer writes them (rows, top lists, totals).
//!
//! `cargo run --release -p topk --example seed_store -- DATA_DIR [--products 1000000]
//! [--days 120] [--sales-per-day 1000000] [--end 2026-11-01]`

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use topk_core::random::{Rng, Zipf};
use topk_core::time::{Bucket, Granularity};
use topk_store::{BatchStore, Product, ProductSum, SpeedStore, SqlStore};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}")))
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().filter(|a| !a.starts_with("--")).expect("usage: seed_store DATA_DIR [--products N] ...");
    let products: u64 = arg(&args, "--products", 1_000_000);
    let days: i64 = arg(&args, "--days", 120);
    let per_day: u64 = arg(&args, "--sales-per-day", 1_000_000);
    let end: String = arg(&args, "--end", "2026-11-01".to_string());
    let end = Bucket::parse(Granularity::Day, &end)?;
    std::fs::create_dir_all(dir)?;
    let mut store = SqlStore::open_sqlite(std::path::Path::new(dir).join("store.db"))?;
    let started = Instant::now();

    let catalog: Vec<Product> = (0..products)
        .map(|i| Product { product_id: format!("p{i:07}"), name: Some(format!("Product {i}")), category: None })
        .collect();
    for chunk in catalog.chunks(100_000) {
        store.upsert_products(chunk)?;
    }
    eprintln!("catalog: {products} products in {:.1?}", started.elapsed());

    let zipf = Zipf::new(products, 1.0);
    let mut rng = Rng::new(42);
    let mut parents = BTreeSet::new();
    let mut rows_written = 0usize;
    for d in 0..days {
        let day = Bucket::containing(Granularity::Day, end.start_ms - (days - d) * 86_400_000);
        let mut sums: HashMap<u64, (i64, i64)> = HashMap::new();
        for _ in 0..per_day {
            let rank = zipf.sample(&mut rng);
            // 30 % of sales go to a different set of products each day.
            let id = if rng.below(10) < 3 { (rank + d as u64 * 7_919) % products } else { rank };
            let price = 199 + (id % 97) as i64 * 100;
            let e = sums.entry(id).or_default();
            e.0 += 1;
            e.1 += price;
        }
        let rows: Vec<ProductSum> = sums
            .into_iter()
            .map(|(id, (count, revenue_cents))| ProductSum { product_id: format!("p{id:07}"), count, revenue_cents })
            .collect();
        rows_written += rows.len();
        store.write_exact("seed", &[(day, rows)], 1000, &[], &[])?;
        parents.insert(day.parent(Granularity::Week));
        parents.insert(day.parent(Granularity::Month));
        eprintln!("{day}: {rows_written} rows so far, {:.0?}", started.elapsed());
    }
    // Weeks and months from their days, as the batch layer rolls them up (whole ones only).
    let first = end.start_ms - days * 86_400_000;
    for b in parents {
        if b.start_ms >= first && b.end_ms() <= end.start_ms {
            store.rollup(b)?;
            store.regenerate_top_lists(b, 1000)?;
            eprintln!("{b}: rolled up");
        }
    }
    eprintln!("done: {rows_written} day rows in {:.1?}", started.elapsed());
    Ok(())
}
