//! Rollup benchmark: one day of N products × 24 hours, and a year from 12 months of N
//! products, on the embedded SQLite store.
//!
//! `cargo run --release -p topk-batch --example rollup_bench -- [N] [DIR]`

use std::time::Instant;

use topk_core::time::{Bucket, Granularity};
use topk_store::{ProductSum, SqliteStore, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1_000_000, |a| a.parse().expect("N is a number"));
    let dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    let path = dir.join("rollup_bench.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut store = SqliteStore::open(&path).expect("store");
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
    {
        let conn = store.connection();
        conn.execute_batch("BEGIN").expect("begin");
        let mut stmt = conn
            .prepare("INSERT INTO batch_table (granularity, bucket_start, product_id, count, revenue_cents) VALUES ('month', ?1, ?2, ?3, 100)")
            .expect("prepare");
        for month in year.children() {
            for p in 0..n as i64 {
                stmt.execute(rusqlite_params(month.start_ms, p)).expect("insert");
            }
        }
        drop(stmt);
        conn.execute_batch("COMMIT").expect("commit");
    }
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

fn rusqlite_params(month: i64, p: i64) -> (i64, String, i64) {
    (month, format!("p{p:07}"), 1 + p % 17)
}
