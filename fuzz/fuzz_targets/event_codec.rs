//! The log's event codec: decoding any bytes never panics (a record is an event or an
//! error); and what the NDJSON parser accepts encodes and decodes to the same event.
#![no_main]
use libfuzzer_sys::fuzz_target;
use topk_core::codec::{encode, Decoder};
use topk_core::event::{parse_ndjson, Limits};

fuzz_target!(|data: &[u8]| {
    for record in Decoder::new(data) {
        if record.is_err() {
            break;
        }
    }
    let limits = Limits::at(1_790_000_000_000);
    let mut events = Vec::new();
    let _ = parse_ndjson(data, 1, 0, &limits, |_, e| events.push(e));
    let mut buf = Vec::new();
    for e in &events {
        encode(e, &mut buf);
    }
    let decoded: Vec<_> = Decoder::new(&buf).collect::<Result<_, _>>().expect("what was encoded decodes");
    assert_eq!(decoded.len(), events.len());
    for (d, e) in decoded.iter().zip(&events) {
        assert_eq!(d.product_id, e.product_id.as_bytes());
        assert_eq!(d.quantity, e.quantity);
        assert_eq!(d.ts_ms, e.ts_ms);
        assert_eq!(d.bucket_ts_ms, e.bucket_ts_ms());
    }
});
