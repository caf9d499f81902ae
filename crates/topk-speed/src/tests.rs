use std::collections::{HashMap, HashSet};

use topk_core::breakdown::DimSet;
use topk_core::flush::AggRow;
use topk_core::partition::partition_of;
use topk_core::random::{Rng, Zipf};
use topk_core::time::Granularity;
use topk_store::{BatchStore, BucketRun, ServingStore, SqlStore};

use super::*;

const H: i64 = 3_600_000;
/// 2026-11-30T00:00:00Z, a Monday: the 7 days after it are one ISO week.
const MONDAY: i64 = 1_795_996_800_000;

fn row(p: &str, hour_ms: i64, count: i64) -> AggRow {
    AggRow {
        product_id: p.into(),
        hour_ms,
        count,
        revenue_cents: count * 100,
        earliest_ts_ms: hour_ms,
        latest_ts_ms: hour_ms,
        dims: Default::default(),
    }
}

fn batch(partition: u32, watermark_ms: i64, rows: Vec<AggRow>) -> FlushBatch {
    FlushBatch { partition, watermark_ms, rows, ..FlushBatch::default() }
}

fn store(dir: &tempfile::TempDir) -> SqlStore {
    SqlStore::open_sqlite(dir.path().join("store.db")).unwrap()
}

fn counts(rows: &[SpeedRow]) -> Vec<(String, i64)> {
    rows.iter().map(|r| (r.product_id.clone(), r.count)).collect()
}

#[test]
fn restart_resumes_from_saved_sketches_and_skips_absorbed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let day = Bucket::containing(Granularity::Day, MONDAY);
    let first = batch(0, MONDAY, vec![row("a", MONDAY, 5), row("b", MONDAY + H, 3), row("a", MONDAY + 2 * H, 1)]);
    let watermark = |speed: &mut Speed<SqlStore>| speed.store().speed_watermark().unwrap().map(|w| w.watermark_ms);
    let mut speed = Speed::open(store(&dir), 2, SpeedConfig::default()).unwrap();
    assert_eq!(watermark(&mut speed), Some(i64::MIN), "opened: its estimates cover nothing for sure yet");
    assert!(speed.absorb(0, &first).unwrap());
    speed.write(Instant::now()).unwrap();
    assert_eq!(watermark(&mut speed), Some(i64::MIN), "partition 1 has said nothing yet");
    let rows = speed.store().speed_rows(day).unwrap();
    assert_eq!(counts(&rows), [("a".to_string(), 6), ("b".to_string(), 3)], "hours of one day are summed");
    assert!(rows.iter().all(|r| r.error == 0), "few products: every count is exact");
    drop(speed);

    let mut speed = Speed::open(store(&dir), 2, SpeedConfig::default()).unwrap();
    assert_eq!(speed.next_offsets(), [1, 0]);
    assert!(!speed.absorb(0, &first).unwrap(), "an absorbed batch is skipped after a restart");
    assert!(speed.absorb(1, &batch(0, MONDAY, vec![row("b", MONDAY, 4)])).unwrap());
    assert!(speed.absorb(0, &batch(1, MONDAY + H, vec![])).unwrap());
    speed.write(Instant::now()).unwrap();
    assert_eq!(counts(&speed.store().speed_rows(day).unwrap()), [("b".to_string(), 7), ("a".to_string(), 6)]);
    assert_eq!(watermark(&mut speed), Some(MONDAY), "the least of the partitions' watermarks");
}

#[test]
fn buckets_end_with_a_last_write_and_leave_memory() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpeedConfig { final_delay: Duration::from_secs(60), ..SpeedConfig::default() };
    let mut speed = Speed::open(store(&dir), 1, cfg).unwrap();
    let hour = Bucket::containing(Granularity::Hour, MONDAY);
    speed.absorb(0, &batch(0, MONDAY, vec![row("a", MONDAY, 2)])).unwrap();
    let t0 = Instant::now();
    speed.write(t0).unwrap();
    // The watermark passes the hour's end: one minute later comes the last write.
    speed.absorb(1, &batch(0, MONDAY + H, vec![])).unwrap();
    speed.write(t0).unwrap();
    assert!(speed.open_buckets().contains(&hour));
    speed.write(t0 + Duration::from_secs(61)).unwrap();
    assert!(!speed.open_buckets().contains(&hour));
    assert_eq!(speed.store().speed_rows(hour).unwrap().len(), 1, "rows stay until the batch layer replaces them");
    assert!(speed.store().speed_sketches().unwrap().iter().all(|(b, _, _, _)| *b != hour), "its sketches are gone");
    // A late row for the ended hour is the batch layer's business.
    speed.absorb(2, &batch(0, MONDAY + H, vec![row("z", MONDAY, 9)])).unwrap();
    assert!(!speed.open_buckets().contains(&hour));
}

#[test]
fn exact_batch_rows_replace_the_speed_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut speed = Speed::open(store(&dir), 1, SpeedConfig::default()).unwrap();
    let hour = Bucket::containing(Granularity::Hour, MONDAY);
    speed.absorb(0, &batch(0, MONDAY, vec![row("a", MONDAY, 2)])).unwrap();
    speed.write(Instant::now()).unwrap();
    let sum = ProductSum { product_id: "a".into(), count: 2, revenue_cents: 200 };
    speed.store().commit_bucket(&BucketRun::rows(hour, &[(String::new(), vec![sum].into())], 10)).unwrap();
    speed.absorb(1, &batch(0, MONDAY, vec![row("a", MONDAY, 1)])).unwrap();
    speed.write(Instant::now()).unwrap();
    assert!(speed.store().speed_rows(hour).unwrap().is_empty());
    assert!(!speed.open_buckets().contains(&hour));
}

#[test]
fn kappa_counts_every_bucket_exactly_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpeedConfig { architecture: Architecture::Kappa, ..SpeedConfig::default() };
    let mut rng = Rng::new(3);
    // 20 flush batches per partition over 40 days, with refunds; and the truth they add up to.
    let mut logs: Vec<Vec<FlushBatch>> = vec![Vec::new(), Vec::new()];
    let mut truth: HashMap<Bucket, HashMap<String, i64>> = HashMap::new();
    for p in 0..2u32 {
        for _ in 0..20 {
            let rows: Vec<AggRow> = (0..50)
                .map(|_| {
                    let id = format!("p{}", rng.below(30) * 2 + u64::from(p));
                    let hour = MONDAY + rng.below(24 * 40) as i64 * H;
                    let count = rng.below(7) as i64 - 1;
                    for g in Granularity::ALL {
                        *truth.entry(Bucket::containing(g, hour)).or_default().entry(id.clone()).or_default() += count;
                    }
                    row(&id, hour, count)
                })
                .collect();
            logs[p as usize].push(batch(p, MONDAY, rows));
        }
    }
    let mut speed = Speed::open(store(&dir), 2, cfg.clone()).unwrap();
    let mut step = 0;
    while speed.next_offsets().iter().zip(&logs).any(|(&n, log)| (n as usize) < log.len()) {
        step += 1;
        let p = rng.below(2) as usize;
        let next = speed.next_offsets()[p] as usize;
        if let Some(b) = logs[p].get(next) {
            speed.absorb(next as u64, b).unwrap();
        }
        if step % 5 == 0 {
            speed.write(Instant::now()).unwrap();
        }
        if step % 11 == 0 {
            // A crash: whatever was absorbed since the last write is read again.
            drop(speed);
            speed = Speed::open(store(&dir), 2, cfg.clone()).unwrap();
        }
    }
    speed.write(Instant::now()).unwrap();
    let mut store = store(&dir);
    assert!(store.speed_sketches().unwrap().is_empty(), "kappa keeps no sketches");
    for (bucket, want) in truth {
        let mut want: Vec<(String, i64)> = want.into_iter().collect();
        want.sort();
        let got: Vec<(String, i64)> =
            store.bucket_rows(bucket).unwrap().into_iter().map(|r| (r.product_id, r.count)).collect();
        assert_eq!(got, want, "{bucket}");
        let top = store.top_list(bucket, topk_store::By::Quantity, 1).unwrap();
        assert_eq!(top[0].count, want.iter().map(|w| w.1).max().unwrap(), "{bucket}: top list regenerated");
    }
}

/// 1M products at Zipf `s`, a week of sales in small flushes (5 000 events per partition,
/// as a live aggregator's one-second flushes would be) through the speed role: the daily
/// and weekly lists must be right with at most 64 KiB per bucket.
fn precision_on_a_week_of_zipf(s: f64, events: u64) {
    let dir = tempfile::tempdir().unwrap();
    let partitions = 8u32;
    let products = 1_000_000u64;
    let mut speed = Speed::open(store(&dir), partitions, SpeedConfig::default()).unwrap();
    let zipf = Zipf::new(products, s);
    let ids: Vec<String> = (0..products).map(|i| format!("p{i:07}")).collect();
    let part: Vec<u32> = ids.iter().map(|id| partition_of(id.as_bytes(), partitions)).collect();
    let mut rng = Rng::new(11);
    let mut truth: HashMap<Bucket, HashMap<u32, i64>> = HashMap::new();
    let mut pending: Vec<HashMap<(u32, i64), i64>> = vec![HashMap::new(); partitions as usize];
    let mut offsets = vec![0u64; partitions as usize];
    let span = 7 * 24 * H;
    let flush = |speed: &mut Speed<SqlStore>, pending: &mut Vec<HashMap<(u32, i64), i64>>, offsets: &mut Vec<u64>| {
        for (p, sums) in pending.iter_mut().enumerate() {
            let rows = sums.drain().map(|((i, hour), c)| row(&ids[i as usize], hour, c)).collect();
            speed.absorb(offsets[p], &batch(p as u32, MONDAY, rows)).unwrap();
            offsets[p] += 1;
        }
    };
    for n in 0..events {
        let i = zipf.sample(&mut rng) as u32 - 1;
        let ts = MONDAY + (n as i64 * span) / events as i64;
        let hour = ts - ts % H;
        for g in [Granularity::Day, Granularity::Week] {
            *truth.entry(Bucket::containing(g, ts)).or_default().entry(i).or_default() += 1;
        }
        *pending[part[i as usize] as usize].entry((i, hour)).or_default() += 1;
        if (n + 1) % (5_000 * u64::from(partitions)) == 0 {
            flush(&mut speed, &mut pending, &mut offsets);
        }
    }
    flush(&mut speed, &mut pending, &mut offsets);
    speed.write(Instant::now()).unwrap();
    for (bucket, t) in truth {
        let memory = speed.bucket_memory(bucket, "").unwrap();
        assert!(memory <= 64 * 1024, "{bucket}: {memory} bytes of sketches");
        let mut exact: Vec<(String, i64)> = t.into_iter().map(|(i, c)| (ids[i as usize].clone(), c)).collect();
        exact.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let approx: Vec<(String, i64, i64)> =
            speed.store().speed_rows(bucket).unwrap().into_iter().map(|r| (r.product_id, r.count, r.error)).collect();
        assert_eq!(approx.len(), 1000, "{bucket}: top 1000 written");
        let a = score(&exact, &approx);
        assert_eq!(a.precision_at_10, 1.0, "{bucket} zipf {s}: {a:?}");
        assert!(a.precision_at_100 >= 0.99, "{bucket} zipf {s}: {a:?}");
        assert_eq!(a.bound_coverage, 1.0, "{bucket} zipf {s}: every true count inside its bound: {a:?}");
        // What the serving layer adds for a product off the list: it must hold too.
        let facts = speed.store().speed_buckets(bucket.granularity, bucket.start_ms, bucket.start_ms + 1).unwrap();
        assert_eq!(facts[0].total_count, exact.iter().map(|e| e.1).sum::<i64>(), "{bucket}: exact total");
        let listed: HashSet<&str> = approx.iter().map(|r| r.0.as_str()).collect();
        let unlisted_max = exact.iter().find(|e| !listed.contains(e.0.as_str())).map_or(0, |e| e.1);
        assert!(unlisted_max <= facts[0].unlisted_bound, "{bucket}: {unlisted_max} > {}", facts[0].unlisted_bound);
    }
}

#[test]
fn daily_and_weekly_top_lists_are_right_at_zipf_1_1_in_64_kib() {
    precision_on_a_week_of_zipf(1.1, 2_000_000);
}

#[test]
fn daily_and_weekly_top_lists_are_right_at_zipf_0_8_in_64_kib() {
    precision_on_a_week_of_zipf(0.8, 2_000_000);
}

/// Per country, on a day of 1M products over 50 countries each with its own popularity:
/// every country with at least 1 % of the volume has its exact top 10, every listed count
/// lies within its bound, and the breakdowns' sketches stay under their memory cap.
#[test]
fn each_country_with_a_percent_of_the_volume_has_its_exact_top_10_within_the_memory_cap() {
    let dir = tempfile::tempdir().unwrap();
    let day = simulate::Day {
        products: 1_000_000,
        countries: 50,
        events: 1_000_000,
        partitions: 4,
        flush_events: 5_000,
        start_ms: MONDAY,
        seed: 7,
    };
    let cap = 32 << 20;
    let cfg = SpeedConfig { breakdown_memory_bytes: cap, ..SpeedConfig::default() };
    let (scores, memory) = simulate::countries(store(&dir), &day, cfg).unwrap();
    assert_eq!(scores.len(), 50);
    let big: Vec<_> = scores.iter().filter(|s| s.share >= 0.01).collect();
    assert!(big.len() >= 20, "{} countries hold 1 % or more", big.len());
    for s in big {
        assert_eq!(s.accuracy.precision_at_10, 1.0, "{}: {s:?}", s.country);
    }
    for s in &scores {
        assert_eq!(s.accuracy.bound_coverage, 1.0, "{}: every listed count within its bound: {s:?}", s.country);
    }
    let (global, breakdowns) = memory;
    assert!(breakdowns <= cap, "{breakdowns} bytes of breakdown sketches, over the {cap} cap");
    assert!(global < breakdowns, "the global day's sketches: {global} bytes");
}

#[test]
fn past_the_memory_cap_new_values_count_under_other_for_the_rest_of_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let in_country = |p: &str, count, country: &str| AggRow {
        dims: [country.to_string(), String::new(), String::new()],
        ..row(p, MONDAY, count)
    };
    let country = DimSet::parse("country").unwrap();
    let breakdowns = Breakdowns { sets: vec![country], ..Breakdowns::default() };
    let cfg = SpeedConfig { breakdowns, ..SpeedConfig::default() };
    // Room for DE's five buckets (hour to year), not for FR's.
    let fresh = Speed::open(store(&dir), 1, cfg.clone()).unwrap().new_sketch().unwrap().full_memory_bytes(32);
    let capped = SpeedConfig { breakdown_memory_bytes: 5 * fresh, ..cfg.clone() };
    let mut speed = Speed::open(store(&dir), 1, capped).unwrap();
    speed.absorb(0, &batch(0, MONDAY, vec![in_country("a", 5, "DE"), in_country("b", 2, "FR")])).unwrap();
    // A later flush of a new value still counts under (other), as does FR.
    speed.absorb(1, &batch(0, MONDAY, vec![in_country("c", 1, "IT"), in_country("b", 1, "FR")])).unwrap();
    speed.write(Instant::now()).unwrap();
    let day = Bucket::containing(Granularity::Day, MONDAY);
    assert_eq!(speed.open_breakdowns(day), ["country=(other)", "country=DE"]);
    let rows = |speed: &mut Speed<SqlStore>, key: &str| {
        speed.store().set_breakdown(key);
        let rows = counts(&speed.store().speed_rows(day).unwrap());
        speed.store().set_breakdown("");
        rows
    };
    assert_eq!(rows(&mut speed, "country=DE"), [("a".to_string(), 5)]);
    assert_eq!(rows(&mut speed, "country=(other)"), [("b".to_string(), 3), ("c".to_string(), 1)]);
    drop(speed);
    // After a restart, with memory to spare, the bucket still refuses new values.
    let mut speed = Speed::open(store(&dir), 1, cfg).unwrap();
    speed.absorb(2, &batch(0, MONDAY, vec![in_country("d", 4, "ES")])).unwrap();
    speed.write(Instant::now()).unwrap();
    assert_eq!(rows(&mut speed, "country=(other)"), [("d".to_string(), 4), ("b".to_string(), 3), ("c".to_string(), 1)]);
    assert!(rows(&mut speed, "country=ES").is_empty());
}

#[test]
fn a_breakdowns_bucket_that_ended_before_it_opened_is_left_to_the_batch_layer() {
    let dir = tempfile::tempdir().unwrap();
    let breakdowns = Breakdowns { sets: vec![DimSet::parse("country").unwrap()], ..Breakdowns::default() };
    let mut speed = Speed::open(store(&dir), 2, SpeedConfig { breakdowns, ..SpeedConfig::default() }).unwrap();
    let de = AggRow { dims: ["DE".to_string(), String::new(), String::new()], ..row("a", MONDAY, 3) };
    // Partition 0 is past the hour; partition 1 has said nothing yet, so the hour is open.
    speed.absorb(0, &batch(0, MONDAY + 2 * H, vec![de])).unwrap();
    let (hour, day) = (Bucket::containing(Granularity::Hour, MONDAY), Bucket::containing(Granularity::Day, MONDAY));
    assert_eq!(speed.open_buckets()[..2], [hour, day], "the global lists keep the hour");
    assert!(speed.open_breakdowns(hour).is_empty(), "its breakdowns wait for the batch layer");
    assert_eq!(speed.open_breakdowns(day), ["country=DE"]);
}
