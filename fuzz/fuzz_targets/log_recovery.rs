//! Log segment recovery: a partition whose segment holds valid batches followed by any
//! bytes (a torn or corrupted tail) opens without a panic — refused with an error, or cut
//! back — and every batch it then serves reads without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use topk_log::{DiskLog, Log, LogConfig, SourcePos};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { partitions: 1, ..LogConfig::default() };
    let log = DiskLog::open(dir.path(), cfg.clone()).unwrap();
    let split = data.len() / 2;
    let (good, tail) = data.split_at(split);
    if !good.is_empty() {
        log.append_all(&[(0, 1, good, SourcePos::default())]).unwrap();
    }
    drop(log);
    let segment = dir.path().join("p-0000").join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&segment).unwrap_or_default();
    bytes.extend_from_slice(tail);
    std::fs::write(&segment, &bytes).unwrap();
    let Ok(log) = DiskLog::open(dir.path(), cfg) else { return };
    let end = log.end_offset(0).unwrap();
    let Ok(mut reader) = log.reader(0, log.start_offset(0).unwrap()) else { return };
    let mut read = 0;
    while let Ok(Some(batch)) = reader.next_batch() {
        read = batch.end_offset();
        if read >= end {
            break;
        }
    }
    assert!(read <= end);
});
