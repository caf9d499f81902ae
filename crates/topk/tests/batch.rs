//! The batch layer end to end: every hour, day, ISO week, month and year bucket equals
//! sums computed independently from the input, across month and year boundaries; late
//! events and refunds re-run exactly the buckets they touch.

mod common;

use std::path::Path;

use common::*;

fn replay(files: &[&Path], data: &Path) -> String {
    let out = topk_cmd().arg("replay").args(files).arg("--data-dir").arg(data).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "replay failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn truth_of(files: &[&Path]) -> BucketSums {
    // Each file's ground truth is computed alone (ids are unique across these files).
    let mut hourly = Sums::new();
    for f in files {
        for (k, (c, r)) in full_truth(f) {
            let e = hourly.entry(k).or_insert((0, 0));
            e.0 += c;
            e.1 += r;
        }
    }
    bucket_truth(&hourly)
}

#[test]
fn rollups_across_month_and_year_boundaries_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(
        &input,
        &[
            "--events",
            "300000",
            "--products",
            "3000",
            "--start",
            "2020-12-10",
            "--days",
            "41",
            "--seed",
            "21",
            "--refund-rate",
            "0.02",
        ],
    );
    let data = dir.path().join("data");
    let out = replay(&[&input], &data);
    assert!(out.contains("0 failed, 0 waiting"), "{out}");
    let checked = assert_store_exact(&data.join("store.db"), &truth_of(&[&input]), 1000);
    // 2020-12-10 .. 2021-01-20 (in the past: only buckets that have ended are exact):
    // weeks from 2020-W50 to 2021-W03 (2020-W53 straddles both a month and a year
    // boundary), two months, two years.
    assert_eq!(checked["hour"], 41 * 24);
    assert_eq!(checked["day"], 41);
    assert_eq!(checked["week"], 7);
    assert_eq!(checked["month"], 2);
    assert_eq!(checked["year"], 2);
}

/// One NDJSON sale or refund line.
fn line(id: &str, ts: &str, product: &str, qty: i64, sale_ts: Option<&str>) -> String {
    match sale_ts {
        Some(s) => format!(
            "{{\"event_id\":\"{id}\",\"kind\":\"refund\",\"ts\":\"{ts}\",\"sale_ts\":\"{s}\",\"product_id\":\"{product}\",\"quantity\":{qty},\"price_cents\":100}}\n"
        ),
        None => format!("{{\"event_id\":\"{id}\",\"ts\":\"{ts}\",\"product_id\":\"{product}\",\"quantity\":{qty},\"price_cents\":100}}\n"),
    }
}

fn runs(db: &Path, task: &str, granularity: &str) -> Vec<(i64, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT bucket_start, COUNT(*) FROM pipeline_runs WHERE task = ?1 AND granularity = ?2 AND status = 'success' GROUP BY bucket_start ORDER BY bucket_start")
        .unwrap();
    stmt.query_map([task, granularity], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

fn top(db: &Path, granularity: &str, bucket: i64) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT product_id, count FROM top_lists WHERE granularity = ?1 AND bucket_start = ?2 AND breakdown = '' AND ranked_by = 'quantity' ORDER BY rank LIMIT 3")
        .unwrap();
    stmt.query_map(rusqlite::params![granularity, bucket], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn late_events_and_refunds_rerun_the_hour_and_every_bucket_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("store.db");
    // Day one: "a" sells 10 in 10:00, "b" sells 8 in 11:00; the next day has other sales.
    let mut first = String::new();
    for i in 0..10 {
        first += &line(&format!("a{i}"), "2020-12-31T10:05:00Z", "a", 1, None);
    }
    for i in 0..8 {
        first += &line(&format!("b{i}"), "2020-12-31T11:05:00Z", "b", 1, None);
    }
    first += &line("c0", "2021-01-01T09:00:00Z", "c", 2, None);
    let first_file = dir.path().join("first.ndjson");
    std::fs::write(&first_file, &first).unwrap();
    replay(&[&first_file], &data);
    let day = 1_609_372_800_000; // 2020-12-31
    assert_eq!(top(&db, "day", day), [("a".to_string(), 10), ("b".to_string(), 8)]);

    // Later: late sales of "b" in 11:00 and a refund of 5 of "a"'s 10:00 sales.
    let mut late = String::new();
    late += &line("b-late-1", "2020-12-31T11:30:00Z", "b", 1, None);
    late += &line("a-refund", "2021-01-01T12:00:00Z", "a", -5, Some("2020-12-31T10:05:00Z"));
    let late_file = dir.path().join("late.ndjson");
    std::fs::write(&late_file, &late).unwrap();
    replay(&[&late_file], &data);

    // The refund reorders the day's list, and the year's.
    assert_eq!(top(&db, "day", day), [("b".to_string(), 9), ("a".to_string(), 5)]);
    assert_eq!(top(&db, "year", 1_577_836_800_000), [("b".to_string(), 9), ("a".to_string(), 5)]);
    assert_store_exact(&db, &truth_of(&[&first_file, &late_file]), 1000);

    // Exactly the touched buckets ran twice: hours 10:00 and 11:00 of 2020-12-31 (the
    // refund counts in its sale's hour), their day, week, month and year; 2021 untouched.
    let twice =
        |g: &str| runs(&db, "rollup", g).into_iter().filter(|&(_, n)| n == 2).map(|(b, _)| b).collect::<Vec<_>>();
    assert_eq!(twice("hour"), [day + 10 * 3_600_000, day + 11 * 3_600_000]);
    assert_eq!(twice("day"), [day]);
    assert_eq!(twice("week"), [1_609_113_600_000]); // 2020-W53, Monday 2020-12-28
    assert_eq!(twice("month"), [1_606_780_800_000]); // 2020-12
    assert_eq!(twice("year"), [1_577_836_800_000]); // 2020
    assert_eq!(runs(&db, "rollup", "year").len(), 2, "2021 ran once, 2020 twice");
}

#[test]
fn batch_cli_runs_a_range_and_reports_status() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "20000", "--products", "300", "--start", "2026-11-02", "--days", "2", "--seed", "4"]);
    let data = dir.path().join("data");
    replay(&[&input], &data);
    let run = |args: &[&str]| {
        let out = topk_cmd().args(["batch"]).args(args).arg("--data-dir").arg(&data).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, out) = run(&["run", "--granularity", "day", "--from", "2026-11-02", "--to", "2026-11-04"]);
    assert!(ok, "{out}");
    assert!(out.contains("0 bucket(s) run"), "already up to date: {out}");
    let (ok, out) = run(&["run", "--granularity", "day", "--from", "2026-11-02", "--to", "2026-11-04", "--force"]);
    assert!(ok && out.contains("2026-11-02: ok") && out.contains("2 bucket(s) run, 0 failed, 0 not ready"), "{out}");
    // The end of a replay closes only what has ended: today and a future day are not
    // ready (they were once reported done, empty), and the command says so and fails.
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (today.to_string(), (today + chrono::Duration::days(3)).to_string());
    let (ok, out) = run(&["run", "--granularity", "day", "--from", &from, "--to", &to]);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("{today}: not ready: it has not ended yet")), "{out}");
    assert!(out.contains("3 bucket(s) run, 0 failed, 3 not ready"), "{out}");
    let (ok, out) = run(&["status"]);
    // Only a bucket that has not ended waits: the year 2026, until it ends.
    let waiting =
        usize::from(chrono::Utc::now() < "2027-01-01T00:00:00Z".parse::<chrono::DateTime<chrono::Utc>>().unwrap());
    let pending = format!("{waiting} bucket(s) pending");
    assert!(ok && out.lines().next().unwrap().starts_with("status") && out.contains(&pending), "{out}");
    assert_store_exact(&data.join("store.db"), &truth_of(&[&input]), 1000);
}

#[test]
fn killing_a_rollup_midway_leaves_no_bucket_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    gen(&input, &["--events", "100000", "--products", "20000", "--start", "2026-11-02", "--days", "3", "--seed", "9"]);
    let data = dir.path().join("data");
    replay(&[&input], &data);
    let truth = truth_of(&[&input]);
    let db = data.join("store.db");
    let batch_run = |g: &str| {
        topk_cmd()
            .args(["batch", "run", "--granularity", g, "--from", "2026-11-02", "--to", "2026-11-05", "--force"])
            .arg("--data-dir")
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut killed = 0;
    for (i, delay_ms) in [40u64, 90, 150, 220, 300, 20, 120, 260, 60, 180].into_iter().enumerate() {
        // Alternate hours (rows from Parquet) and days (rows from hours).
        let mut child = batch_run(if i % 2 == 0 { "hour" } else { "day" });
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // Whatever moment the kill hit, every bucket holds its complete, exact rows.
        assert_store_exact(&db, &truth, 1000);
    }
    assert!(killed >= 5, "only {killed} of 10 runs were still running when killed");
    assert!(batch_run("hour").wait().unwrap().success());
    assert_store_exact(&db, &truth, 1000);
}
