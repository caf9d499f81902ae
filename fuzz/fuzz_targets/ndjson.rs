//! The NDJSON parser on any bytes: never panics; every line is an event or a rejection
//! that names its line, and the lines' byte ranges tile the input in order.
#![no_main]
use libfuzzer_sys::fuzz_target;
use topk_core::event::{parse_ndjson, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::at(1_790_000_000_000);
    let mut last_end = 0;
    let rejections = parse_ndjson(data, 1, 0, &limits, |info, event| {
        assert!(info.start >= last_end && info.end > info.start && info.end <= data.len() as u64);
        last_end = info.end;
        assert!(!event.product_id.is_empty());
    });
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    for r in rejections {
        assert!(r.line >= 1 && r.line <= lines, "rejection of line {} in {lines} lines", r.line);
        assert!(!r.reason.is_empty());
    }
});
