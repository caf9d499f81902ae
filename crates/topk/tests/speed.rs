//! The speed layer through the whole pipeline: Lambda's approximate rows are scored and
//! replaced by the batch layer; Kappa's exact stream alone fills the serving tables.

mod common;

use common::*;

fn replay(input: &std::path::Path, data: &std::path::Path, extra: &[&str]) {
    let out = topk_cmd().arg("replay").arg(input).arg("--data-dir").arg(data).args(extra).output().unwrap();
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn kappa_fills_every_bucket_exactly_without_a_batch_layer() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "200000", "--products", "5000", "--start", "2026-11-20", "--days", "3", "--seed", "5"]);
    let data = dir.path().join("data");
    replay(&input, &data, &["--architecture", "kappa", "--max-entries", "20000"]);
    let db = data.join("store.db");
    // Kappa counts every bucket exactly, open ones (this year) included.
    let checked = assert_store_exact(&db, &bucket_truth_ended_by(&full_truth(&input), i64::MAX), 1000);
    assert!(checked.values().sum::<usize>() > 70, "{checked:?}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let runs: i64 = conn.query_row("SELECT COUNT(*) FROM pipeline_runs", [], |r| r.get(0)).unwrap();
    assert_eq!(runs, 0, "kappa runs no batch DAG");
}

#[test]
fn lambda_speed_rows_are_scored_then_replaced_by_exact_ones() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "300000", "--products", "100000", "--start", "2026-11-20", "--days", "2", "--seed", "9"]);
    let data = dir.path().join("data");
    // The sketches take the flush batches as they come, so what they catch depends on how
    // the rows are cut into batches. Flushes by size and by closing hours only (not every
    // second of a replay slowed by a loaded machine) cut them the same way every run.
    replay(&input, &data, &["--max-entries", "5000", "--flush-interval-ms", "600000"]);
    let conn = rusqlite::Connection::open(data.join("store.db")).unwrap();
    // The year 2026 stays approximate until it ends; every bucket that ended is exact.
    let year_ended = chrono::Utc::now() >= "2027-01-01T00:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let speed_rows: Vec<(String, i64)> = conn
        .prepare("SELECT granularity, COUNT(*) FROM speed_table WHERE breakdown = '' GROUP BY granularity")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let open: Vec<(String, i64)> = if year_ended { vec![] } else { vec![("year".into(), 1000)] };
    assert_eq!(speed_rows, open, "the batch layer replaced every approximate row of an ended bucket");
    let (scored, worst_p10, worst_coverage): (i64, f64, f64) = conn
        .query_row("SELECT COUNT(*), MIN(precision_at_10), MIN(bound_coverage) FROM accuracy", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    // 48 hours, 2 days, 1 week, 1 month, and the year once it has ended.
    assert_eq!(scored, 52 + i64::from(year_ended), "every ended bucket with data was scored");
    let below: Vec<(String, i64, f64, f64)> = conn
        .prepare(
            "SELECT granularity, bucket_start, precision_at_10, precision_at_100 FROM accuracy
            WHERE precision_at_10 < 1 ORDER BY bucket_start",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(worst_p10, 1.0, "buckets below (granularity, start, p@10, p@100): {below:?}");
    assert_eq!(worst_coverage, 1.0, "every reported bound held");

    let out = topk_cmd().args(["accuracy", "--limit", "5", "--data-dir"]).arg(&data).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("p@100") && text.contains("5 buckets: mean p@10 1.000"), "{text}");

    // The same scores, as Prometheus metrics.
    let mut s = serve(&data, &[]);
    let metrics = reqwest::blocking::get(format!("{}/metrics", s.url)).unwrap().text().unwrap();
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let scored_granularities: &[&str] =
        if year_ended { &["hour", "day", "week", "month", "year"] } else { &["hour", "day", "week", "month"] };
    for g in scored_granularities {
        for name in ["topk_speed_precision_at_10", "topk_speed_bound_coverage"] {
            let series = format!("{name}{{granularity=\"{g}\"}}");
            assert_eq!(sample(&metrics, &series), Some(1.0), "{series} in {metrics}");
        }
    }
}
