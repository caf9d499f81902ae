//! Fills a data directory's store with exact history for the API latency benchmark
//! (BENCHMARKS.md): a catalog of `--products` products, `--days` days of Zipf-distributed
//! sales ending at `--end` (a core of steady sellers plus a daily-shifting trending
//! share), and the whole weeks and months they roll up into — written as the batch
//! layer writes them (rows, top lists, totals).
//!
//! `cargo run --release -p topk --example seed_store -- DATA_DIR [--products 1000000]
//! [--days 120] [--sales-per-day 1000000] [--end 2026-11-01]`

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use topk_core::random::{Rng, Zipf};
use topk_core::time::{Bucket, Granularity};
use topk_store::{BatchStore, BucketRun, Product, ProductSum, SpeedStore, SqlStore};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: cannot parse {v:?}")))
        .unwrap_or(default)
}

/// Rows in product-id order, as the batch layer commits them.
fn rows_of(sums: HashMap<u64, (i64, i64)>) -> Vec<ProductSum> {
    let mut rows: Vec<ProductSum> = sums
        .into_iter()
        .map(|(id, (count, revenue_cents))| ProductSum { product_id: format!("p{id:07}"), count, revenue_cents })
        .collect();
    rows.sort_unstable_by(|a, b| a.product_id.cmp(&b.product_id));
    rows
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
    // The whole weeks and months in range, summed from their days as the batch layer does.
    let first = end.start_ms - days * 86_400_000;
    let mut parents: BTreeMap<Bucket, HashMap<u64, (i64, i64)>> = BTreeMap::new();
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
        for parent in [Granularity::Week, Granularity::Month].map(|g| day.parent(g)) {
            if parent.start_ms >= first && parent.end_ms() <= end.start_ms {
                let p = parents.entry(parent).or_default();
                for (&id, &(count, revenue)) in &sums {
                    let e = p.entry(id).or_default();
                    e.0 += count;
                    e.1 += revenue;
                }
            }
        }
        let rows = rows_of(sums);
        rows_written += rows.len();
        store.write_exact("seed", &[(day, String::new(), rows)], 1000, &[], &[])?;
        eprintln!("{day}: {rows_written} rows so far, {:.0?}", started.elapsed());
        // A week or month whose last day this was is complete.
        let done: Vec<Bucket> = parents.keys().copied().filter(|b| b.end_ms() <= day.end_ms()).collect();
        for b in done {
            let rows = [(String::new(), rows_of(parents.remove(&b).unwrap_or_default()).into())];
            store.commit_bucket(&BucketRun::rows(b, &rows, 1000))?;
            eprintln!("{b}: rolled up");
        }
    }
    eprintln!("done: {rows_written} day rows in {:.1?}", started.elapsed());
    Ok(())
}
