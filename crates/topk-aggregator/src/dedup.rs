//! Dropping redelivered events: the ids of one partition's recent events.

/// The dedup window: the ids seen while the partition's newest event time advanced by
/// less than `window_ms` (rounded up to a whole [`DEDUP_SLICES`]th of it: an id is
/// remembered at least that long, at most a slice longer). Keying ids
/// by the newest event time *when they arrived* (not by their own, possibly late,
/// timestamp) also catches redeliveries of late or backfilled events; an id is kept from
/// the newest time of its whole log batch, so a retried batch is caught whole.
///
/// Compact and bounded: one 12-byte entry per id in one open-addressing table (13 bytes
/// with its control byte, ~20 at the table's mean load), against ~70 for a set of
/// 128-bit digests and a queue of arrivals. An entry is the id digest's low 64 bits and
/// the arrival's time slice; whole slices expire at once, swept out each time the newest
/// event time enters a new slice, so the table never holds more than a window (and a
/// slice) of ids. Two ids with the same 64 bits are taken for one: with `n` ids in the
/// window an event is wrongly dropped with probability `n / 2^64` — at 115k events/s
/// over 8 partitions and a 10-minute window (8.6M ids each), about once in 2×10^12
/// events, or once in 200 days at 10^10 events a day.
pub struct DedupWindow {
    slice_ms: i64,
    /// The window in whole slices, rounded up: an id expires once the newest event time has
    /// advanced by between `window_ms` and a slice more.
    slices: u32,
    table: hashbrown::HashTable<Seen>,
    /// The slice of the newest arrival, when the table was last swept.
    swept: Option<i64>,
    /// Ids have expired: the window has been full at least once.
    full: bool,
    /// `window_ms <= 0`: no id is remembered.
    off: bool,
}

/// Slices a dedup window is cut into: expiry is this fine.
pub const DEDUP_SLICES: i64 = 16;

/// One remembered id: 64 bits of its digest and the slice (mod 2^32) it arrived in.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Seen {
    digest: u64,
    slice: u32,
}

impl DedupWindow {
    pub fn new(window_ms: i64) -> Self {
        let slice_ms = (window_ms / DEDUP_SLICES).max(1);
        let slices = (window_ms.max(0) + slice_ms - 1).div_euclid(slice_ms).min(i64::from(u32::MAX / 2)) as u32;
        DedupWindow {
            slice_ms,
            slices,
            table: hashbrown::HashTable::new(),
            swept: None,
            full: false,
            off: window_ms <= 0,
        }
    }

    fn slice(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.slice_ms)
    }

    /// The earliest time an id is kept from (the newest event time of the batch it came
    /// in) still remembered once the newest event time is `max_ts_ms`; replaying the log
    /// from a point before every later batch rebuilds the window exactly.
    pub(crate) fn horizon(&self, max_ts_ms: i64) -> i64 {
        (self.slice(max_ts_ms) - i64::from(self.slices)).saturating_mul(self.slice_ms)
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes the table has allocated: an entry and a control byte per bucket (hashbrown
    /// keeps a power of two of buckets). Its `capacity()` would understate it: erased
    /// ids leave tombstones that use up room without freeing buckets.
    pub fn memory_bytes(&self) -> usize {
        self.table.allocation_size()
    }

    /// Records an event that arrived when the newest event time was `max_ts_ms`;
    /// `true` if its id was already seen within the window (of its latest copy).
    /// A window of 0 ms (or less) turns dedup off: nothing is remembered or dropped.
    pub fn is_duplicate(&mut self, digest: u128, max_ts_ms: i64) -> bool {
        self.is_duplicate_in_batch(digest, max_ts_ms, max_ts_ms)
    }

    /// [`Self::is_duplicate`] for an event of a log batch whose newest event time is
    /// `batch_max_ts_ms` (at least `max_ts_ms`): it is looked up as of `max_ts_ms`, and
    /// remembered until the window has passed `batch_max_ts_ms`. A retried batch then finds
    /// every id of its first copy, however much event time the batch spans, and a copy of
    /// an event in the next batch still finds it (an id kept only from the batch's newest
    /// time would have expired for it when batches span more than the window).
    pub fn is_duplicate_in_batch(&mut self, digest: u128, max_ts_ms: i64, batch_max_ts_ms: i64) -> bool {
        if self.off {
            return false;
        }
        let now = self.slice(max_ts_ms);
        if self.swept != Some(now) {
            self.sweep(now);
        }
        let key = digest as u64;
        let (slice, keep) = (now as u32, self.slice(batch_max_ts_ms.max(max_ts_ms)) as u32);
        let window = self.slices;
        match self.table.find_mut(key, |s| s.digest == key) {
            Some(seen) if live(slice, seen.slice, window) => {
                // Remembered from its latest copy: so the window holds, for each id, what
                // the batches since the oldest live one say, and a rebuild from there
                // (after a crash) decides as an uninterrupted run does. Kept from the
                // first copy only, an id seen at t, t + 6 and t + 12 minutes was dropped
                // the third time by a rebuild that began after t, and counted otherwise.
                if ahead(keep, seen.slice) {
                    seen.slice = keep;
                }
                true
            }
            Some(seen) => {
                seen.slice = keep;
                false
            }
            None => {
                self.table.insert_unique(key, Seen { digest: key, slice: keep }, |s| s.digest);
                false
            }
        }
    }

    /// Drops every id whose slice has left the window; gives memory back after a burst.
    ///
    /// Erasing leaves tombstones that use up the table's room to grow (`capacity() -
    /// len()`), and hashbrown doubles a table that runs out of room while its live ids
    /// fill more than half of it — so at a steady rate a table kept doubling long after
    /// its window was full (at 3,500 ids/s: 52 MiB until 60 minutes, 104 MiB by 90; the
    /// soak in BENCHMARKS.md). Instead, once the room left is under an eighth of the ids
    /// (more than a slice's arrivals), the live ids move into a fresh table sized for
    /// them and half as many again: its size follows the live ids alone, and the move,
    /// every several slices, costs about what the erasing does (dedup_bench).
    fn sweep(&mut self, now: i64) {
        let (slice, window) = (now as u32, self.slices);
        let before = self.table.len();
        self.table.retain(|s| live(slice, s.slice, window));
        let len = self.table.len();
        // The first ids to expire mean the window is full: its table is sized for it now,
        // rather than whenever its room first runs low (one to two windows later, when a
        // size class up could still be taken: the soak's late steps).
        let first_full = !self.full && len < before;
        self.full |= first_full;
        if first_full || self.table.capacity() - len < len / 8 + 64 {
            let mut fresh = hashbrown::HashTable::with_capacity(len + len / 2 + 64);
            for s in std::mem::take(&mut self.table) {
                fresh.insert_unique(s.digest, s, |s| s.digest);
            }
            self.table = fresh;
        } else if self.table.capacity() > 64 && len < self.table.capacity() / 4 {
            self.table.shrink_to(len * 2, |s| s.digest);
        }
        self.swept = Some(now);
    }
}

/// Whether an id kept from slice `kept` is still in a window of `window` slices at slice
/// `now` (both mod 2^32): not more than `window` behind, or ahead (kept for the newest
/// time of a batch still being read).
fn live(now: u32, kept: u32, window: u32) -> bool {
    ahead(kept, now) || now.wrapping_sub(kept) <= window
}

/// Whether slice `a` is after slice `b` (mod 2^32: less than half the circle ahead).
fn ahead(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < u32::MAX / 2
}
