//! One archive suite, run on a local directory and on S3 (a `moto_server` S3 endpoint,
//! started here if nothing answers on 127.0.0.1:5055).

use super::*;
use parquet::file::reader::{FileReader, SerializedFileReader};

/// Opens the same archive root again and again.
trait Backend {
    fn root(&self) -> Root;
}

struct Dir(tempfile::TempDir);

impl Backend for Dir {
    fn root(&self) -> Root {
        Root::Dir(self.0.path().to_path_buf())
    }
}

struct S3(String);

impl S3 {
    fn new() -> S3 {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        S3(format!("s3://{}/suite-{}-{n}-{nanos}", testing::s3_bucket(), std::process::id()))
    }
}

impl Backend for S3 {
    fn root(&self) -> Root {
        Root::parse_with(&self.0, &testing::s3_options()).unwrap()
    }
}

const H: i64 = HOUR_MS;
const T0: i64 = 1_796_083_200_000; // 2026-12-01T00:00:00Z

fn row(product: &str, hour_ms: i64, count: i64) -> AggRow {
    AggRow {
        product_id: product.into(),
        hour_ms,
        count,
        revenue_cents: count * 100,
        earliest_ts_ms: hour_ms + 1,
        latest_ts_ms: hour_ms + 2,
        dims: Default::default(),
    }
}

fn flush(partition: u32, first: u64, end: u64, watermark_ms: i64, rows: Vec<AggRow>) -> FlushBatch {
    FlushBatch { partition, first_offset: first, end_offset: end, watermark_ms, rows, ..FlushBatch::default() }
}

fn files_are_named_by_flush_id_and_hold_the_documented_schema(d: &dyn Backend) {
    let root = d.root();
    let mut a = Archive::open(d.root(), 2).unwrap();
    let b = flush(1, 10, 20, T0, vec![row("a", T0, 3), row("b", T0, 1), row("a", T0 + H, -1)]);
    assert_eq!(a.apply(0, &b).unwrap(), 2);
    if root.dir().is_some() {
        assert!(list_files(&root).unwrap().is_empty(), "nothing is visible before save");
    }
    a.save().unwrap();
    let files = list_files(&root).unwrap();
    assert_eq!(
        files,
        [
            "hour=2026-12-01T00/part-0001-00000000000000000010-00000000000000000019.parquet",
            "hour=2026-12-01T01/part-0001-00000000000000000010-00000000000000000019.parquet",
        ]
    );
    assert_eq!(read_file(&root, &files[0]).unwrap(), vec![row("a", T0, 3), row("b", T0, 1)]);
    assert_eq!(hour_files(&root, T0 + H).unwrap(), [files[1].clone()]);
    // The schema, as any Parquet reader sees it.
    let reader = SerializedFileReader::new(bytes::Bytes::from(root.get(&files[1]).unwrap().unwrap())).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    let cols: Vec<String> = schema
        .columns()
        .iter()
        .map(|c| format!("{} {} {:?}", c.name(), c.physical_type(), c.logical_type_ref()))
        .collect();
    assert_eq!(cols[0], "product_id BYTE_ARRAY Some(String)");
    assert!(
        cols[1].starts_with("hour INT64 Some(Timestamp(TimestampType { is_adjusted_to_u_t_c: true, unit: MILLIS"),
        "{}",
        cols[1]
    );
    assert_eq!(cols[2], "count INT64 None");
    assert_eq!(cols[3], "revenue_cents INT64 None");
    assert!(cols[4].starts_with("earliest_ts INT64 Some(Timestamp"));
    assert!(cols[5].starts_with("latest_ts INT64 Some(Timestamp"));
    assert_eq!(reader.metadata().file_metadata().num_rows(), 1);
}

fn applying_a_batch_twice_writes_the_same_file(d: &dyn Backend) {
    let root = d.root();
    let b = flush(0, 0, 5, T0, vec![row("a", T0, 3)]);
    let mut a = Archive::open(d.root(), 1).unwrap();
    a.apply(0, &b).unwrap();
    a.save().unwrap();
    let files = list_files(&root).unwrap();
    let before = root.get(&files[0]).unwrap();
    // Crash before the state was saved: a fresh archive applies the batch again.
    let mut a = Archive::open(d.root(), 1).unwrap();
    assert_eq!(a.apply(0, &b).unwrap(), 0, "the file exists: nothing is rewritten");
    a.save().unwrap();
    assert_eq!(list_files(&root).unwrap(), files);
    assert_eq!(root.get(&files[0]).unwrap(), before);
}

fn hours_complete_when_every_partition_passed_them_and_late_data_marks_dirty(d: &dyn Backend) {
    let mut a = Archive::open(d.root(), 2).unwrap();
    a.apply(0, &flush(0, 0, 1, T0 + H + 1, vec![row("a", T0, 1)])).unwrap();
    a.save().unwrap();
    assert!(!a.state().hours["2026-12-01T00"].complete, "partition 1 has not reported yet");
    a.apply(0, &flush(1, 0, 0, T0 + 30 * 60_000, vec![])).unwrap();
    a.save().unwrap();
    assert!(!a.state().hours["2026-12-01T00"].complete, "partition 1 is still inside the hour");
    a.apply(1, &flush(1, 0, 0, T0 + H, vec![])).unwrap();
    a.save().unwrap();
    assert!(a.state().hours["2026-12-01T00"].complete);
    assert!(!a.state().hours["2026-12-01T00"].dirty);
    // A refund for that hour arrives later.
    a.apply(1, &flush(0, 1, 2, T0 + 2 * H, vec![row("a", T0, -1)])).unwrap();
    a.save().unwrap();
    assert!(a.state().hours["2026-12-01T00"].dirty);
    let reopened = Archive::open(d.root(), 2).unwrap();
    assert_eq!(reopened.state(), a.state());
    assert_eq!(reopened.state().partitions[0].next_flush_offset, 2);
    assert_eq!(reopened.state().hours["2026-12-01T00"].files, 2);
    let mut a = reopened;
    assert!(a.clear_dirty(T0));
    assert!(!a.state().hours["2026-12-01T00"].dirty);
}

fn end_of_input_completes_only_the_hours_its_watermark_passed(d: &dyn Backend) {
    // A replay's last flush: its watermark is the wall clock less the lateness (here 02:30),
    // and the flag no longer makes every later hour final (it did once: open hours of the
    // input were rolled up as exact and then missed live sales).
    let mut a = Archive::open(d.root(), 1).unwrap();
    let mut b = flush(0, 0, 2, T0 + 2 * H + H / 2, vec![row("a", T0 + H, 1), row("a", T0 + 5 * H, 1)]);
    b.end_of_input = true;
    a.apply(0, &b).unwrap();
    a.save().unwrap();
    assert!(a.state().hours["2026-12-01T01"].complete);
    assert!(!a.state().hours["2026-12-01T05"].complete, "an hour the watermark has not passed stays open");
    assert!(a.state().complete(T0, T0 + 2 * H) && !a.state().complete(T0, T0 + 3 * H));
    // A state file written before the change, with the old flag, loads and is not final.
    let old = r#"{"partitions":[{"next_flush_offset":1,"watermark_ms":0,"end_of_input":true}],"hours":{}}"#;
    let state: ArchiveState = serde_json::from_str(old).unwrap();
    assert_eq!(state.low_watermark(), 0);
}

macro_rules! archive_suite {
    ($($test:ident),+ $(,)?) => {
        mod dir {
            $( #[test] fn $test() { super::$test(&super::Dir(tempfile::tempdir().unwrap())) } )+
        }
        mod s3 {
            $( #[test] fn $test() { super::$test(&super::S3::new()) } )+
        }
    };
}

archive_suite!(
    files_are_named_by_flush_id_and_hold_the_documented_schema,
    applying_a_batch_twice_writes_the_same_file,
    hours_complete_when_every_partition_passed_them_and_late_data_marks_dirty,
    end_of_input_completes_only_the_hours_its_watermark_passed,
);

/// A group's records decode into one batch: the first's events start, the last's
/// watermark and end of input, every row ordered by hour; a record whose rows do not
/// decode is the group's error.
#[test]
fn a_group_of_records_merges_into_one_batch_and_a_corrupt_one_fails_it() {
    let records = [
        flush(0, 0, 10, T0, vec![row("b", T0 + H, 2), row("a", T0, 1)]),
        flush(0, 10, 20, T0 + H, vec![row("a", T0 + 2 * H, 4), row("c", T0, 3)]),
        FlushBatch { end_of_input: true, ..flush(0, 20, 25, T0 + 2 * H, vec![row("d", T0 + H, 5)]) },
    ];
    let group: Vec<(u64, Vec<u8>)> = records.iter().enumerate().map(|(i, b)| (i as u64 + 4, b.encode())).collect();
    let (offset, merged) = merge_group(group.clone()).unwrap();
    assert_eq!(offset, 6);
    assert_eq!((merged.first_offset, merged.end_offset), (0, 25));
    assert_eq!(merged.watermark_ms, T0 + 2 * H);
    assert!(merged.end_of_input);
    let rows: Vec<(&str, i64)> = merged.rows.iter().map(|r| (r.product_id.as_str(), r.hour_ms)).collect();
    assert_eq!(rows, [("a", T0), ("c", T0), ("b", T0 + H), ("d", T0 + H), ("a", T0 + 2 * H)]);
    let mut corrupt = group;
    let cut = corrupt[1].1.len() - 3;
    corrupt[1].1.truncate(cut);
    assert!(merge_group(corrupt).is_err());
}
