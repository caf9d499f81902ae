//! The batch layer at the chapter's scale: a day of N products in each of its 24 hours,
//! archived as the archive role writes it, then rolled up by one scheduler pass (24 hour
//! rollups, the day rollup, their top lists and totals), on the embedded SQLite store or
//! on PostgreSQL. Prints the time of the archive fill and of the pass; run it under
//! `/usr/bin/time -v` for the peak RSS.
//!
//! `cargo run --release -p topk --example rollup_bench -- [N] [DIR] [postgres://…]`
//! (`TOPK_LOG=topk_batch=debug` prints each bucket's time summing, scoring and committing.)
//! (DIR holds the archive, and the SQLite store unless a PostgreSQL URL is given, whose
//! tables in the search path are truncated first.) It sets the process's malloc
//! parameters as `topk` does ([`topk::process::tune_malloc`]), so its peak is what a batch
//! process's would be.
//!
//! The rows carry no dimensions unless `ROLLUP_BENCH_COUNTRIES=C` gives each product one
//! of C countries an hour: then the default breakdowns' `country` set has C values, whose
//! rows together are as many as the global ones (without it every set has the one value
//! `(none)`, whose rows are the global ones: marked, not stored again).

use std::time::{Duration, Instant};

use topk_archive::{Archive, Root};
use topk_batch::{Batch, BatchConfig};
use topk_core::flush::{AggRow, FlushBatch};
use topk_core::time::{Bucket, Granularity};
use topk_core::HOUR_MS;
use topk_store::SqlStore;

fn main() {
    topk::process::tune_malloc();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("TOPK_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let n: i64 = args.next().map_or(1_000_000, |a| a.parse().expect("N is a number"));
    let countries: i64 = std::env::var("ROLLUP_BENCH_COUNTRIES").map_or(0, |c| c.parse().expect("C is a number"));
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| std::env::temp_dir().display().to_string()))
        .join("rollup_bench");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    let store = match args.next() {
        Some(url) => {
            let mut store = SqlStore::open(&url).expect("store");
            // Truncated, not deleted from: a run after a `DELETE` of the last one's 25M
            // rows paid for their dead tuples (85–97 s against 45 s on a fresh schema).
            store
                .execute_script(
                    "TRUNCATE batch_table, batch_as_global, top_lists, bucket_totals, batch_pending,
                     batch_hour_versions, pipeline_runs",
                )
                .expect("empty");
            store
        }
        None => SqlStore::open_sqlite(dir.join("store.db")).expect("store"),
    };
    // 2026-12-01, a Tuesday: its week and month are not over when the watermark passes it,
    // so the pass rolls up the day's hours and the day.
    let day = Bucket::containing(Granularity::Day, 1_796_083_200_000);
    let root = Root::Dir(dir.join("archive"));
    let t = Instant::now();
    let mut archive = Archive::open(root.clone(), 1).expect("archive");
    for (i, hour) in day.children().into_iter().enumerate() {
        let i = i as i64;
        let rows = (0..n)
            .map(|p| AggRow {
                product_id: format!("p{p:07}"),
                hour_ms: hour.start_ms,
                count: 1 + (p * 7 + i) % 13,
                revenue_cents: 100 * (1 + (p * 7 + i) % 13),
                earliest_ts_ms: hour.start_ms,
                latest_ts_ms: hour.start_ms,
                dims: match countries {
                    0 => Default::default(),
                    c => [format!("C{:02}", (p + i) % c), String::new(), String::new()],
                },
            })
            .collect();
        let watermark_ms = if i == 23 { day.end_ms() + HOUR_MS } else { hour.end_ms() };
        let batch = FlushBatch {
            partition: 0,
            first_offset: i as u64 * 10,
            end_offset: i as u64 * 10 + 10,
            watermark_ms,
            rows,
            ..FlushBatch::default()
        };
        archive.apply(i as u64, &batch).expect("archive");
        archive.save().expect("archive state");
    }
    println!("fill: {} hourly rows archived in {:.1} s", 24 * n, t.elapsed().as_secs_f64());

    let cfg = BatchConfig { hour_retention: None, max_backoff: Duration::from_secs(1), ..BatchConfig::default() };
    let mut batch = Batch::new(store, root, cfg);
    let t = Instant::now();
    let report = batch.run_pending().expect("pass");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.ran.len(), 25, "24 hours and the day: {:?}", report.ran);
    println!(
        "pass: 24 hour rollups of {n} products, the day rollup, top lists and totals in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}
