//! The batch layer over a temporary SQLite store and archive directory: the dependency
//! checks, the DAG finest first, late data re-running exactly what it touches, retention
//! re-rolling whole days, and the backoff of a failing bucket.

use std::path::PathBuf;

use topk_archive::Archive;
use topk_core::breakdown::DimSet;
use topk_core::flush::{AggRow, FlushBatch};
use topk_core::HOUR_MS;
use topk_store::{By, Rows, ServingStore, SpeedRow, SpeedStore, SpeedWrite, SqlStore};

use super::*;

/// Monday 2021-03-01, the first day of ISO week 2021-W09 and of March.
const T0: i64 = 1_614_556_800_000;
/// 2022-01-01: a watermark past the whole year 2021.
const YEAR_END: i64 = 1_640_995_200_000;

fn hour(h: i64) -> Bucket {
    Bucket::containing(Granularity::Hour, T0 + h * HOUR_MS)
}

fn day() -> Bucket {
    Bucket::containing(Granularity::Day, T0)
}

/// The day's ancestors, finest first.
fn above_day() -> Vec<Bucket> {
    [Granularity::Week, Granularity::Month, Granularity::Year].map(|g| Bucket::containing(g, T0)).to_vec()
}

fn row(product: &str, h: i64, count: i64) -> AggRow {
    let hour_ms = T0 + h * HOUR_MS;
    AggRow {
        product_id: product.into(),
        hour_ms,
        count,
        revenue_cents: count * 100,
        earliest_ts_ms: hour_ms,
        latest_ts_ms: hour_ms,
        dims: Default::default(),
    }
}

/// A store, an archive that the test fills as the archive role would, and the batch
/// layer over both.
struct Fixture {
    _dir: tempfile::TempDir,
    archive_dir: PathBuf,
    archive: Archive,
    next_offset: u64,
    batch: Batch<SqlStore>,
}

impl Fixture {
    fn new(cfg: BatchConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let archive_dir = dir.path().join("archive");
        let archive = Archive::open(Root::Dir(archive_dir.clone()), 1).unwrap();
        let store = SqlStore::open_sqlite(dir.path().join("store.db")).unwrap();
        let batch = Batch::new(store, Root::Dir(archive_dir.clone()), cfg);
        Fixture { _dir: dir, archive_dir, archive, next_offset: 0, batch }
    }

    /// Archives one flush batch of `rows` with the partition's watermark at `watermark_ms`.
    fn archive(&mut self, rows: Vec<AggRow>, watermark_ms: i64) {
        let mut rows = rows;
        rows.sort_by_key(|r| r.hour_ms);
        let offset = self.next_offset;
        let batch = FlushBatch {
            partition: 0,
            first_offset: offset * 10,
            end_offset: offset * 10 + 10,
            watermark_ms,
            rows,
            ..FlushBatch::default()
        };
        self.archive.apply(offset, &batch).unwrap();
        self.archive.save().unwrap();
        self.next_offset += 1;
    }

    fn top(&mut self, bucket: Bucket) -> Vec<(String, i64)> {
        let top = self.batch.store().top_list(bucket, By::Quantity, 10).unwrap();
        top.into_iter().map(|r| (r.product_id, r.count)).collect()
    }
}

fn no_retention() -> BatchConfig {
    BatchConfig { hour_retention: None, ..BatchConfig::default() }
}

fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|&(p, n)| (p.to_string(), n)).collect()
}

#[test]
fn a_bucket_waits_until_it_ended_its_hours_are_complete_and_its_inputs_are_done() {
    let mut f = Fixture::new(no_retention());
    f.archive(vec![row("a", 0, 1)], T0 + 3 * HOUR_MS);
    let state = ArchiveState::load(f.archive.root()).unwrap();
    assert_eq!(f.batch.check(&state, &[], hour(0)), Ok(()));
    assert_eq!(f.batch.check(&state, &[], hour(2)), Ok(()), "no data, but the watermark passed it");
    let err = f.batch.check(&state, &[], hour(3)).unwrap_err();
    assert!(err.contains("not every hour of it is complete yet"), "{err}");
    assert!(f.batch.check(&state, &[], day()).unwrap_err().contains("not every hour"));
    let open = Bucket::containing(Granularity::Hour, now_ms());
    let err = f.batch.check(&state, &[], open).unwrap_err();
    assert!(err.contains("it has not ended yet"), "{err}");

    f.archive(vec![], YEAR_END);
    let state = ArchiveState::load(f.archive.root()).unwrap();
    assert_eq!(f.batch.check(&state, &[], day()), Ok(()));
    let err = f.batch.check(&state, &[hour(5)], day()).unwrap_err();
    assert_eq!(err, "its input 2021-03-01T05 is still pending");
    let next_day = Bucket::containing(Granularity::Hour, T0 + 24 * HOUR_MS);
    assert_eq!(f.batch.check(&state, &[next_day], day()), Ok(()), "another day's hour is not an input");
    let [week, month, _] = above_day().try_into().unwrap();
    assert!(f.batch.check(&state, &[day()], month).is_err(), "months are summed from days");
    assert_eq!(f.batch.check(&state, &[week], month), Ok(()), "and not from ISO weeks");
}

#[test]
fn hours_roll_up_finest_first_and_the_speed_rows_are_scored_then_replaced() {
    let mut f = Fixture::new(no_retention());
    f.archive(vec![row("a", 0, 3), row("b", 0, 2), row("a", 5, 4)], YEAR_END);
    let speed =
        |p: &str, count, error| SpeedRow { product_id: p.into(), count, error, revenue_cents: 0, updated_ms: T0 };
    let write = SpeedWrite {
        breakdown: String::new(),
        bucket: day(),
        rows: vec![speed("a", 6, 2), speed("b", 2, 0)],
        sketches: vec![],
        finished: false,
        ended: false,
        unlisted_bound: 0,
        total_count: 9,
    };
    f.batch.store().write_speed("speed", &[write], &[], None, &[]).unwrap();

    let report = f.batch.run_pending().unwrap();
    let mut expected = vec![hour(0), hour(5), day()];
    expected.extend(above_day());
    assert_eq!(report, PassReport { ran: expected.clone(), failed: vec![], waiting: 0 });
    for b in &expected[2..] {
        assert_eq!(f.top(*b), pairs(&[("a", 7), ("b", 2)]), "{b}");
    }
    assert_eq!(f.top(hour(5)), pairs(&[("a", 4)]));
    // Every bucket ran its four tasks, each recorded.
    let runs = f.batch.store().runs(100).unwrap();
    assert_eq!(runs.len(), expected.len() * TASKS.len());
    assert!(runs.iter().all(|r| r.status == RunStatus::Success), "{runs:?}");
    // The day's estimates were scored (7 lies within 6 ± 2) and then deleted.
    let scored = f.batch.store().accuracy(10).unwrap();
    assert_eq!(scored.len(), 1);
    assert_eq!(
        (scored[0].bucket, scored[0].accuracy.precision_at_10, scored[0].accuracy.bound_coverage),
        (day(), 1.0, 1.0)
    );
    assert!(f.batch.store().speed_rows(day()).unwrap().is_empty());

    // Nothing changed: nothing runs again, and a range asks only for what is not done.
    assert_eq!(f.batch.run_pending().unwrap(), PassReport::default());
    assert!(f.batch.run_range(Granularity::Day, T0, T0 + 1, false).unwrap().is_empty());
    let forced = f.batch.run_range(Granularity::Day, T0, T0 + 1, true).unwrap();
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0].0, day());
    assert_eq!(forced[0].1.as_ref().unwrap(), &2, "two products in the day");
}

/// The speed layer writes `bucket`'s estimates (a 3, b 2: exact for hour 0) with its
/// watermark at `watermark_ms`.
fn estimates(f: &mut Fixture, bucket: Bucket, watermark_ms: i64) {
    let row = |p: &str, count| SpeedRow { product_id: p.into(), count, error: 0, revenue_cents: 0, updated_ms: T0 };
    let write = SpeedWrite {
        breakdown: String::new(),
        bucket,
        rows: vec![row("a", 3), row("b", 2)],
        sketches: vec![],
        finished: false,
        ended: false,
        unlisted_bound: 0,
        total_count: 5,
    };
    f.batch.store().write_speed("speed", &[write], &[], Some(watermark_ms), &[]).unwrap();
}

#[test]
fn estimates_are_scored_once_the_speed_layer_covers_their_bucket_and_waited_for_a_bounded_time() {
    let wait = Duration::from_millis(400);
    let mut f = Fixture::new(BatchConfig { score_wait: wait, ..no_retention() });
    let scored = |f: &mut Fixture| -> Vec<Bucket> {
        f.batch.store().accuracy(10).unwrap().into_iter().map(|r| r.bucket).collect()
    };
    f.archive(vec![row("a", 0, 3), row("b", 0, 2)], T0 + HOUR_MS);
    // The speed layer's estimates reach only half way into the hour: it waits for them.
    estimates(&mut f, hour(0), T0 + HOUR_MS / 2);
    let report = f.batch.run_pending().unwrap();
    assert_eq!((report.ran.len(), report.waiting), (0, 1), "{report:?}");
    // They cover the hour: scored, then replaced.
    estimates(&mut f, hour(0), T0 + HOUR_MS);
    assert_eq!(f.batch.run_pending().unwrap().ran, [hour(0)]);
    assert_eq!(scored(&mut f), [hour(0)]);
    assert_eq!(f.batch.store().accuracy(10).unwrap()[0].accuracy.precision_at_10, 1.0);

    // A speed layer that keeps writing but stays behind is waited for `score_wait`, no
    // longer; its estimates are then replaced unscored.
    f.archive(vec![row("a", 1, 5)], T0 + 2 * HOUR_MS);
    let started = Instant::now();
    loop {
        estimates(&mut f, hour(1), T0 + HOUR_MS + 1);
        let ran = f.batch.run_pending().unwrap().ran;
        if !ran.is_empty() {
            assert_eq!(ran, [hour(1)]);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "it waits no longer than score_wait");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.elapsed() >= wait, "{:?}", started.elapsed());
    assert_eq!(scored(&mut f), [hour(0)], "estimates behind the bucket are not scored");
    assert!(f.batch.store().speed_rows(hour(1)).unwrap().is_empty());

    // One that stopped writing is not waited for.
    f.archive(vec![row("a", 2, 1)], T0 + 3 * HOUR_MS);
    estimates(&mut f, hour(2), T0 + 2 * HOUR_MS + 1);
    f.batch.store().execute("UPDATE speed_watermark SET updated_at = 0", &[]).unwrap();
    assert_eq!(f.batch.run_pending().unwrap().ran, [hour(2)]);
    assert_eq!(scored(&mut f), [hour(0)]);
    assert!(f.batch.store().speed_rows(hour(2)).unwrap().is_empty());
}

#[test]
fn late_data_and_refunds_re_run_exactly_the_buckets_they_touch() {
    let mut f = Fixture::new(no_retention());
    f.archive(vec![row("a", 0, 3), row("b", 0, 2), row("a", 5, 4)], YEAR_END);
    assert_eq!(f.batch.run_pending().unwrap().ran.len(), 6);

    f.archive(vec![row("b", 5, 6), row("a", 5, -2)], YEAR_END);
    let report = f.batch.run_pending().unwrap();
    let mut expected = vec![hour(5), day()];
    expected.extend(above_day());
    assert_eq!(report.ran, expected, "hour 0 did not change");
    assert_eq!(f.top(day()), pairs(&[("b", 8), ("a", 5)]));
    assert_eq!(f.top(hour(5)), pairs(&[("b", 6), ("a", 2)]));
    assert_eq!(f.top(hour(0)), pairs(&[("a", 3), ("b", 2)]));
}

#[test]
fn past_retention_a_late_hour_re_rolls_its_day_from_the_archive() {
    let mut f =
        Fixture::new(BatchConfig { hour_retention: Some(Duration::from_secs(86_400)), ..BatchConfig::default() });
    f.archive(vec![row("a", 0, 3), row("b", 0, 2), row("a", 5, 4)], YEAR_END);
    f.batch.run_pending().unwrap();
    // The hours are past retention: their rows are not kept, the day's are.
    assert!(f.batch.store().bucket_rows(hour(0)).unwrap().is_empty());
    assert!(f.batch.store().top_list(hour(0), By::Quantity, 10).unwrap().is_empty());
    assert_eq!(f.top(day()), pairs(&[("a", 7), ("b", 2)]));

    // A late sale of hour 5, in a later pass: the store has no rows of hour 0, so the day
    // reads its other hours from the archive.
    f.archive(vec![row("b", 5, 1)], YEAR_END);
    let report = f.batch.run_pending().unwrap();
    let mut expected = vec![hour(5), day()];
    expected.extend(above_day());
    assert_eq!(report.ran, expected);
    assert_eq!(f.top(day()), pairs(&[("a", 7), ("b", 3)]));
    assert_eq!(f.top(Bucket::containing(Granularity::Year, T0)), pairs(&[("a", 7), ("b", 3)]));
    assert!(f.batch.store().bucket_rows(hour(5)).unwrap().is_empty(), "deleted again after the pass");
}

#[test]
fn a_day_sums_its_hours_in_memory_in_one_pass_and_from_the_store_in_a_later_one() {
    let mut f = Fixture::new(no_retention());
    // Hour 24 is the next day's first: it must not leak into the day.
    f.archive(vec![row("a", 0, 5), row("b", 0, 1), row("b", 23, 7), row("c", 23, 2), row("a", 24, 100)], YEAR_END);
    let report = f.batch.run_pending().unwrap();
    let next_day = Bucket::containing(Granularity::Day, T0 + 24 * HOUR_MS);
    let order: Vec<Bucket> = report.ran.iter().copied().filter(|b| b.granularity <= Granularity::Day).collect();
    assert_eq!(order, [hour(0), hour(23), day(), hour(24), next_day], "each day right after its last hour");
    let day_rows = [("a", 5), ("b", 8), ("c", 2)]
        .map(|(p, n)| ProductSum { product_id: p.into(), count: n, revenue_cents: n * 100 })
        .to_vec();
    assert_eq!(f.batch.store().bucket_rows(day()).unwrap(), day_rows);
    let totals = f.batch.store().exact_buckets(Granularity::Day, T0, T0 + 1).unwrap();
    assert_eq!((totals[0].count, totals[0].products, totals[0].min_count), (15, 3, Some(2)));
    let week = Bucket::containing(Granularity::Week, T0);
    assert_eq!(f.top(week), pairs(&[("a", 105), ("b", 8), ("c", 2)]));

    // A late sale of hour 23 in a later pass: the day reads hour 0 back from the store.
    f.archive(vec![row("c", 23, 9)], YEAR_END);
    let report = f.batch.run_pending().unwrap();
    assert_eq!(report.ran[..2], [hour(23), day()]);
    assert_eq!(f.top(day()), pairs(&[("c", 11), ("b", 8), ("a", 5)]));
    assert_eq!(f.top(week), pairs(&[("a", 105), ("c", 11), ("b", 8)]));
    // Re-running replaces rather than adds.
    f.batch.run_range(Granularity::Day, T0, T0 + 1, true).unwrap();
    assert_eq!(f.top(day()), pairs(&[("c", 11), ("b", 8), ("a", 5)]));
}

#[test]
fn a_failing_bucket_is_retried_after_a_backoff_and_waits_for_nothing_else() {
    let mut f = Fixture::new(BatchConfig { max_backoff: Duration::from_millis(300), ..no_retention() });
    f.archive(vec![row("a", 0, 3), row("b", 1, 1)], YEAR_END);
    let file = topk_archive::hour_files(f.archive.root(), T0).unwrap().pop().unwrap();
    let path = f.archive_dir.join(&file);
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"not parquet").unwrap();

    let report = f.batch.run_pending().unwrap();
    assert_eq!(report.ran, [hour(1)], "the other hour runs");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, hour(0));
    assert!(report.failed[0].1.contains("task rollup of 2021-03-01T00 failed"), "{}", report.failed[0].1);
    assert_eq!(report.waiting, 5, "the failed hour, and the day, week, month and year that wait for it");
    let failed = &f.batch.store().runs(1).unwrap()[0];
    assert_eq!((failed.status, failed.task.as_str()), (RunStatus::Failed, "rollup"));

    // Within the backoff the bucket is left alone.
    let report = f.batch.run_pending().unwrap();
    assert_eq!((report.ran.len(), report.failed.len(), report.waiting), (0, 0, 5));
    let attempts = f.batch.store().runs(100).unwrap().iter().filter(|r| r.bucket == hour(0)).count();
    assert_eq!(attempts, 2, "check and rollup, once");

    std::fs::write(&path, good).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let report = f.batch.run_pending().unwrap();
    let mut expected = vec![hour(0), day()];
    expected.extend(above_day());
    assert_eq!(report.ran, expected);
    assert_eq!(f.top(hour(0)), pairs(&[("a", 3)]));
    assert_eq!(f.top(day()), pairs(&[("a", 3), ("b", 1)]));
}

fn sold_in(product: &str, h: i64, count: i64, country: &str, category: &str) -> AggRow {
    AggRow { dims: [country.into(), String::new(), category.into()], ..row(product, h, count) }
}

/// The rows of one breakdown of a bucket, as (product, count).
fn slice(f: &mut Fixture, bucket: Bucket, breakdown: &str) -> Vec<(String, i64)> {
    let store = f.batch.store();
    store.set_breakdown(breakdown);
    let rows = store.bucket_rows(bucket).unwrap();
    store.set_breakdown("");
    rows.into_iter().map(|r| (r.product_id, r.count)).collect()
}

#[test]
fn breakdowns_are_summed_per_value_up_the_dag_and_values_past_the_cap_count_under_other() {
    let country = DimSet::parse("country").unwrap();
    let both = DimSet::parse("country,category").unwrap();
    let breakdowns = Breakdowns { sets: vec![country, both], max_values: 2 };
    let mut f = Fixture::new(BatchConfig { breakdowns, ..no_retention() });
    // DE and FR are the first two countries (hour 0); IT comes later and counts under (other).
    f.archive(
        vec![
            sold_in("a", 0, 5, "DE", "toys"),
            sold_in("b", 0, 2, "FR", "toys"),
            sold_in("a", 0, 1, "", "toys"),
            sold_in("a", 3, 4, "IT", "toys"),
            sold_in("b", 3, 3, "DE", "books"),
            sold_in("b", 3, -1, "DE", "books"),
        ],
        YEAR_END,
    );
    f.batch.run_pending().unwrap();
    for bucket in [hour(0), day(), Bucket::containing(Granularity::Year, T0)] {
        let g = bucket.granularity;
        let want_de = if g == Granularity::Hour { pairs(&[("a", 5)]) } else { pairs(&[("a", 5), ("b", 2)]) };
        assert_eq!(slice(&mut f, bucket, "country=DE"), want_de, "{bucket}");
        assert_eq!(slice(&mut f, bucket, "country=FR"), pairs(&[("b", 2)]), "{bucket}");
        assert_eq!(slice(&mut f, bucket, "country=(none)"), pairs(&[("a", 1)]), "{bucket}");
    }
    assert_eq!(slice(&mut f, day(), "country=(other)"), pairs(&[("a", 4)]), "IT came after the cap");
    assert_eq!(slice(&mut f, day(), "country=IT"), pairs(&[]));
    assert_eq!(slice(&mut f, day(), "country,category=DE|books"), pairs(&[]), "the set's two values were taken");
    assert_eq!(slice(&mut f, day(), "country,category=DE|toys"), pairs(&[("a", 5)]));
    // (none)|toys is a value of its own here, and came third.
    assert_eq!(slice(&mut f, day(), "country,category=(other)"), pairs(&[("a", 5), ("b", 2)]));
    // Every breakdown set partitions the global counts.
    assert_eq!(f.top(day()), pairs(&[("a", 10), ("b", 4)]));
    for prefix in ["country=", "country,category="] {
        let values = f.batch.store().breakdown_values(day(), prefix).unwrap();
        assert_eq!(values.iter().map(|v| v.1).sum::<i64>(), 14, "{prefix}");
    }

    // Another set of breakdowns: every hour, and what is above, runs again from the archive.
    let category = DimSet::parse("category").unwrap();
    f.batch.cfg.breakdowns = Breakdowns { sets: vec![category], max_values: 2 };
    f.batch.admission = None;
    let report = f.batch.run_pending().unwrap();
    assert!(report.ran.contains(&hour(0)) && report.ran.contains(&day()), "{report:?}");
    assert_eq!(slice(&mut f, day(), "category=books"), pairs(&[("b", 2)]));
    assert_eq!(slice(&mut f, day(), "category=toys"), pairs(&[("a", 10), ("b", 2)]));
    assert_eq!(slice(&mut f, day(), "country=DE"), pairs(&[]), "a dropped set's rows are gone");
    assert!(f.batch.run_pending().unwrap().ran.is_empty(), "and then nothing is left to do");
}

#[test]
fn an_hour_of_many_files_sums_to_a_naive_sum_of_its_rows_per_value_with_the_biggest_values_admitted() {
    let country = DimSet::parse("country").unwrap();
    let both = DimSet::parse("country,category").unwrap();
    let breakdowns = Breakdowns { sets: vec![country, both], max_values: 3 };
    let mut f = Fixture::new(BatchConfig { breakdowns: breakdowns.clone(), ..no_retention() });
    let (countries, categories) = (["DE", "FR", "IT", "ES", "", "P|L"], ["toys", "books", ""]);
    // Rows as flushes write them: the same product and value again in later files,
    // refunds among them.
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut all = Vec::new();
    for file in 0..12 {
        let rows: Vec<AggRow> = (0..80)
            .map(|_| {
                let count = next(9) as i64 - 2;
                sold_in(
                    &format!("p{:02}", next(40)),
                    0,
                    count,
                    countries[next(countries.len() as u64) as usize],
                    categories[next(categories.len() as u64) as usize],
                )
            })
            .collect();
        all.extend(rows.clone());
        f.archive(rows, if file == 11 { YEAR_END } else { T0 });
    }
    f.batch.run_pending().unwrap();

    // The model: every row summed per key and product; per set, values ordered by the
    // sum of their rows' absolute counts, the first three admitted, the rest (other).
    let mut want: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for r in &all {
        *want.entry(String::new()).or_default().entry(r.product_id.clone()).or_default() += r.count;
    }
    for set in &breakdowns.sets {
        let mut volume: BTreeMap<String, i64> = BTreeMap::new();
        for r in &all {
            *volume.entry(set.value_of(&r.dims)).or_default() += r.count.abs();
        }
        let mut order: Vec<(String, i64)> = volume.into_iter().collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let admitted: Vec<&String> =
            order.iter().filter(|(v, _)| !v.split('|').all(|p| p == NONE)).map(|(v, _)| v).take(3).collect();
        for r in &all {
            let value = set.value_of(&r.dims);
            let none = value.split('|').all(|p| p == NONE);
            let key = set.key(if none || admitted.contains(&&value) { &value } else { OTHER });
            *want.entry(key).or_default().entry(r.product_id.clone()).or_default() += r.count;
        }
    }
    assert!(want.len() > 8, "the data has values past the cap: {:?}", want.keys());
    for (key, sums) in &want {
        let got = slice(&mut f, hour(0), key);
        let sums: Vec<(String, i64)> = sums.iter().map(|(p, &n)| (p.clone(), n)).collect();
        assert_eq!(got, sums, "{key}");
    }
}

/// An hour is summed while the one before it commits. When that commit fails, the hour
/// summed meanwhile counted values the failed run had admitted (but not recorded): it is
/// summed again, with the admitted values as stored.
#[test]
fn an_hour_summed_while_a_failing_commit_ran_is_summed_again() {
    let breakdowns = Breakdowns { sets: vec![DimSet::parse("country").unwrap()], max_values: 1 };
    let mut f = Fixture::new(BatchConfig { breakdowns, max_backoff: Duration::from_millis(300), ..no_retention() });
    f.archive(vec![sold_in("a", 0, 5, "DE", ""), sold_in("b", 1, 2, "FR", "")], YEAR_END);
    let fail_hour_0 = format!(
        "CREATE TRIGGER fail_hour_0 BEFORE INSERT ON batch_table WHEN NEW.bucket_start = {}
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        hour(0).start_ms
    );
    f.batch.store().execute(&fail_hour_0, &[]).unwrap();

    let report = f.batch.run_pending().unwrap();
    assert_eq!(report.failed.iter().map(|(b, _)| *b).collect::<Vec<_>>(), [hour(0)], "{report:?}");
    assert!(report.failed[0].1.contains("injected failure"), "{}", report.failed[0].1);
    assert_eq!(report.ran, [hour(1)]);
    // Hour 0 admitted DE (the cap is one value) and failed: FR is the set's one value.
    assert_eq!(f.batch.store().admitted_values().unwrap(), [("country".to_string(), "FR".to_string())]);
    assert_eq!(slice(&mut f, hour(1), "country=FR"), pairs(&[("b", 2)]));
    assert_eq!(slice(&mut f, hour(1), "country=(other)"), pairs(&[]));

    f.batch.store().execute("DROP TRIGGER fail_hour_0", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let report = f.batch.run_pending().unwrap();
    assert!(report.failed.is_empty() && report.ran.contains(&day()), "{report:?}");
    assert_eq!(slice(&mut f, hour(0), "country=(other)"), pairs(&[("a", 5)]), "DE came after the cap");
    assert_eq!(slice(&mut f, day(), "country=FR"), pairs(&[("b", 2)]));
    assert_eq!(slice(&mut f, day(), "country=DE"), pairs(&[]));
}

/// A bucket's partial sums against a naive sum of its children's slices, for children
/// whose `category=(none)` is, is not, or stops being the global rows, in every order.
#[test]
fn partial_sums_equal_a_naive_sum_whether_a_breakdown_is_the_global_rows_or_not() {
    let sums = |rows: &[(&str, i64)]| -> Rows {
        let rows: Vec<ProductSum> =
            rows.iter().map(|&(p, c)| ProductSum { product_id: p.into(), count: c, revenue_cents: 10 * c }).collect();
        Rows::new(rows)
    };
    let none = "category=(none)";
    let children: Vec<Vec<Slice>> = vec![
        // (none) is the global rows.
        vec![
            ("".into(), sums(&[("a", 1), ("b", 2)])),
            ("country=DE".into(), sums(&[("a", 1)])),
            (none.into(), sums(&[("a", 1), ("b", 2)])),
        ],
        vec![("".into(), sums(&[("a", 3)])), (none.into(), sums(&[("a", 3)]))],
        // (none) differs: a product with a category.
        vec![("".into(), sums(&[("b", 1), ("c", 1)])), (none.into(), sums(&[("b", 1)]))],
        // No (none) at all: every product had a category.
        vec![("".into(), sums(&[("d", 5)])), ("category=toys".into(), sums(&[("d", 5)]))],
    ];
    let naive = |children: &[&Vec<Slice>]| -> Vec<Slice> {
        let mut out: BTreeMap<String, BTreeMap<String, (i64, i64)>> = BTreeMap::new();
        out.entry(String::new()).or_default();
        for child in children {
            for (b, rows) in child.iter() {
                for r in rows.iter() {
                    let e = out.entry(b.clone()).or_default().entry(r.product_id.clone()).or_default();
                    e.0 += r.count;
                    e.1 += r.revenue_cents;
                }
            }
        }
        let rows = |m: BTreeMap<String, (i64, i64)>| {
            Rows::new(
                m.into_iter().map(|(p, (c, r))| ProductSum { product_id: p, count: c, revenue_cents: r }).collect(),
            )
        };
        out.into_iter().map(|(b, m)| (b, rows(m))).collect()
    };
    // Every order of every non-empty subset's prefix: the children in each permutation.
    let orders = [[0, 1, 2, 3], [2, 0, 1, 3], [3, 1, 0, 2], [1, 3, 2, 0], [0, 1, 3, 2]];
    for order in orders {
        for n in 1..=order.len() {
            let picked: Vec<&Vec<Slice>> = order[..n].iter().map(|&i| &children[i]).collect();
            let mut partial = Partial::default();
            for child in &picked {
                partial.add(child);
            }
            assert_eq!(partial.into_slices(), naive(&picked), "children {:?}", &order[..n]);
        }
    }
}
