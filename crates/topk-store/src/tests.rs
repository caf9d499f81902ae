//! One store suite, run against every backend: SQLite in a temporary directory and the
//! PostgreSQL server of the machine ([`crate::testing::Postgres`]), each test in a schema
//! of its own.

use topk_core::accuracy::Accuracy;
use topk_core::time::{Bucket, Granularity};

use crate::postgres::PgConn;
use crate::schema::migrations;
use crate::sql::{Conn, SqlStore};
use crate::sqlite::SqliteConn;
use crate::testing::Postgres;
use crate::*;

const H: i64 = 3_600_000;
const DAY0: i64 = 1_796_083_200_000; // 2026-12-01T00:00:00Z

/// A database the suite can open more than once (to test reopening and upgrades).
trait Backend: Sync {
    fn conn(&self) -> Box<dyn Conn>;
    fn open(&self) -> SqlStore {
        SqlStore::new(self.conn()).unwrap()
    }
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    fn conn(&self) -> Box<dyn Conn> {
        Box::new(SqliteConn::open(&self.0.path().join("store.db")).unwrap())
    }
}

impl Backend for Postgres {
    fn conn(&self) -> Box<dyn Conn> {
        Box::new(PgConn::connect(&self.url).unwrap())
    }
}

fn sum(p: &str, count: i64) -> ProductSum {
    ProductSum { product_id: p.into(), count, revenue_cents: count * 10 }
}

/// Rows as a bucket's global slice.
fn global(rows: &[ProductSum]) -> [Slice; 1] {
    [(String::new(), rows.to_vec().into())]
}

fn a_bucket_run_commits_rows_lists_totals_and_marks_and_top_lists_rank_it(b: &dyn Backend) {
    let mut s = b.open();
    let day = Bucket::containing(Granularity::Day, DAY0);
    for (h, rows) in [(0, vec![sum("a", 5), sum("b", 1)]), (23, vec![sum("b", 7), sum("c", 2)])] {
        let hour = Bucket::containing(Granularity::Hour, DAY0 + h * H);
        let ancestors = hour.ancestors();
        let rows = global(&rows);
        let run = BucketRun { hour_version: Some(1), mark_pending: &ancestors, ..BucketRun::rows(hour, &rows, 10) };
        assert_eq!(s.commit_bucket(&run).unwrap(), 4, "two lists of two rows");
    }
    assert!(s.pending().unwrap().contains(&day));
    // The batch layer sums the day; the store keeps what it is given.
    s.commit_bucket(&BucketRun::rows(day, &global(&[sum("a", 5), sum("b", 9), sum("c", 2)]), 2)).unwrap();
    // Committing again replaces rather than adds.
    let rows = [sum("a", 5), sum("b", 8), sum("c", 2)];
    s.commit_bucket(&BucketRun::rows(day, &global(&rows), 2)).unwrap();
    assert_eq!(s.bucket_rows(day).unwrap(), rows);
    let top: Vec<_> =
        s.top_list(day, By::Quantity, 10).unwrap().into_iter().map(|r| (r.rank, r.product_id, r.count)).collect();
    assert_eq!(top, [(1, "b".to_string(), 8), (2, "a".to_string(), 5)]);
    assert_eq!(s.top_list(day, By::Revenue, 1).unwrap()[0].source, "batch");
    let totals = ExactBucket {
        bucket: day,
        count: 15,
        revenue_cents: 150,
        products: 3,
        min_count: Some(2),
        min_revenue_cents: Some(20),
    };
    assert_eq!(s.exact_buckets(Granularity::Day, DAY0, DAY0 + 1).unwrap(), [totals]);
    assert!(s.has_exact(day).unwrap());
    assert_eq!(s.ranks_of(day, By::Quantity, &["a"]).unwrap(), [("a".to_string(), 2)]);
    assert_eq!(s.ranks_of(day, By::Quantity, &["c"]).unwrap(), [], "beyond the list");
    let mut ranks = s.ranks_of(day, By::Quantity, &["c", "b", "a", "zz"]).unwrap();
    ranks.sort();
    assert_eq!(ranks, [("a".to_string(), 2), ("b".to_string(), 1)], "several at once, those on the list");
    assert_eq!(s.ranks_of(day, By::Quantity, &[]).unwrap(), []);
    assert!(s.pending().unwrap().contains(&day));
    // A run clears only the generation it started from.
    let generation = s.pending_generation(day).unwrap().unwrap();
    s.add_pending(&[day]).unwrap();
    s.remove_pending(day, generation).unwrap();
    assert!(s.pending().unwrap().contains(&day), "made stale again while running: stays pending");
    s.remove_pending(day, generation + 1).unwrap();
    assert!(!s.pending().unwrap().contains(&day));
    assert_eq!(s.hour_version(Bucket::containing(Granularity::Hour, DAY0)).unwrap(), Some(1));
    // Retention drops old hours with their lists, and keeps the day.
    assert_eq!(s.delete_hours_before(DAY0 + H).unwrap(), 2);
    assert!(s.bucket_rows(Bucket::containing(Granularity::Hour, DAY0)).unwrap().is_empty());
    assert_eq!(s.bucket_rows(day).unwrap().len(), 3);
    // An hour past retention commits no rows: it deletes those it had, and its lists.
    let hour = Bucket::containing(Granularity::Hour, DAY0 + 23 * H);
    let mut gone = BucketRun::rows(hour, &[], 10);
    gone.rows = None;
    assert_eq!(s.commit_bucket(&gone).unwrap(), 0);
    assert!(s.bucket_rows(hour).unwrap().is_empty());
    assert!(!s.has_exact(hour).unwrap());
}

/// Everything a run commits lands together, or (on an error half-way) not at all.
fn a_bucket_run_records_its_tasks_score_and_pending_mark_with_its_rows(b: &dyn Backend) {
    let mut s = b.open();
    let hour = Bucket::containing(Granularity::Hour, DAY0);
    let speed = SpeedWrite {
        breakdown: String::new(),
        bucket: hour,
        rows: vec![SpeedRow { product_id: "a".into(), count: 4, error: 1, revenue_cents: 40, updated_ms: 1 }],
        sketches: vec![],
        finished: false,
        ended: false,
        unlisted_bound: 0,
        total_count: 4,
    };
    s.write_speed("speed", &[speed], &[], None, &[]).unwrap();
    s.add_pending(&[hour]).unwrap();
    let generation = s.pending_generation(hour).unwrap();
    let a = Accuracy {
        precision_at_10: 1.0,
        precision_at_100: 1.0,
        max_relative_error: 0.0,
        mean_relative_error: 0.0,
        bound_coverage: 1.0,
    };
    let task = |task, status, error| TaskRun {
        task,
        attempt: 1,
        started_ms: 10,
        finished_ms: 12,
        status,
        rows: Some(1),
        error,
    };
    let runs = [task("check", RunStatus::Success, None), task("rollup", RunStatus::Success, None)];
    let ancestors = hour.ancestors();
    let rows = global(&[sum("a", 5)]);
    let run = BucketRun {
        hour_version: Some(3),
        mark_pending: &ancestors,
        accuracy: Some(&a),
        runs: &runs,
        generation,
        now_ms: 20,
        ..BucketRun::rows(hour, &rows, 10)
    };
    // The same product twice violates the primary key half-way through: nothing lands.
    let twice = global(&[sum("a", 5), sum("a", 6)]);
    s.commit_bucket(&BucketRun { rows: Some(&twice), ..run }).unwrap_err();
    assert!(s.bucket_rows(hour).unwrap().is_empty());
    assert_eq!(s.speed_rows(hour).unwrap().len(), 1);
    assert_eq!(s.pending().unwrap(), [hour]);
    assert!(s.runs(10).unwrap().is_empty());
    assert_eq!(s.hour_version(hour).unwrap(), None);

    s.commit_bucket(&run).unwrap();
    assert_eq!(s.bucket_rows(hour).unwrap(), *rows[0].1);
    assert!(s.speed_rows(hour).unwrap().is_empty(), "exact rows replace the estimates");
    assert_eq!(s.accuracy(10).unwrap(), [AccuracyRecord { bucket: hour, accuracy: a, scored_ms: 20 }]);
    assert_eq!(s.hour_version(hour).unwrap(), Some(3));
    let mut pending = s.pending().unwrap();
    pending.sort();
    assert_eq!(pending, ancestors, "the hour is done, the buckets above it are stale");
    let recorded: Vec<_> = s.runs(10).unwrap().into_iter().map(|r| (r.task, r.status, r.finished_ms)).collect();
    assert_eq!(
        recorded,
        [("rollup".to_string(), RunStatus::Success, Some(12)), ("check".to_string(), RunStatus::Success, Some(12))]
    );
    s.record_runs(hour, &[task("top_lists", RunStatus::Failed, Some("disk full"))]).unwrap();
    assert_eq!(s.runs(1).unwrap()[0].error.as_deref(), Some("disk full"));
}

/// Ties rank by product id in byte order on every backend ('B' < 'a'), whatever the
/// database's locale, and prefix searches use the same order.
fn ties_and_searches_follow_byte_order(b: &dyn Backend) {
    let mut s = b.open();
    let day = Bucket::containing(Granularity::Day, DAY0);
    let rows = vec![sum("a", 5), sum("B", 5), sum("_x", 5), sum("ab", 1)];
    s.write_exact("batch", &[(day, String::new(), rows)], 10, &[], &[]).unwrap();
    let ids: Vec<_> = s.top_list(day, By::Quantity, 10).unwrap().into_iter().map(|r| r.product_id).collect();
    assert_eq!(ids, ["B", "_x", "a", "ab"]);
    s.upsert_products(&[
        Product { product_id: "a".into(), name: Some("Zebra lamp".into()), category: None },
        Product { product_id: "ab".into(), name: Some("Apple".into()), category: Some("fruit".into()) },
        Product { product_id: "B".into(), name: None, category: None },
    ])
    .unwrap();
    // A later record without a name keeps the known one.
    s.upsert_products(&[Product { product_id: "a".into(), name: None, category: Some("home".into()) }]).unwrap();
    let found: Vec<_> = s.search_products("a", 10).unwrap().into_iter().map(|p| p.product_id).collect();
    assert_eq!(found, ["a", "ab"], "ids first, then names");
    let found: Vec<_> = s.search_products("zeb", 10).unwrap().into_iter().map(|p| p.product_id).collect();
    assert_eq!(found, ["a"], "case-insensitive name prefix");
    let mut named = s.products(&["a", "B", "missing"]).unwrap();
    named.sort_by(|x, y| x.product_id.cmp(&y.product_id));
    assert_eq!(
        named[1],
        Product { product_id: "a".into(), name: Some("Zebra lamp".into()), category: Some("home".into()) }
    );
    assert_eq!(named.len(), 2);
    let mut sums = s.product_sums(day, &["ab", "B", "nope"]).unwrap();
    sums.sort_by(|x, y| x.product_id.cmp(&y.product_id));
    assert_eq!(sums, [sum("B", 5), sum("ab", 1)]);
    assert!(s.product_sums(day, &[]).unwrap().is_empty());
}

fn the_catalog_pages_in_byte_order_after_a_cursor(b: &dyn Backend) {
    let mut s = b.open();
    assert!(s.catalog_ids_after("", 10).unwrap().is_empty());
    let ids = ["b", "B", "_x", "a", "ab", "a b", "\u{e9}t\u{e9}"];
    let products: Vec<Product> =
        ids.iter().map(|id| Product { product_id: id.to_string(), name: None, category: None }).collect();
    s.upsert_products(&products).unwrap();
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page = s.catalog_ids_after(&after, 3).unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.clone();
        all.extend(page);
    }
    assert_eq!(all, ["B", "_x", "a", "a b", "ab", "b", "\u{e9}t\u{e9}"], "every id once, in byte order");
    assert_eq!(s.catalog_ids_after("a", 2).unwrap(), ["a b", "ab"], "strictly after the cursor");
}

fn speed_writes_replace_rows_and_keep_sketches_until_finished(b: &dyn Backend) {
    let mut s = b.open();
    let hour = Bucket::containing(Granularity::Hour, DAY0);
    let row =
        |p: &str, count| SpeedRow { product_id: p.into(), count, error: 2, revenue_cents: count * 3, updated_ms: 77 };
    let write = |rows: Vec<SpeedRow>, finished| SpeedWrite {
        breakdown: String::new(),
        bucket: hour,
        rows,
        sketches: vec![(0, vec![0, 1, 255]), (3, vec![])],
        finished,
        ended: false,
        unlisted_bound: 4,
        total_count: 40,
    };
    s.write_speed("speed", &[write(vec![row("a", 9), row("b", 3)], false)], &[(0, 10), (3, 7)], None, &[]).unwrap();
    s.write_speed("speed", &[write(vec![row("b", 12)], false)], &[(0, 11)], None, &[]).unwrap();
    assert_eq!(s.speed_rows(hour).unwrap(), [row("b", 12)]);
    assert_eq!(s.consumer_offsets("speed").unwrap(), [(0, 11), (3, 7)]);
    let mut sketches = s.speed_sketches().unwrap();
    sketches.sort_by_key(|x| x.2);
    assert_eq!(sketches, [(hour, String::new(), 0, vec![0, 1, 255]), (hour, String::new(), 3, vec![])]);
    let buckets = s.speed_buckets(Granularity::Hour, DAY0, DAY0 + H).unwrap();
    assert_eq!(buckets, [SpeedBucket { bucket: hour, unlisted_bound: 4, total_count: 40, updated_ms: 77 }]);
    s.write_speed("speed", &[write(vec![], true)], &[], None, &[]).unwrap();
    assert!(s.speed_sketches().unwrap().is_empty(), "finished buckets drop their sketches");
    assert!(s.speed_buckets(Granularity::Hour, DAY0, DAY0 + H).unwrap().is_empty());
    s.write_speed("speed", &[write(vec![row("c", 1)], false)], &[], None, &[]).unwrap();
    s.commit_bucket(&BucketRun::rows(hour, &[], 10)).unwrap();
    assert!(s.speed_rows(hour).unwrap().is_empty(), "the exact answer deletes the estimates");
    // The catalog entries of the absorbed flushes land in the same transaction, many at
    // once (PostgreSQL: more than one multi-row statement).
    let products: Vec<Product> = (0..2500)
        .map(|i| Product {
            product_id: format!("p{i:04}"),
            name: (i % 2 == 0).then(|| format!("N{i}")),
            category: None,
        })
        .collect();
    s.write_speed("speed", &[], &[(0, 12)], None, &products).unwrap();
    let got = s.products(&["p0000", "p0001", "p2499"]).unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.iter().any(|p| p.product_id == "p0000" && p.name.as_deref() == Some("N0")));
    assert_eq!(s.consumer_offsets("speed").unwrap(), [(0, 12), (3, 7)]);
}

fn runs_are_recorded_failures_first_and_interrupted_ones_marked(b: &dyn Backend) {
    let mut s = b.open();
    let bucket = Bucket::containing(Granularity::Hour, DAY0);
    let ok = s.start_run("rollup", bucket, 1, 10).unwrap();
    s.finish_run(ok, RunStatus::Success, Some(3), None, 20).unwrap();
    let bad = s.start_run("rollup", bucket, 2, 30).unwrap();
    assert!(bad > ok);
    s.finish_run(bad, RunStatus::Failed, None, Some("disk full"), 45).unwrap();
    s.start_run("top_lists", bucket, 1, 50).unwrap();
    drop(s);
    let mut s = b.open();
    assert_eq!(s.fail_interrupted_runs(60).unwrap(), 1);
    let runs = s.runs(10).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [RunStatus::Failed, RunStatus::Failed, RunStatus::Success]
    );
    assert_eq!(runs[0].error.as_deref(), Some("interrupted: the process stopped during the run"));
    assert_eq!(runs[1].error.as_deref(), Some("disk full"));
    assert_eq!((runs[2].rows, runs[2].finished_ms, runs[2].bucket), (Some(3), Some(20), bucket));
    assert_eq!(s.attempts("rollup", bucket).unwrap(), 2);
    let stats = s.run_stats().unwrap();
    let rollup_failed = stats.iter().find(|r| r.task == "rollup" && r.status == RunStatus::Failed).unwrap();
    assert_eq!((rollup_failed.runs, rollup_failed.duration_ms), (1, 15));
}

fn accuracy_is_kept_per_bucket(b: &dyn Backend) {
    let mut s = b.open();
    let hour = Bucket::containing(Granularity::Hour, DAY0);
    let mut a = Accuracy {
        precision_at_10: 0.9,
        precision_at_100: 0.875,
        max_relative_error: 0.125,
        mean_relative_error: 0.01,
        bound_coverage: 1.0,
    };
    s.record_accuracy(hour, &a, 5).unwrap();
    a.precision_at_10 = 1.0;
    s.record_accuracy(hour, &a, 6).unwrap();
    assert_eq!(s.accuracy(10).unwrap(), [AccuracyRecord { bucket: hour, accuracy: a, scored_ms: 6 }]);
}

fn a_failed_transaction_leaves_nothing_behind(b: &dyn Backend) {
    let mut s = b.open();
    let hour = Bucket::containing(Granularity::Hour, DAY0);
    let commit = |s: &mut SqlStore, rows: &[ProductSum], version| {
        let rows = global(rows);
        s.commit_bucket(&BucketRun { hour_version: Some(version), ..BucketRun::rows(hour, &rows, 10) })
    };
    commit(&mut s, &[sum("a", 1)], 1).unwrap();
    // The same product twice violates the primary key half-way through the transaction.
    commit(&mut s, &[sum("b", 1), sum("b", 2)], 2).unwrap_err();
    assert_eq!(s.bucket_rows(hour).unwrap(), [sum("a", 1)]);
    assert_eq!(s.hour_version(hour).unwrap(), Some(1));
    // And the connection is usable afterwards.
    commit(&mut s, &[sum("c", 3)], 3).unwrap();
    assert_eq!(s.bucket_rows(hour).unwrap(), [sum("c", 3)]);
}

fn upgrading_a_store_backfills_the_totals_of_exact_buckets(b: &dyn Backend) {
    let day = Bucket::containing(Granularity::Day, DAY0);
    {
        // A store as the previous release left it: migrations 1 and 2 only.
        let mut old = SqlStore::unmigrated(b.conn());
        let c = old.conn();
        c.script("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY)").unwrap();
        for (version, sql) in &migrations(c.dialect())[..2] {
            c.script(sql).unwrap();
            c.exec("INSERT INTO schema_migrations (version) VALUES ($1)", &vals![*version]).unwrap();
        }
        // Their columns then: before migration 6 added `breakdown`.
        for (p, n) in [("a", 5), ("b", 3)] {
            let row = vals!["day", DAY0, p, n, n * 10];
            let sql = "INSERT INTO batch_table (granularity, bucket_start, product_id, count, revenue_cents)
                VALUES ($1, $2, $3, $4, $5)";
            c.exec(sql, &row).unwrap();
        }
        for (rank, p, n) in [(1, "a", 5), (2, "b", 3)] {
            let row = vals!["day", DAY0, "quantity", rank, p, n, n * 10, 0i64, "batch"];
            let sql = "INSERT INTO top_lists (granularity, bucket_start, ranked_by, rank, product_id, count,
                revenue_cents, error_bound, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
            c.exec(sql, &row).unwrap();
        }
    }
    let mut s = b.open();
    let exact = s.exact_buckets(Granularity::Day, DAY0, DAY0 + 1).unwrap();
    let want = ExactBucket {
        bucket: day,
        count: 8,
        revenue_cents: 80,
        products: 2,
        min_count: Some(3),
        min_revenue_cents: Some(30),
    };
    assert_eq!(exact, [want]);
    // Migration 6 kept the rows and lists as the global ones.
    assert_eq!(s.bucket_rows(day).unwrap(), [sum("a", 5), sum("b", 3)]);
    assert_eq!(s.top_list(day, By::Quantity, 5).unwrap().len(), 2);
    s.set_breakdown("country=DE");
    assert!(s.bucket_rows(day).unwrap().is_empty());
    assert_eq!(s.exact_buckets(Granularity::Day, DAY0, DAY0 + 1).unwrap()[0].count, 0, "exact, and nothing sold");
    drop(s);
    b.open(); // migrations already applied: opening again changes nothing
}

fn concurrent_opens_migrate_once(b: &dyn Backend) {
    std::thread::scope(|scope| {
        let opens: Vec<_> = (0..4).map(|_| scope.spawn(|| b.open().pending().map(|p| p.len()))).collect();
        for o in opens {
            assert_eq!(o.join().unwrap().unwrap(), 0);
        }
    });
}

/// More rows than one multi-row statement carries (PostgreSQL sends 1000 per INSERT).
fn large_writes_arrive_whole(b: &dyn Backend) {
    let mut s = b.open();
    let hour = Bucket::containing(Granularity::Hour, DAY0);
    let rows: Vec<ProductSum> = (0..2501).map(|i| sum(&format!("p{i:05}"), i + 1)).collect();
    assert_eq!(s.commit_bucket(&BucketRun::rows(hour, &global(&rows), 1200)).unwrap(), 2400);
    assert_eq!(s.bucket_rows(hour).unwrap(), rows);
    let day = Bucket::containing(Granularity::Day, DAY0);
    s.write_exact("kappa", &[(day, String::new(), rows.clone())], 1500, &[(0, 9)], &[]).unwrap();
    let top = s.top_list(day, By::Quantity, 2000).unwrap();
    assert_eq!(top.len(), 1500);
    assert_eq!((top[0].product_id.as_str(), top[1499].count), ("p02500", 1002));
    let speed: Vec<SpeedRow> = rows
        .iter()
        .map(|r| SpeedRow {
            product_id: r.product_id.clone(),
            count: r.count,
            error: 1,
            revenue_cents: 0,
            updated_ms: 5,
        })
        .collect();
    let write = SpeedWrite {
        breakdown: String::new(),
        bucket: hour,
        rows: speed,
        sketches: vec![],
        finished: false,
        ended: false,
        unlisted_bound: 1,
        total_count: 9,
    };
    // The catalog entries come with a speed write, more than one insert takes.
    let n = crate::catalog::UPSERT_SLICE + 7;
    let products: Vec<Product> = (0..n)
        .map(|i| Product { product_id: format!("p{i:06}"), name: Some(format!("Name {i}")), category: None })
        .collect();
    s.write_speed("speed", &[write], &[], None, &products).unwrap();
    assert_eq!(s.speed_rows(hour).unwrap().len(), 2501);
    let ids = s.catalog_ids_after("", n + 10).unwrap();
    assert_eq!(ids.len(), n);
    assert_eq!((ids[0].as_str(), ids[n - 1].as_str()), ("p000000", format!("p{:06}", n - 1).as_str()));
    let last = format!("name {}", n - 1);
    assert_eq!(s.search_products(&last, 5).unwrap().len(), 1, "the last insert's names are searchable");
}

fn the_exact_generation_moves_with_batch_runs_and_kappa_writes(b: &dyn Backend) {
    let mut s = b.open();
    let day = Bucket { granularity: Granularity::Day, start_ms: DAY0 };
    assert_eq!(s.exact_generation().unwrap(), (0, 0));
    let run = s.start_run("rollup", day, 1, 5).unwrap();
    assert_eq!(s.exact_generation().unwrap(), (run, 0));
    s.write_exact("kappa", &[(day, String::new(), vec![sum("a", 1)])], 10, &[(0, 7), (1, 3)], &[]).unwrap();
    assert_eq!(s.exact_generation().unwrap(), (run, 10));
    s.write_speed("speed", &[], &[(0, 99)], None, &[]).unwrap();
    assert_eq!(s.exact_generation().unwrap(), (run, 10), "the speed layer's offsets change nothing exact");
}

/// PostgreSQL loads rows that cannot conflict by COPY, the others by multi-row INSERTs.
#[test]
fn plain_inserts_go_by_copy_on_postgresql() {
    assert_eq!(
        EXACT_ROW.copy().unwrap(),
        "COPY batch_table (granularity, bucket_start, breakdown, product_id, count, revenue_cents) FROM STDIN BINARY"
    );
    assert!(crate::speed::ROW.copy().unwrap().starts_with("COPY speed_table (granularity, "));
    assert!(crate::top_lists::ROW.copy().unwrap().starts_with("COPY top_lists (granularity, "));
    assert_eq!(crate::speed::UPSERT_EXACT_ROW.copy(), None, "ON CONFLICT");
}

fn breakdowns_are_stored_and_read_apart_from_the_global_lists(b: &dyn Backend) {
    let mut s = b.open();
    let day = Bucket::containing(Granularity::Day, DAY0);
    let slices: Vec<Slice> = vec![
        (String::new(), vec![sum("a", 5), sum("b", 4)].into()),
        ("country,category=DE|toys".into(), vec![sum("b", 4)].into()),
        ("country=DE".into(), vec![sum("b", 4)].into()),
        ("country=FR".into(), vec![sum("a", 5)].into()),
    ];
    let admitted = [("country".to_string(), "DE".to_string()), ("country".to_string(), "FR".to_string())];
    s.commit_bucket(&BucketRun { admitted: &admitted, ..BucketRun::rows(day, &slices, 10) }).unwrap();
    assert_eq!(s.bucket_slices(day).unwrap(), slices, "by breakdown, the global rows first");
    assert_eq!(s.top_list(day, By::Quantity, 1).unwrap()[0].product_id, "a");
    s.set_breakdown("country=DE");
    assert_eq!(s.bucket_rows(day).unwrap(), [sum("b", 4)]);
    assert_eq!(s.top_list(day, By::Quantity, 1).unwrap()[0].product_id, "b");
    assert!(s.has_exact(day).unwrap());
    s.set_breakdown("country=XX");
    assert!(s.has_exact(day).unwrap(), "the bucket is exact; the value sold nothing there");
    assert!(s.top_list(day, By::Quantity, 10).unwrap().is_empty());
    s.set_breakdown("");
    let values = s.breakdown_values(day, "country=").unwrap();
    assert_eq!(values, [("country=DE".into(), 4, 40), ("country=FR".into(), 5, 50)], "not country,category");
    assert_eq!(s.admitted_count("country").unwrap(), 2);
    assert!(s.is_admitted("country", "DE").unwrap());
    assert!(!s.is_admitted("country", "IT").unwrap());
    let mut admitted_values = s.admitted_values().unwrap();
    admitted_values.sort();
    assert_eq!(admitted_values, admitted);
    // Running the bucket again replaces every breakdown's rows.
    let fewer = [slices[0].clone(), slices[2].clone()];
    s.commit_bucket(&BucketRun::rows(day, &fewer, 10)).unwrap();
    assert_eq!(s.bucket_slices(day).unwrap(), fewer);
    assert!(s.breakdown_values(day, "country,category=").unwrap().is_empty());
    // The sets the rows were computed for; changing them forgets the hours' versions.
    let hour = Bucket::containing(Granularity::Hour, DAY0);
    let one = [(String::new(), vec![sum("a", 1)].into())];
    s.commit_bucket(&BucketRun { hour_version: Some(4), ..BucketRun::rows(hour, &one, 10) }).unwrap();
    assert_eq!(s.breakdown_sets().unwrap(), None);
    s.set_breakdown_sets(&["country".into()], false).unwrap();
    assert_eq!(s.breakdown_sets().unwrap(), Some(vec!["country".to_string()]));
    assert_eq!(s.hour_version(hour).unwrap(), Some(4));
    s.set_breakdown_sets(&[], true).unwrap();
    assert_eq!(s.breakdown_sets().unwrap(), Some(vec![]), "none at all is recorded too");
    assert_eq!(s.hour_version(hour).unwrap(), None, "every hour runs again");
}

/// Counts the stored rows of a bucket's breakdown, as stored (not as read).
fn stored_rows(s: &mut SqlStore, bucket: Bucket, breakdown: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM batch_table WHERE granularity = $1 AND bucket_start = $2 AND breakdown = $3";
    s.transaction(|c| crate::sql::query_int(c, sql, &vals![bucket.granularity.as_str(), bucket.start_ms, breakdown]))
        .unwrap()
        .unwrap_or(0)
}

fn a_breakdown_with_the_global_rows_is_marked_not_stored_twice_and_reads_the_same(b: &dyn Backend) {
    let mut s = b.open();
    let day = Bucket::containing(Granularity::Day, DAY0);
    let rows = vec![sum("a", 5), sum("b", 4)];
    let slices: Vec<Slice> = vec![
        (String::new(), rows.clone().into()),
        ("category=(none)".into(), rows.clone().into()),
        ("country=DE".into(), vec![sum("b", 4)].into()),
        ("country=FR".into(), vec![sum("a", 5), sum("b", 4)].into()),
    ];
    s.commit_bucket(&BucketRun::rows(day, &slices, 10)).unwrap();
    assert_eq!(stored_rows(&mut s, day, "category=(none)"), 0, "marked, not stored");
    assert_eq!(stored_rows(&mut s, day, "country=FR"), 0, "any value whose rows are the global ones");
    assert_eq!(stored_rows(&mut s, day, "country=DE"), 1);
    assert_eq!(s.bucket_slices(day).unwrap(), slices, "read back whole, in key order");
    s.set_breakdown("category=(none)");
    assert_eq!(s.bucket_rows(day).unwrap(), rows);
    assert_eq!(s.product_sums(day, &["b", "x"]).unwrap(), [sum("b", 4)]);
    assert_eq!(s.top_list(day, By::Quantity, 1).unwrap()[0].product_id, "a");
    s.set_breakdown("country=DE");
    assert_eq!(s.product_sums(day, &["a", "b"]).unwrap(), [sum("b", 4)], "an unmarked value reads its own rows");
    s.set_breakdown("");
    let values = s.breakdown_values(day, "country=").unwrap();
    assert_eq!(values, [("country=DE".into(), 4, 40), ("country=FR".into(), 9, 90)]);
    // A run again with different rows: the marks go with the old rows.
    let apart = [slices[0].clone(), ("category=(none)".into(), vec![sum("a", 5)].into())];
    s.commit_bucket(&BucketRun::rows(day, &apart, 10)).unwrap();
    assert_eq!(s.bucket_slices(day).unwrap(), apart);
    // Kappa writing a marked bucket (a store that ran Lambda) gives the mark rows of its own first.
    s.commit_bucket(&BucketRun::rows(day, &slices, 10)).unwrap();
    s.write_exact("kappa", &[(day, String::new(), vec![sum("c", 1)])], 10, &[], &[]).unwrap();
    assert_eq!(stored_rows(&mut s, day, "category=(none)"), 2);
    s.set_breakdown("category=(none)");
    assert_eq!(s.bucket_rows(day).unwrap(), rows, "the global rows before Kappa's write");
    // Retention drops an hour's marks with its rows.
    let hour = Bucket::containing(Granularity::Hour, DAY0);
    s.commit_bucket(&BucketRun::rows(hour, &slices, 10)).unwrap();
    s.delete_hours_before(DAY0 + H).unwrap();
    s.set_breakdown("");
    assert!(s.bucket_slices(hour).unwrap().is_empty());
}

/// The race of a speed-layer write with the batch layer's commit of the same ended bucket:
/// the commit lands while the write waits, and the write, looking in its own transaction,
/// leaves no estimates beside the exact answer.
fn an_ended_buckets_estimates_yield_to_an_exact_answer_committed_meanwhile(b: &dyn Backend) {
    let mut s = b.open();
    let hour = Bucket::containing(Granularity::Hour, DAY0);
    let write = |ended| SpeedWrite {
        breakdown: String::new(),
        bucket: hour,
        rows: vec![SpeedRow { product_id: "a".into(), count: 4, error: 1, revenue_cents: 40, updated_ms: 1 }],
        sketches: vec![(0, vec![1, 2])],
        finished: false,
        ended,
        unlisted_bound: 1,
        total_count: 4,
    };
    assert_eq!(s.speed_watermark().unwrap(), None, "never said");
    s.write_speed("speed", &[write(true)], &[(0, 4)], Some(DAY0 + H - 1), &[]).unwrap();
    assert_eq!(s.speed_rows(hour).unwrap().len(), 1, "no exact answer yet");
    let w = s.speed_watermark().unwrap().unwrap();
    assert_eq!(w.watermark_ms, DAY0 + H - 1);
    assert!((topk_core::clock::now_ms() - w.updated_ms).abs() < 60_000, "{w:?}");
    // The batch layer's commit holds the bucket while the speed layer writes it again.
    let (holding, held) = std::sync::mpsc::channel();
    let mut batch = b.open();
    let commit = std::thread::spawn(move || {
        batch
            .transaction(|c| {
                crate::sql::lock_buckets(c, [hour])?;
                crate::top_lists::write(c, hour, "", &[sum("a", 5)], 10)?;
                holding.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(300));
                crate::speed::delete_bucket(c, hour)
            })
            .unwrap()
    });
    held.recv().unwrap();
    s.write_speed("speed", &[write(true)], &[(0, 5)], Some(DAY0 + H), &[]).unwrap();
    commit.join().unwrap();
    assert!(s.has_exact(hour).unwrap());
    assert!(s.speed_rows(hour).unwrap().is_empty(), "no estimates beside the exact answer");
    assert!(s.speed_sketches().unwrap().is_empty(), "nor sketches to resume them from");
    assert!(s.speed_buckets(Granularity::Hour, DAY0, DAY0 + H).unwrap().is_empty());
    assert_eq!(s.consumer_offsets("speed").unwrap(), [(0, 5)], "the offsets still move");
    assert_eq!(s.speed_watermark().unwrap().unwrap().watermark_ms, DAY0 + H);
    // A bucket the speed layer has not seen end (an exact answer that can only be stale)
    // takes its estimates.
    s.write_speed("speed", &[write(false)], &[(0, 6)], None, &[]).unwrap();
    assert_eq!(s.speed_rows(hour).unwrap().len(), 1);
    assert_eq!(s.speed_watermark().unwrap().unwrap().watermark_ms, DAY0 + H, "kept when none is said");
}

macro_rules! store_suite {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $( #[test] fn $test() { super::$test(&super::Sqlite(tempfile::tempdir().unwrap())) } )+
        }
        mod postgres {
            $( #[test] fn $test() { super::$test(&super::Postgres::new()) } )+
        }
    };
}

store_suite!(
    a_bucket_run_commits_rows_lists_totals_and_marks_and_top_lists_rank_it,
    a_bucket_run_records_its_tasks_score_and_pending_mark_with_its_rows,
    ties_and_searches_follow_byte_order,
    the_catalog_pages_in_byte_order_after_a_cursor,
    speed_writes_replace_rows_and_keep_sketches_until_finished,
    runs_are_recorded_failures_first_and_interrupted_ones_marked,
    accuracy_is_kept_per_bucket,
    a_failed_transaction_leaves_nothing_behind,
    upgrading_a_store_backfills_the_totals_of_exact_buckets,
    breakdowns_are_stored_and_read_apart_from_the_global_lists,
    concurrent_opens_migrate_once,
    large_writes_arrive_whole,
    the_exact_generation_moves_with_batch_runs_and_kappa_writes,
    a_breakdown_with_the_global_rows_is_marked_not_stored_twice_and_reads_the_same,
    an_ended_buckets_estimates_yield_to_an_exact_answer_committed_meanwhile,
);
