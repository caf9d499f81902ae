//! The CSV path on any bytes: the first record as the header (refused with a reason or
//! accepted), every later record an event or a rejection with its reason; never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use topk_core::event::{CsvHeader, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::at(1_790_000_000_000);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
    let mut record = csv::ByteRecord::new();
    let Ok(true) = reader.read_byte_record(&mut record) else { return };
    let header = match CsvHeader::new(&record) {
        Ok(h) => h,
        Err(why) => return assert!(!why.is_empty()),
    };
    let mut line = 1;
    while let Ok(true) = reader.read_byte_record(&mut record) {
        line += 1;
        if let Err(r) = header.parse(&record, line, &limits) {
            assert_eq!(r.line, line);
            assert!(!r.reason.is_empty());
        }
    }
});
