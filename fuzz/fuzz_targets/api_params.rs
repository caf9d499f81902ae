//! What the API's parameters go through: bucket labels of every granularity, RFC 3339
//! instants, and a range's decomposition into whole buckets — never a panic; a parsed
//! bucket prints as a label that parses back to it; a decomposition covers its range.
#![no_main]
use libfuzzer_sys::fuzz_target;
use topk_core::time::{decompose, Bucket, Granularity};
use topk_core::timestamp::parse_rfc3339;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for g in Granularity::ALL {
        if let Ok(b) = Bucket::parse(g, text) {
            assert_eq!(Bucket::parse(g, &b.to_string()).ok(), Some(b), "{text:?}");
        }
    }
    let (a, b) = text.split_once(',').unwrap_or((text, text));
    if let (Ok(from), Ok(to)) = (parse_rfc3339(a), parse_rfc3339(b)) {
        if to > from && to - from <= 5 * 366 * 86_400_000 {
            if let Ok(buckets) = decompose(from, to) {
                let total: i64 = buckets.iter().map(|b| b.end_ms() - b.start_ms).sum();
                assert_eq!(total, to - from);
            }
        }
    }
});
