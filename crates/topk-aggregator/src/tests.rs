use super::*;
use std::collections::BTreeMap;
use topk_core::breakdown::{DimSet, Dimension};
use topk_core::codec::encode;
use topk_core::event::{Event, Kind};
use topk_core::Shutdown;
use topk_log::{DiskLog, LogConfig};

const H: i64 = 3_600_000;
const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % H;

fn logs(dir: &std::path::Path) -> (DiskLog, DiskLog) {
    let cfg = LogConfig { partitions: 1, ..LogConfig::default() };
    (DiskLog::open(dir.join("events"), cfg.clone()).unwrap(), DiskLog::open(dir.join("flush"), cfg).unwrap())
}

fn ev(id: &str, ts: i64, product: &str, qty: i64) -> Event<'static> {
    Event {
        event_id: id.to_string().into(),
        ts_ms: ts,
        product_id: product.to_string().into(),
        quantity: qty,
        kind: if qty < 0 { Kind::Refund } else { Kind::Sale },
        sale_ts_ms: None,
        price_cents: Some(100),
        country: None,
        city: None,
        category: None,
        product_name: Some("Name".into()),
    }
}

fn append(log: &dyn Log, events: &[Event<'_>]) {
    let mut buf = Vec::new();
    for e in events {
        encode(e, &mut buf);
    }
    log.append(0, events.len() as u32, &buf, SourcePos::default()).unwrap();
}

/// Without breakdowns: one row per (product, hour).
fn cfg() -> AggregatorConfig {
    AggregatorConfig {
        idle_timeout: None,
        flush_interval: Duration::from_secs(3600),
        dims: DimSet::EMPTY,
        ..AggregatorConfig::default()
    }
}

/// Consumes everything available without running the loop.
fn catch_up(agg: &mut PartitionAggregator, events: &dyn Log) {
    let mut r = events.reader(0, agg.position()).unwrap();
    while let Some(b) = r.next_batch().unwrap() {
        agg.consume(&b, true, u64::MAX).unwrap();
    }
}

/// All flushed rows, summed per (product, hour).
fn flushed_sums(flush_log: &dyn Log) -> BTreeMap<(String, i64), (i64, i64)> {
    let mut sums = BTreeMap::new();
    let mut r = flush_log.reader(0, 0).unwrap();
    while let Some(b) = r.next_batch().unwrap() {
        for row in FlushBatch::read(b.base_offset, &b.payload).unwrap().into_iter().flat_map(|f| f.rows) {
            let e = sums.entry((row.product_id, row.hour_ms)).or_insert((0, 0));
            e.0 += row.count;
            e.1 += row.revenue_cents;
        }
    }
    sums
}

#[test]
fn sums_per_product_and_hour_with_refund_in_sale_hour() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    let mut refund = ev("r1", T0 + H + 10, "a", -1);
    refund.sale_ts_ms = Some(T0 + 5);
    append(&events, &[ev("1", T0 + 5, "a", 2), ev("2", T0 + H + 1, "a", 1), ev("3", T0 + 7, "b", 1), refund]);
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
    catch_up(&mut agg, &events);
    let batch = agg.take_flush(false);
    assert_eq!((batch.first_offset, batch.end_offset, batch.accepted), (0, 4, 4));
    let rows: Vec<_> =
        batch.rows.iter().map(|r| (r.product_id.as_str(), r.hour_ms - T0, r.count, r.revenue_cents)).collect();
    assert_eq!(rows, [("a", 0, 1, 100), ("b", 0, 1, 100), ("a", H, 1, 100)]);
    assert_eq!(batch.rows[0].earliest_ts_ms, T0 + 5);
    assert_eq!(batch.watermark_ms, T0 + H + 10 - 5 * 60_000);
    let info = |id: &str| ProductInfo { product_id: id.into(), name: Some("Name".into()), category: None };
    assert_eq!(batch.products, [info("a"), info("b")]);
}

#[test]
fn rows_are_kept_apart_by_the_dimensions_breakdowns_use_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    let at = |id: &str, country: Option<&'static str>, city: Option<&'static str>, qty| {
        let mut e = ev(id, T0 + 1, "a", qty);
        e.country = country.map(Into::into);
        e.city = city.map(Into::into);
        e.category = Some("toys".into());
        e
    };
    append(
        &events,
        &[at("1", Some("DE"), Some("Berlin"), 1), at("2", Some("DE"), Some("Hamburg"), 2), at("3", None, None, 4)],
    );
    let dims = DimSet::of(&[Dimension::Country]);
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, AggregatorConfig { dims, ..cfg() }).unwrap();
    catch_up(&mut agg, &events);
    let rows: Vec<_> = agg.take_flush(false).rows.into_iter().map(|r| (r.dims, r.count)).collect();
    let kept = |country: &str| [country.to_string(), String::new(), String::new()];
    assert_eq!(rows, [(kept(""), 4), (kept("DE"), 3)], "one row per country; city and category are not kept");
}

#[test]
fn a_flush_carries_each_products_newest_name_and_category() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    let mut renamed = ev("2", T0 + 2, "a", 1);
    renamed.product_name = Some("New".into());
    renamed.category = Some("toys".into());
    let mut nameless = ev("3", T0 + 3, "c", 1);
    nameless.product_name = None;
    append(&events, &[ev("1", T0 + 1, "a", 1), renamed, nameless]);
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
    catch_up(&mut agg, &events);
    let batch = agg.take_flush(false);
    let new = ProductInfo { product_id: "a".into(), name: Some("New".into()), category: Some("toys".into()) };
    assert_eq!(batch.products, [new], "the newest name wins; a product without one is only in the rows");
    assert_eq!(batch.rows.iter().map(|r| r.product_id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
    assert!(agg.take_flush(false).products.is_empty(), "each flush carries what its events said");
}

#[test]
fn duplicates_inside_the_window_are_dropped_outside_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    let window = 10 * 60_000;
    // Expiry goes by sixteenths of the window: an id is remembered at least a window
    // (of the newest event time) after its latest copy, at most a slice more.
    let slice = window / DEDUP_SLICES;
    // One event per log batch: each id arrives at its own time.
    let arrivals = [
        ev("x", T0, "a", 1),
        ev("x", T0 + 1000, "a", 1),                       // redelivery: dropped
        ev("z", T0 + slice - 1, "a", 1),                  // arrives at the end of the first slice
        ev("y", T0 + window - 1, "a", 1),                 // not yet a window later
        ev("x", T0 + window - 1, "a", 1),                 // inside the window: dropped, remembered anew
        ev("w", T0 + window + slice, "a", 1),             // a window and a slice after the first "x"
        ev("z", T0 + window + slice + 1, "a", 1),         // "z" is gone: counted
        ev("x", T0 + window + slice + 2, "a", 1),         // a window after its first copy, not its latest: dropped
        ev("v", T0 + 2 * window + 2 * slice, "a", 1),     // a window and a slice after the latest "x"
        ev("x", T0 + 2 * window + 2 * slice + 1, "a", 1), // outside the window of every copy: counted
    ];
    for e in arrivals {
        append(&events, &[e]);
    }
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
    catch_up(&mut agg, &events);
    let b = agg.take_flush(false);
    assert_eq!((b.accepted, b.duplicates), (7, 3));
    assert_eq!(b.rows.iter().map(|r| r.count).sum::<i64>(), 7);
}

/// A retried request whose events span more event time than the window: every id of the
/// first copy is still remembered when the copy comes again, also after a crash between
/// the two (the ids of a log batch arrive together, at the batch's newest event time).
#[test]
fn a_retried_batch_spanning_more_than_the_window_is_dropped_whole_also_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    // 36 minutes of event time in one request, as in a backfill; the window is 10 minutes.
    let request: Vec<_> = (0..36).map(|i| ev(&format!("e{i}"), T0 + i * 60_000, "a", 1)).collect();
    append(&events, &[ev("before", T0 - 1, "b", 1)]);
    append(&events, &request);
    {
        let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
        catch_up(&mut agg, &events);
        agg.flush(&events, &flush_log, false, &Progress::default()).unwrap();
        // The reply was lost: the client sends the request again.
        append(&events, &request);
        catch_up(&mut agg, &events);
        let b = agg.take_flush(false);
        assert_eq!((b.accepted, b.duplicates), (0, 36), "the whole retry is a duplicate");
        // Crash before that flush is written; the client, still without a reply, retries once more.
    }
    append(&events, &request);
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
    catch_up(&mut agg, &events);
    let b = agg.take_flush(false);
    assert_eq!((b.accepted, b.duplicates), (0, 72), "both retries are duplicates after the rebuild");
    agg.write(&events, &flush_log, &b, &Progress::default()).unwrap();
    assert_eq!(flushed_sums(&flush_log)[&("a".to_string(), T0)], (36, 3600));
}

/// Batches that each span more event time than the window: a redelivery of the last
/// event of one batch at the start of the next is still dropped (an id looked up as of
/// its own arrival, not as of its batch's newest time).
#[test]
fn a_copy_at_the_start_of_the_next_long_batch_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    let first: Vec<_> = (0..36).map(|i| ev(&format!("a{i}"), T0 + i * 60_000, "a", 1)).collect();
    let mut second = vec![ev("a35", T0 + 35 * 60_000, "a", 1)];
    second.extend((36..72).map(|i| ev(&format!("a{i}"), T0 + i * 60_000, "a", 1)));
    append(&events, &first);
    append(&events, &second);
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
    catch_up(&mut agg, &events);
    let b = agg.take_flush(false);
    assert_eq!((b.accepted, b.duplicates), (72, 1));
}

#[test]
fn recovery_resumes_after_last_flush_and_keeps_the_dedup_window() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    append(&events, &[ev("1", T0, "a", 1), ev("2", T0 + 1, "a", 1)]);
    {
        let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
        catch_up(&mut agg, &events);
        agg.flush(&events, &flush_log, false, &Progress::default()).unwrap();
        append(&events, &[ev("3", T0 + 2, "b", 5)]);
        catch_up(&mut agg, &events);
        // Crash: the aggregate of event 3 was never flushed.
    }
    // A redelivery of event 1 after the crash must still be recognised.
    append(&events, &[ev("1", T0 + 3, "a", 1), ev("4", T0 + 4, "a", 1)]);
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
    assert_eq!(agg.position(), 2);
    catch_up(&mut agg, &events);
    let b = agg.take_flush(false);
    assert_eq!((b.first_offset, b.end_offset, b.duplicates), (2, 5, 1));
    agg.write(&events, &flush_log, &b, &Progress::default()).unwrap();
    let sums = flushed_sums(&flush_log);
    assert_eq!(sums[&("a".to_string(), T0)], (3, 300));
    assert_eq!(sums[&("b".to_string(), T0)], (5, 500));
    assert_eq!(events.committed(GROUP, 0).unwrap(), Some(0), "window still needs offset 0");
}

#[test]
fn run_loop_flushes_on_entry_threshold_and_answers_drain() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    let control = Control::new(1);
    let stop = Shutdown::default();
    let woken = events.clone();
    stop.on_trigger(move || woken.wake());
    let c = AggregatorConfig { max_entries: 10, ..cfg() };
    let batch: Vec<_> = (0..25).map(|i| ev(&i.to_string(), T0 + i, &format!("p{i}"), 1)).collect();
    append(&events, &batch);
    let request = control.request_drain();
    std::thread::scope(|s| {
        let h = s.spawn(|| run(&events, &flush_log, 0, c, &control, &stop));
        while !control.all_drained(request) {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.trigger();
        h.join().unwrap().unwrap();
    });
    let mut r = flush_log.reader(0, 0).unwrap();
    let flushes: Vec<FlushBatch> =
        std::iter::from_fn(|| r.next_batch().unwrap()).map(|b| FlushBatch::decode(&b.payload).unwrap()).collect();
    // One flush per log batch that crossed the threshold, then the end-of-input flush.
    assert_eq!(flushes.len(), 2);
    assert_eq!((flushes[0].end_offset, flushes[0].rows.len(), flushes[0].end_of_input), (25, 25, false));
    assert_eq!((flushes[1].first_offset, flushes[1].end_offset, flushes[1].end_of_input), (25, 25, true));
    assert_eq!(control.progress[0].flushed_end.load(Ordering::SeqCst), 25);
    assert_eq!(control.progress[0].accepted.load(Ordering::SeqCst), 25);
}

#[test]
fn end_of_input_moves_the_watermark_to_the_wall_clock_and_never_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    append(&events, &[ev("1", T0, "a", 1)]);
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
    catch_up(&mut agg, &events);
    let lateness = cfg().allowed_lateness_ms;
    // The input ended three hours after its last event: everything older than the
    // lateness is final, nothing newer (the hour of "now" stays open).
    let now = T0 + 3 * H;
    agg.end_input(now);
    let last = agg.take_flush(true);
    assert!(last.end_of_input);
    assert_eq!(last.watermark_ms, now - lateness);
    // Input whose newest event lies ahead of the clock keeps its own, later watermark.
    append(&events, &[ev("2", T0 + 10 * H, "a", 1)]);
    catch_up(&mut agg, &events);
    agg.end_input(now);
    assert_eq!(agg.take_flush(true).watermark_ms, T0 + 10 * H - lateness);
    // A heartbeat after the end no longer claims it: only the drain's flush does.
    assert!(!agg.take_flush(false).end_of_input);
}

#[test]
fn redeliveries_of_late_events_and_events_after_a_future_one_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (events, flush_log) = logs(dir.path());
    append(
        &events,
        &[
            ev("now", T0 + 2 * H, "a", 1),
            ev("backfill", T0, "a", 1), // two hours late
            ev("backfill", T0, "a", 1), // its retry
            ev("future", T0 + 23 * H, "b", 1),
            ev("normal", T0 + 2 * H, "b", 1),
            ev("normal", T0 + 2 * H, "b", 1),
        ],
    );
    let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
    catch_up(&mut agg, &events);
    let b = agg.take_flush(false);
    assert_eq!((b.accepted, b.duplicates), (4, 2));
}

#[test]
fn a_restart_drops_exactly_what_an_uninterrupted_run_drops() {
    // The same stream in the same log batches (of one event, and of three), once straight
    // through and once with a flush and restart after every batch: the dedup decisions
    // must be identical.
    let window = 10 * 60_000;
    let stream: Vec<Event<'static>> = (0..60)
        .map(|i: i64| {
            // Ids recur at distances inside, near and beyond the window.
            let id = if i % 2 == 0 { format!("e{}", i % 8) } else { format!("o{}", i % 7) };
            ev(&id, T0 + i * window / 9 - (i % 5) * 60_000, "a", 1)
        })
        .collect();
    for per_batch in [1, 3] {
        let straight = {
            let dir = tempfile::tempdir().unwrap();
            let (events, flush_log) = logs(dir.path());
            for batch in stream.chunks(per_batch) {
                append(&events, batch);
            }
            let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
            catch_up(&mut agg, &events);
            agg.take_flush(false).duplicates
        };
        let dir = tempfile::tempdir().unwrap();
        let (events, flush_log) = logs(dir.path());
        let mut duplicates = 0;
        for batch in stream.chunks(per_batch) {
            append(&events, batch);
            let mut agg = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
            catch_up(&mut agg, &events);
            let b = agg.take_flush(false);
            duplicates += b.duplicates;
            agg.write(&events, &flush_log, &b, &Progress::default()).unwrap();
        }
        assert!(straight > 5, "the stream should contain duplicates inside the window");
        assert_eq!(duplicates, straight, "batches of {per_batch}");
    }
}

/// Two aggregators on one partition (a stalled one woken after the consumer group moved
/// its partition): whichever flushes first, the flushes that count cover every event once.
#[test]
fn a_superseded_aggregator_cannot_count_events_twice() {
    let events_of = |range: std::ops::Range<i64>| -> Vec<Event<'static>> {
        range.map(|i| ev(&format!("e{i}"), T0 + i, &format!("p{}", i % 3), i)).collect()
    };
    let truth = |n: i64| {
        let mut sums = BTreeMap::new();
        for e in events_of(0..n) {
            let s = sums.entry((e.product_id.to_string(), T0)).or_insert((0, 0));
            s.0 += e.quantity;
            s.1 += e.quantity * 100;
        }
        sums
    };
    let superseded = |r: Result<(), AggregatorError>| matches!(r, Err(AggregatorError::Superseded { .. }));
    for stalled_flushes_first in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (events, flush_log) = logs(dir.path());
        let progress = Progress::default();
        append(&events, &events_of(0..3));
        let mut stalled = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
        catch_up(&mut stalled, &events);
        stalled.flush(&events, &flush_log, false, &progress).unwrap();
        append(&events, &events_of(3..5));
        catch_up(&mut stalled, &events); // holds 3..5, unflushed, when it stalls
        let mut successor = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
        assert_eq!(successor.position(), 3);
        append(&events, &events_of(5..6));
        catch_up(&mut successor, &events); // 3..6
        let (first, second) =
            if stalled_flushes_first { (&mut stalled, &mut successor) } else { (&mut successor, &mut stalled) };
        first.flush(&events, &flush_log, false, &progress).unwrap();
        assert!(superseded(second.flush(&events, &flush_log, false, &progress)), "the second writer is told");
        // Whoever was told recovers after the flush that counted, and catches up.
        let mut again = PartitionAggregator::recover(&events, &flush_log, 0, cfg()).unwrap();
        assert_eq!(again.position(), if stalled_flushes_first { 5 } else { 6 });
        catch_up(&mut again, &events);
        again.flush(&events, &flush_log, false, &progress).unwrap();
        assert_eq!(flushed_sums(&flush_log), truth(6), "stalled flushed first: {stalled_flushes_first}");
        // A writer that goes on after being told is told again.
        append(&events, &events_of(6..7));
        catch_up(second, &events);
        assert!(superseded(second.flush(&events, &flush_log, false, &progress)));
        assert_eq!(flushed_sums(&flush_log), truth(6));
    }
}

/// The compact window decides exactly as a plain set of every id with its arrival time
/// would, under the same sixteenth-of-a-window expiry, on random streams: a property
/// test of the table and its sweeps.
#[test]
fn the_compact_dedup_window_agrees_with_a_plain_set() {
    use proptest::prelude::*;
    proptest!(ProptestConfig::with_cases(64), |(steps in proptest::collection::vec((0u8..40, 0i64..120_000), 1..400))| {
        let window = 600_000;
        let mut compact = DedupWindow::new(window);
        let slice = window / DEDUP_SLICES;
        let mut plain: HashMap<u8, i64> = HashMap::default(); // id -> slice of its latest copy
        let mut max_ts = T0;
        for (id, advance) in steps {
            max_ts += advance;
            let now = max_ts.div_euclid(slice);
            let digest = xxhash_rust::xxh3::xxh3_128(&[id]);
            let want = plain.get(&id).is_some_and(|&at| now - at <= DEDUP_SLICES);
            plain.insert(id, now);
            prop_assert_eq!(compact.is_duplicate(digest, max_ts), want);
            prop_assert_eq!(compact.len(), plain.values().filter(|&&at| now - at <= DEDUP_SLICES).count());
        }
    });
}

#[test]
fn a_dedup_window_of_zero_drops_nothing() {
    let mut off = DedupWindow::new(0);
    let digest = xxhash_rust::xxh3::xxh3_128(b"e1");
    assert!(!off.is_duplicate(digest, T0));
    assert!(!off.is_duplicate(digest, T0), "the same id at the same newest time is kept too");
    assert!(off.is_empty(), "nothing is remembered");
}

#[test]
fn the_dedup_table_stops_growing_once_its_window_is_full() {
    // A steady rate for 40 windows of 16 s: the ids held stay the same from the first
    // window on, and so must the table. Erasing expired ids in place left tombstones, and
    // at both rates the table doubled again 8 windows after it was full.
    let digest = |i: u64| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
    for rate in [1_000u64, 2_000] {
        let mut window = DedupWindow::new(16_000);
        let mut sizes = Vec::new();
        for i in 0..rate * 16 * 40 {
            let ts = 1_800_000_000_000 + (i * 1000 / rate) as i64;
            assert!(!window.is_duplicate(digest(i), ts));
            if i % (rate * 16) == 0 {
                sizes.push((window.len(), window.memory_bytes()));
            }
        }
        let settled = &sizes[2..];
        assert!(
            settled.iter().all(|s| s.1 == settled[0].1),
            "{rate}/s: the table grew after its window filled: {sizes:?}"
        );
        assert!(settled[0].1 <= settled[0].0 * 4 * 13, "{rate}/s: {} bytes for {} ids", settled[0].1, settled[0].0);
    }
}

#[test]
fn a_dedup_table_takes_its_size_when_its_window_first_fills() {
    // Sized only when its room ran low, a table at 1,250, 2,500 or 5,000 ids/s took its
    // size class up two windows after the window was full (the soak's steps at 20k
    // events/s came at minutes 36 to 49 with a 10-minute window). Sized when ids first
    // expire, it keeps one size from then on, at every rate.
    let digest = |i: u64| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
    for rate in (1_000u64..8_000).step_by(250) {
        let mut window = DedupWindow::new(16_000);
        let mut sizes = Vec::new();
        for i in 0..rate * 16 * 8 {
            let ts = 1_800_000_000_000 + (i * 1000 / rate) as i64;
            assert!(!window.is_duplicate(digest(i), ts));
            if i % (rate * 16) == 0 {
                sizes.push(window.memory_bytes());
            }
        }
        let settled = &sizes[2..];
        assert!(settled.iter().all(|s| *s == settled[0]), "{rate}/s: {sizes:?}");
    }
}
