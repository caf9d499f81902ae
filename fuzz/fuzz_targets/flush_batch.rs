//! Flush-batch decoding on any bytes: an error or a batch, never a panic; a decoded batch
//! encodes back to bytes that decode to the same batch.
#![no_main]
use libfuzzer_sys::fuzz_target;
use topk_core::flush::FlushBatch;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = FlushBatch::decode(data) {
        let again = FlushBatch::decode(&batch.encode()).expect("an encoded batch decodes");
        assert_eq!(again.encode(), batch.encode());
    }
    let _ = FlushBatch::read(7, data);
});
