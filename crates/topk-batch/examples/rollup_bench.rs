//! Rollup benchmark: one day of N products × 24 hours, and a year from 12 months of N
//! products, on the embedded SQLite store or on PostgreSQL.
//!
//! `cargo run --release -p topk-batch --example rollup_bench -- [N] [DIR | postgres://…]`
//! (PostgreSQL: the tables of the database's search path are emptied first.)

use std::time::Instant;

use topk_core::time::{Bucket, Granularity};
use topk_store::{vals, BatchStore, ProductSum, SqlStore, Value, EXACT_ROW};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1_000_000, |a| a.parse().expect("N is a number"));
    let at = args.next().unwrap_or_else(|| std::env::temp_dir().display().to_string());
    let mut store = if at.starts_with("postgres") {
        let mut store = SqlStore::open(&at).expect("store");
        store
            .execute_script("DELETE FROM batch_table; DELETE FROM top_lists; DELETE FROM bucket_totals")
            .expect("empty");
        store
    } else {
        let path = std::path::Path::new(&at).join("rollup_bench.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        SqlStore::open_sqlite(&path).expect("store")
    };
    let day = Bucket::containing(Granularity::Day, 1_796_083_200_000); // 2026-12-01
    let rows = |salt: i64| -> Vec<ProductSum> {
        (0..n as i64)
            .map(|p| ProductSum { product_id: format!("p{p:07}"), count: 1 + (p * 7 + salt) % 13, revenue_cents: 100 })
            .collect()
    };
    let t = Instant::now();
    for (i, hour) in day.children().into_iter().enumerate() {
        store.replace_hour(hour, &rows(i as i64), 1, &[]).expect("hour");
    }
    println!("fill: {} hour rows in {:.1} s", 24 * n, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let written = store.rollup(day).expect("rollup");
    let rollup = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.regenerate_top_lists(day, 1000).expect("top lists");
    println!(
        "day: rollup of {written} products from 24 hours in {rollup:.2} s, top lists in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let year = Bucket::containing(Granularity::Year, day.start_ms);
    let t = Instant::now();
    let ids: Vec<String> = (0..n).map(|p| format!("p{p:07}")).collect();
    store
        .transaction(|c| {
            for month in year.children() {
                let rows: Vec<Value<'_>> = (0..n as i64)
                    .flat_map(|p| vals!["month", month.start_ms, &ids[p as usize], 1 + p % 17, 100])
                    .collect();
                c.insert(&EXACT_ROW, &rows)?;
            }
            Ok(())
        })
        .expect("month rows");
    println!("fill: {} month rows in {:.1} s", 12 * n, t.elapsed().as_secs_f64());
    let t = Instant::now();
    let written = store.rollup(year).expect("rollup");
    let rollup = t.elapsed().as_secs_f64();
    let t = Instant::now();
    store.regenerate_top_lists(year, 1000).expect("top lists");
    println!(
        "year: rollup of {written} products from 12 months in {rollup:.2} s, top lists in {:.2} s",
        t.elapsed().as_secs_f64()
    );
}
