//! One log suite, run against every backend: the embedded log in a temporary directory
//! and Kafka (the broker of [`crate::testing::kafka_brokers`]), each test on topics of
//! its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::*;

/// Opens the same log again and again (to test reopening), with a partition count.
trait Backend {
    fn open(&self, partitions: u32) -> Result<Arc<dyn Log>, LogError>;
}

struct Disk(tempfile::TempDir);

impl Backend for Disk {
    fn open(&self, partitions: u32) -> Result<Arc<dyn Log>, LogError> {
        Ok(Arc::new(DiskLog::open(self.0.path(), LogConfig { partitions, ..LogConfig::default() })?))
    }
}

struct Kafka {
    topic: String,
}

impl Kafka {
    fn new() -> Kafka {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        Kafka { topic: format!("log-suite-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)) }
    }
}

impl Backend for Kafka {
    fn open(&self, partitions: u32) -> Result<Arc<dyn Log>, LogError> {
        Ok(Arc::new(KafkaLog::open(KafkaConfig::new(&testing::kafka_brokers(), &self.topic, partitions))?))
    }
}

fn src(source: u64, pos: u64) -> SourcePos {
    SourcePos { source, pos, line: pos / 10 }
}

/// The next `n` batches of `partition` from `from`, waiting for them to arrive.
fn read_n(log: &dyn Log, partition: u32, from: u64, n: usize) -> Vec<Batch> {
    let mut r = log.reader(partition, from).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = 0;
    while out.len() < n {
        match r.next_batch().unwrap() {
            Some(b) => out.push(b),
            None if Instant::now() > deadline => panic!("only {} of {n} batches arrived: {out:?}", out.len()),
            None => log.wait_for_append(&mut tick, Duration::from_millis(20)),
        }
    }
    out
}

/// No batch shows up at `from` within a short while.
fn assert_nothing_at(log: &dyn Log, partition: u32, from: u64) {
    let mut r = log.reader(partition, from).unwrap();
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        if let Some(b) = r.next_batch().unwrap() {
            panic!("expected nothing at {from}, got {b:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn offsets_cover_events_and_survive_reopen(b: &dyn Backend) {
    let (first, second, other) = {
        let log = b.open(2).unwrap();
        let first = log.append(0, 3, b"abc", SourcePos::default()).unwrap();
        let second = log.append(0, 2, b"de", SourcePos::default()).unwrap();
        let other = log.append(1, 1, b"x", SourcePos::default()).unwrap();
        assert!(second >= first + 3, "a batch of 3 occupies 3 offsets: {first} then {second}");
        assert!(log.end_offset(0).unwrap() >= second + 2);
        (first, second, other)
    };
    let log = b.open(2).unwrap();
    assert!(log.end_offset(0).unwrap() >= second + 2);
    let batches = read_n(&*log, 0, first, 2);
    assert_eq!(
        batches.iter().map(|b| (b.base_offset, b.count, b.payload.clone())).collect::<Vec<_>>(),
        [(first, 3, b"abc".to_vec()), (second, 2, b"de".to_vec())]
    );
    assert_eq!(batches[1].end_offset(), second + 2);
    // Reading from the middle of a batch returns that batch; past the end returns nothing.
    assert_eq!(read_n(&*log, 0, second + 1, 1)[0].base_offset, second);
    assert_nothing_at(&*log, 0, second + 2);
    assert_eq!(log.last_batch(0).unwrap().unwrap().base_offset, second);
    let last = log.last_batch(1).unwrap().unwrap();
    assert_eq!((last.base_offset, last.payload), (other, b"x".to_vec()));
    assert_eq!(log.last_batch(0).unwrap().unwrap().payload, b"de");
}

/// What the aggregator's fencing relies on: an append lands at the end offset read just
/// before it, `offset_after` predicts where the next one lands, and `batch_before` walks
/// back through the batches.
fn appends_land_where_predicted_and_batches_walk_back(b: &dyn Backend) {
    let log = b.open(1).unwrap();
    let mut bases = Vec::new();
    for (i, count) in [1u32, 3, 1, 2].into_iter().enumerate() {
        let expected = log.end_offset(0).unwrap();
        if let Some(&(prev, n)) = bases.last() {
            assert_eq!(expected, log.offset_after(prev, n), "end offset after the batch at {prev}");
        }
        let base = log.append(0, count, &[i as u8; 4], SourcePos::default()).unwrap();
        assert_eq!(base, expected, "batch {i} landed at the end offset read before it");
        bases.push((base, count));
    }
    let end = log.end_offset(0).unwrap();
    let mut walked = Vec::new();
    let mut below = end;
    while let Some(batch) = log.batch_before(0, below).unwrap() {
        assert!(batch.base_offset < below);
        walked.push((batch.base_offset, batch.payload[0]));
        below = batch.base_offset;
    }
    walked.reverse();
    assert_eq!(walked, bases.iter().enumerate().map(|(i, &(base, _))| (base, i as u8)).collect::<Vec<_>>());
    // From the middle of a batch: that batch starts below.
    let (multi, _) = bases[1];
    assert_eq!(log.batch_before(0, multi + 1).unwrap().unwrap().base_offset, multi);
    assert_eq!(log.last_batch(0).unwrap().unwrap().base_offset, bases[3].0);
}

fn an_empty_log_has_no_last_batch_and_reads_nothing(b: &dyn Backend) {
    let log = b.open(1).unwrap();
    assert_eq!(log.last_batch(0).unwrap(), None);
    assert_eq!(log.source_position(0, 7).unwrap(), None);
    assert_nothing_at(&*log, 0, 0);
    assert!(matches!(log.reader(3, 0).err(), Some(LogError::NoSuchPartition { partition: 3, partitions: 1 })));
}

fn source_positions_are_recovered_from_the_log(b: &dyn Backend) {
    {
        let log = b.open(2).unwrap();
        log.append_parts(&[(0, 1, &[b"a"], src(7, 100)), (1, 1, &[b"b"], src(7, 100))]).unwrap();
        log.append_parts(&[(0, 1, &[b"c"], src(7, 250)), (1, 0, &[], src(7, 250))]).unwrap();
        log.append(0, 1, b"d", src(9, 42)).unwrap();
        log.append(0, 1, b"e", SourcePos::default()).unwrap();
    }
    let log = b.open(2).unwrap();
    assert_eq!(log.source_position(0, 7).unwrap(), Some(src(7, 250)));
    assert_eq!(log.source_position(1, 7).unwrap(), Some(src(7, 250)));
    assert_eq!(log.source_position(0, 9).unwrap(), Some(src(9, 42)));
    assert_eq!(log.source_position(1, 9).unwrap(), None);
    // An empty batch carries a position but no events: readers skip it.
    let b1 = read_n(&*log, 1, 0, 1);
    assert_eq!(b1[0].payload, b"b");
    assert_nothing_at(&*log, 1, b1[0].end_offset());
}

fn commits_are_kept_per_group_and_partition(b: &dyn Backend) {
    let (base, next) = {
        let log = b.open(2).unwrap();
        let base = log.append(1, 5, b"12345", SourcePos::default()).unwrap();
        let next = log.append(1, 1, b"6", SourcePos::default()).unwrap();
        assert_eq!(log.committed("archive", 1).unwrap(), None);
        log.commit("archive", 1, base).unwrap();
        log.commit("archive", 1, next).unwrap();
        log.commit("speed", 1, base).unwrap();
        (base, next)
    };
    let log = b.open(2).unwrap();
    assert_eq!(log.committed("archive", 1).unwrap(), Some(next));
    assert_eq!(log.committed("speed", 1).unwrap(), Some(base));
    assert_eq!(log.committed("archive", 0).unwrap(), None);
    // Inside a batch: at most what was committed, never past it.
    log.commit("archive", 1, base + 2).unwrap();
    let got = log.committed("archive", 1).unwrap().unwrap();
    assert!((base..=base + 2).contains(&got), "{got} not in {base}..={}", base + 2);
}

fn readers_see_appends_from_another_thread(b: &dyn Backend) {
    let log = b.open(1).unwrap();
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..200u32 {
                log.append(0, 1, &i.to_le_bytes(), SourcePos::default()).unwrap();
            }
        })
    };
    let seen: Vec<u32> =
        read_n(&*log, 0, 0, 200).into_iter().map(|b| u32::from_le_bytes(b.payload.try_into().unwrap())).collect();
    writer.join().unwrap();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
}

/// A wake returns a reader waiting for appends at once (how a stop reaches it), and one
/// that comes just before the reader's wait is not lost.
fn a_wake_returns_a_waiting_reader_at_once(b: &dyn Backend) {
    let log = b.open(1).unwrap();
    let mut seen = 0;
    log.wait_for_append(&mut seen, Duration::from_millis(1));
    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            log.wait_for_append(&mut seen, Duration::from_secs(30));
            started.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    log.wake();
    let waited = waiter.join().unwrap();
    assert!(waited < Duration::from_secs(10), "woken after {waited:?}");

    let mut before = 0;
    log.wait_for_append(&mut before, Duration::from_millis(1));
    log.wake();
    let started = Instant::now();
    log.wait_for_append(&mut before, Duration::from_secs(30));
    assert!(started.elapsed() < Duration::from_secs(10), "a wake before the wait: {:?}", started.elapsed());
}

fn appends_to_many_partitions_land_in_each(b: &dyn Backend) {
    let log = b.open(4).unwrap();
    let bases = log
        .append_parts(&[
            (0, 2, &[b"a", b"b"], SourcePos::default()),
            (2, 1, &[b"c"], SourcePos::default()),
            (3, 1, &[b"d"], SourcePos::default()),
        ])
        .unwrap();
    assert_eq!(bases.len(), 3);
    for (p, payload, base) in [(0, b"ab", bases[0]), (2, b"c\0", bases[1]), (3, b"d\0", bases[2])] {
        let got = read_n(&*log, p, 0, 1).remove(0);
        assert_eq!(got.base_offset, base);
        assert_eq!(got.payload, payload.iter().copied().filter(|&c| c != 0).collect::<Vec<_>>());
    }
    assert_nothing_at(&*log, 1, 0);
}

fn partition_count_cannot_change(b: &dyn Backend) {
    drop(b.open(4).unwrap());
    let err = b.open(8).err().unwrap();
    assert!(err.to_string().contains("has 4 partitions but 8 are configured"), "{err}");
}

macro_rules! log_suite {
    ($($test:ident),+ $(,)?) => {
        mod disk {
            $( #[test] fn $test() { super::$test(&super::Disk(tempfile::tempdir().unwrap())) } )+
        }
        mod kafka {
            $( #[test] fn $test() { super::$test(&super::Kafka::new()) } )+
        }
    };
}

log_suite!(
    offsets_cover_events_and_survive_reopen,
    a_wake_returns_a_waiting_reader_at_once,
    an_empty_log_has_no_last_batch_and_reads_nothing,
    appends_land_where_predicted_and_batches_walk_back,
    source_positions_are_recovered_from_the_log,
    commits_are_kept_per_group_and_partition,
    readers_see_appends_from_another_thread,
    appends_to_many_partitions_land_in_each,
    partition_count_cannot_change,
);

/// Records what a group member holds.
#[derive(Default)]
struct Held(std::sync::Mutex<std::collections::BTreeSet<u32>>);

impl Assignments for Held {
    fn assigned(&self, partitions: &[u32]) {
        self.0.lock().unwrap().extend(partitions);
    }
    fn revoked(&self, partitions: &[u32]) {
        let mut held = self.0.lock().unwrap();
        partitions.iter().for_each(|p| {
            held.remove(p);
        });
    }
}

fn held(h: &Held) -> Vec<u32> {
    h.0.lock().unwrap().iter().copied().collect()
}

#[test]
fn a_consumer_group_spreads_partitions_and_hands_them_on_when_a_member_leaves() {
    let k = Kafka::new();
    let log = KafkaLog::open(KafkaConfig::new(&testing::kafka_brokers(), &k.topic, 4)).unwrap();
    let group = format!("{}-group", k.topic);
    let fast = [("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500")];
    let (a, b) = (Arc::new(Held::default()), Arc::new(Held::default()));
    let member_a = log.join_group(&group, &fast, a.clone()).unwrap();
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out: {what} (a {:?}, b {:?})", held(&a), held(&b));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("a alone holds all four", &|| held(&a) == [0, 1, 2, 3]);
    let member_b = log.join_group(&group, &fast, b.clone()).unwrap();
    wait("the four are split", &|| held(&a).len() == 2 && held(&b).len() == 2);
    let mut all: Vec<u32> = held(&a).into_iter().chain(held(&b)).collect();
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 3], "each partition has one member");
    member_a.leave();
    assert!(held(&a).is_empty(), "leaving revokes everything first");
    wait("b takes over", &|| held(&b) == [0, 1, 2, 3]);
    drop(member_b);
    assert!(held(&b).is_empty());
}
