use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use super::*;
use crate::{Batch, Log, LogConfig, LogError, SourcePos};

fn cfg(partitions: u32, segment_bytes: u64) -> LogConfig {
    LogConfig { partitions, segment_bytes, ..LogConfig::default() }
}

fn read_all(log: &DiskLog, partition: u32, from: u64) -> Vec<Batch> {
    let mut r = log.reader(partition, from).unwrap();
    std::iter::from_fn(|| r.next_batch().unwrap()).collect()
}

fn src(source: u64, pos: u64) -> SourcePos {
    SourcePos { source, pos, line: pos / 10 }
}

#[test]
fn segments_roll_and_are_read_across() {
    let dir = tempfile::tempdir().unwrap();
    let log = DiskLog::open(dir.path(), cfg(1, 200)).unwrap();
    for i in 0..20u64 {
        log.append(0, 1, &[i as u8; 100], SourcePos::default()).unwrap();
    }
    let segs = fs::read_dir(dir.path().join("p-0000")).unwrap().count();
    assert!(segs >= 9, "expected many segments, got {segs}");
    let batches = read_all(&log, 0, 7);
    assert_eq!(batches.len(), 13);
    assert_eq!(batches[0].payload, vec![7u8; 100]);
    drop(log);
    let log = DiskLog::open(dir.path(), cfg(1, 200)).unwrap();
    assert_eq!(log.end_offset(0).unwrap(), 20);
    assert_eq!(read_all(&log, 0, 0).len(), 20);
}

#[test]
fn torn_tail_is_truncated_on_open_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("p-0000").join(segment_name(0));
    {
        let log = DiskLog::open(dir.path(), cfg(1, 1 << 20)).unwrap();
        log.append(0, 2, b"good", SourcePos::default()).unwrap();
        log.append(0, 1, b"torn-batch-payload", SourcePos::default()).unwrap();
    }
    // Simulate kill -9 in the middle of writing the second batch.
    let len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 5).unwrap();
    let log = DiskLog::open(dir.path(), cfg(1, 1 << 20)).unwrap();
    assert_eq!(log.end_offset(0).unwrap(), 2, "the torn batch must not be served");
    assert_eq!(log.append(0, 1, b"next", SourcePos::default()).unwrap(), 2);
    let payloads: Vec<_> = read_all(&log, 0, 0).into_iter().map(|b| b.payload).collect();
    assert_eq!(payloads, [b"good".to_vec(), b"next".to_vec()]);
}

#[test]
fn corrupt_payload_in_tail_is_detected_by_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("p-0000").join(segment_name(0));
    {
        let log = DiskLog::open(dir.path(), cfg(1, 1 << 20)).unwrap();
        log.append(0, 1, b"first", SourcePos::default()).unwrap();
        log.append(0, 1, b"second", SourcePos::default()).unwrap();
    }
    let mut bytes = fs::read(&seg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&seg, bytes).unwrap();
    let log = DiskLog::open(dir.path(), cfg(1, 1 << 20)).unwrap();
    assert_eq!(log.end_offset(0).unwrap(), 1);
    assert_eq!(read_all(&log, 0, 0).len(), 1);
}

#[test]
fn garbage_after_a_crash_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("p-0000").join(segment_name(0));
    {
        let log = DiskLog::open(dir.path(), cfg(1, 1 << 20)).unwrap();
        log.append(0, 4, b"ok", SourcePos::default()).unwrap();
    }
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0xAB; 100]).unwrap();
    drop(f);
    let log = DiskLog::open(dir.path(), cfg(1, 1 << 20)).unwrap();
    assert_eq!(log.end_offset(0).unwrap(), 4);
    assert_eq!(fs::metadata(&seg).unwrap().len(), (HEADER_LEN + 2) as u64);
}

#[test]
fn source_positions_are_recovered_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = DiskLog::open(dir.path(), cfg(2, 150)).unwrap();
        log.append_all(&[(0, 1, b"a", src(7, 100)), (1, 1, b"b", src(7, 100))]).unwrap();
        log.append_all(&[(0, 1, b"c", src(7, 250)), (1, 0, b"", src(7, 250))]).unwrap();
        log.append(0, 1, b"d", src(9, 42)).unwrap();
        log.append(0, 1, b"e", SourcePos::default()).unwrap();
    }
    let log = DiskLog::open(dir.path(), cfg(2, 150)).unwrap();
    assert_eq!(log.source_position(0, 7).unwrap(), Some(src(7, 250)));
    assert_eq!(log.source_position(1, 7).unwrap(), Some(src(7, 250)));
    assert_eq!(log.source_position(0, 9).unwrap(), Some(src(9, 42)));
    assert_eq!(log.source_position(1, 9).unwrap(), None);
    // An empty batch carries a position but no offsets.
    assert_eq!(log.end_offset(1).unwrap(), 1);
}

#[test]
fn retention_deletes_only_old_segments_every_group_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let log = DiskLog::open(dir.path(), LogConfig { retention: Duration::ZERO, ..cfg(1, 100) }).unwrap();
    for _ in 0..6 {
        log.append(0, 1, &[0; 100], SourcePos::default()).unwrap();
    }
    assert_eq!(log.enforce_retention().unwrap(), 0, "no group registered: keep everything");
    log.commit("a", 0, 4).unwrap();
    log.commit("b", 0, 2).unwrap();
    assert_eq!(log.enforce_retention().unwrap(), 2, "segments 0 and 1 are below both groups");
    assert_eq!(log.start_offset(0).unwrap(), 2);
    assert!(matches!(log.reader(0, 0).unwrap().next_batch(), Err(LogError::OffsetGone { earliest: 2, .. })));
    assert_eq!(read_all(&log, 0, 2).len(), 4);
}

#[test]
fn second_process_cannot_open_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let _log = DiskLog::open(dir.path(), cfg(1, 1 << 20)).unwrap();
    assert!(matches!(DiskLog::open(dir.path(), cfg(1, 1 << 20)), Err(LogError::Locked(_))));
}

#[test]
fn last_batch_skips_an_empty_newest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let seg_dir = dir.path().join("p-0000");
    {
        let log = DiskLog::open(dir.path(), cfg(1, 100)).unwrap();
        log.append(0, 1, &[1; 100], SourcePos::default()).unwrap();
        log.append(0, 1, &[2; 100], SourcePos::default()).unwrap();
    }
    // A crash tore the only batch of the newest segment: recovery empties it.
    let newest = seg_dir.join(segment_name(1));
    let len = fs::metadata(&newest).unwrap().len();
    OpenOptions::new().write(true).open(&newest).unwrap().set_len(len - 1).unwrap();
    let log = DiskLog::open(dir.path(), cfg(1, 100)).unwrap();
    assert_eq!(log.end_offset(0).unwrap(), 1);
    assert_eq!(log.last_batch(0).unwrap().unwrap().payload, vec![1; 100]);
}

#[test]
fn a_crash_while_creating_partitions_is_finished_on_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    // Only three of eight partition directories exist, and no partition count yet.
    for p in 0..3 {
        fs::create_dir_all(dir.path().join(format!("p-{p:04}"))).unwrap();
    }
    let log = DiskLog::open(dir.path(), cfg(8, 1 << 20)).unwrap();
    assert_eq!(log.partitions(), 8);
    assert_eq!(fs::read_to_string(dir.path().join("PARTITIONS")).unwrap(), "8");
}

#[test]
fn source_positions_survive_retention_of_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig { retention: Duration::ZERO, ..cfg(1, 100) };
    {
        let log = DiskLog::open(dir.path(), config.clone()).unwrap();
        log.append(0, 1, &[0; 100], src(7, 1000)).unwrap();
        for _ in 0..4 {
            log.append(0, 1, &[0; 100], SourcePos::default()).unwrap();
        }
        log.commit("all", 0, 5).unwrap();
        assert!(log.enforce_retention().unwrap() >= 3);
        assert_eq!(log.start_offset(0).unwrap(), 4);
        // Readers skip the carried positions: they hold no events.
        assert_eq!(read_all(&log, 0, 4).iter().map(|b| b.count).sum::<u32>(), 1);
    }
    let log = DiskLog::open(dir.path(), config).unwrap();
    assert_eq!(log.source_position(0, 7).unwrap(), Some(src(7, 1000)));
    assert_eq!(log.end_offset(0).unwrap(), 5);
}

#[test]
fn a_full_disk_fails_appends_and_the_log_heals_when_space_returns() {
    let fs = crate::testing::Tmpfs::mount(2 << 20);
    let dir = fs.path.join("log");
    let log = DiskLog::open(&dir, cfg(2, 64 << 10)).unwrap();
    let filler = fs.fill(200 << 10);
    // Fill what is left: appends succeed, then fail once the disk is full.
    let payload = vec![7u8; 10_000];
    let mut acknowledged = [0u64; 2];
    let mut failures = 0;
    for i in 0..200u64 {
        let p = (i % 2) as u32;
        match log.append_all(&[(p, 1, &payload, src(9, i))]) {
            Ok(_) => acknowledged[p as usize] += 1,
            Err(e) => {
                assert!(e.to_string().contains("No space left"), "{e}");
                failures += 1;
            }
        }
    }
    assert!(failures > 10 && acknowledged.iter().all(|&n| n > 0), "acknowledged {acknowledged:?}, {failures} failed");
    // Space returns: the next append recovers the log and succeeds, without a restart.
    fs::remove_file(&filler).unwrap();
    log.append_all(&[(0, 1, b"after", src(9, 1000)), (1, 1, b"after", src(9, 1000))]).unwrap();
    let check = |log: &DiskLog| {
        for p in 0..2u32 {
            let batches = read_all(log, p, 0);
            assert_eq!(
                batches.len() as u64,
                acknowledged[p as usize] + 1,
                "partition {p}: what was acknowledged, once"
            );
            assert!(batches[..batches.len() - 1].iter().all(|b| b.payload == payload));
            assert_eq!(batches.last().unwrap().payload, b"after");
            assert_eq!(log.source_position(p, 9).unwrap(), Some(src(9, 1000)));
        }
    };
    check(&log);
    drop(log);
    check(&DiskLog::open(&dir, cfg(2, 64 << 10)).unwrap());
}
