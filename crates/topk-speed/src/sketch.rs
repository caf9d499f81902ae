//! The speed layer's sketches: pure data structures, mergeable and serialisable, keyed by
//! [`topk_core::partition::sketch_key`] so that sketches built in different processes agree.
//!
//! - [`CountMin`]: a count-min sketch (Cormode & Muthukrishnan) with linear and
//!   conservative updates; width and depth follow from ε and δ.
//! - [`TopSketch`]: a fixed number of candidate products counted exactly from the moment
//!   they are admitted, with a bound for what they did before. Its [`Admission`] is either
//!   count-min (the chapter's "count-min sketch plus heap", fed batch by batch so that heavy
//!   products are admitted first and then counted exactly) or Space-Saving (Metwally et
//!   al.), kept as the yardstick.
//!
//! Every interval `[count - error, count + error]` a sketch reports holds the true net
//! count deterministically (no δ): the error is the part that was bounded rather than
//! counted. Refunds of a product that is not a candidate are not sketched (a conservative
//! count-min sketch only takes increments); the largest such refund per batch widens every
//! error instead.

mod count_min;

use std::cmp::Ordering;

pub use count_min::CountMin;
use topk_core::bytes::{ReadError, Reader};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    #[error("invalid sketch parameters: {0}")]
    Params(String),
    #[error("cannot merge sketches of different shapes: {0}")]
    Shape(String),
    #[error("damaged sketch bytes: {0}")]
    Decode(String),
}

impl From<ReadError> for SketchError {
    fn from(e: ReadError) -> Self {
        SketchError::Decode(e.to_string())
    }
}

/// How a [`TopSketch`] bounds what a product did while it was not a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Candidates are ranked and evicted by what they were counted exactly; a newcomer
    /// enters when its batch row beats the smallest candidate. What it may have had before
    /// is bounded by the smaller of a conservative-update count-min estimate and the floor
    /// (see [`TopSketch`]).
    CountMin(CountMin),
    /// Space-Saving (Metwally et al.): a newcomer always replaces the candidate with the
    /// smallest upper bound and inherits that bound as its error.
    SpaceSaving,
}

/// One product of a [`TopSketch`]: the true net count lies in `[count - error, count + error]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub product_id: String,
    pub count: i64,
    pub error: i64,
    /// Revenue counted while the product was a candidate.
    pub revenue_cents: i64,
}

/// One row of a batch given to [`TopSketch::absorb`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub product_id: &'a str,
    /// [`topk_core::partition::sketch_key`] of the product.
    pub key: u64,
    pub quantity: i64,
    pub revenue_cents: i64,
}

/// Slot indices; a sketch holds at most 32 767 candidates.
type Slot = u16;
const EMPTY: Slot = Slot::MAX;
pub const MAX_CAPACITY: usize = 32_767;

/// Cells of a new sketch's key index (it doubles as candidates come).
const MIN_INDEX: usize = 16;

/// A fixed number of candidate products, each counted exactly from its admission on, with
/// a deterministic bound for what it did before.
///
/// Input comes in batches — the aggregator's flushes, already summed per product — and
/// each batch is absorbed heaviest row first. With count-min admission, the bound rests on
/// the *floor*: the largest upper bound of any evicted candidate plus, per batch, the
/// largest row that was not absorbed. No product outside the candidates can have counted
/// more than the floor, so a newcomer's past is at most `min(floor, count-min estimate)`.
/// Because a heavy product's rows are large in every batch, it is admitted in its first
/// batch and counted exactly from there: the top of the list is exact in practice, and
/// the error says where it is not.
///
/// Stored column-wise with 16-bit links (a min-heap and an open-addressing index by key).
///
/// (This file stays whole, at ~580 lines: the heap, the key index and the floor keep one
/// invariant together — every reported interval holds the true count — and are read as
/// one.)
#[derive(Debug, Clone)]
pub struct TopSketch {
    admission: Admission,
    capacity: usize,
    keys: Vec<u64>,
    /// Counted exactly while a candidate.
    counts: Vec<i64>,
    /// Upper bound of what it did before its admission.
    errors: Vec<i64>,
    revenue: Vec<i64>,
    id_start: Vec<u32>,
    id_len: Vec<u8>,
    /// Every candidate's id, back to back; evicted ids stay until compaction.
    ids: String,
    /// Bytes of `ids` that belong to current candidates.
    live_id_bytes: usize,
    heap: Vec<Slot>,
    /// Slot → its position in `heap`.
    pos: Vec<Slot>,
    /// Open addressing by key, linear probing; `EMPTY` marks a free cell.
    index: Vec<Slot>,
    /// Largest upper bound of an evicted candidate.
    evicted: i64,
    /// Sum over batches of the largest row not absorbed.
    missed: i64,
    /// Sum over batches of the largest refund of a product that was not a candidate: how
    /// far a count may lie below its exactly counted part.
    missed_refunds: i64,
    /// Net quantity absorbed.
    total: i64,
}

impl TopSketch {
    pub fn new(capacity: usize, admission: Admission) -> Result<TopSketch, SketchError> {
        if !(1..=MAX_CAPACITY).contains(&capacity) {
            return Err(SketchError::Params(format!("capacity must be in 1..={MAX_CAPACITY}, got {capacity}")));
        }
        // Everything grows with the candidates, up to the capacity: a sketch of a bucket
        // or breakdown with few products stays small (the index doubles as it fills).
        Ok(TopSketch {
            admission,
            capacity,
            keys: Vec::new(),
            counts: Vec::new(),
            errors: Vec::new(),
            revenue: Vec::new(),
            id_start: Vec::new(),
            id_len: Vec::new(),
            ids: String::new(),
            live_id_bytes: 0,
            heap: Vec::new(),
            pos: Vec::new(),
            index: vec![EMPTY; (capacity * 2).next_power_of_two().min(MIN_INDEX)],
            evicted: 0,
            missed: 0,
            missed_refunds: 0,
            total: 0,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Net quantity absorbed.
    pub fn total(&self) -> i64 {
        self.total
    }

    /// Upper bound of the count of any product that is not a candidate.
    pub fn floor(&self) -> i64 {
        match &self.admission {
            Admission::CountMin(_) => self.evicted.saturating_add(self.missed),
            Admission::SpaceSaving if self.keys.len() == self.capacity => self.upper(self.heap[0] as usize),
            Admission::SpaceSaving => 0,
        }
    }

    /// Bytes this sketch holds, ids included.
    pub fn memory_bytes(&self) -> usize {
        let per_slot = 8 * 4 + 4 + 1 + 2 * std::mem::size_of::<Slot>();
        std::mem::size_of::<Self>()
            + self.keys.capacity() * per_slot
            + self.index.capacity() * std::mem::size_of::<Slot>()
            + self.ids.capacity()
            + match &self.admission {
                Admission::CountMin(c) => c.memory_bytes(),
                Admission::SpaceSaving => 0,
            }
    }

    /// The most bytes this sketch can come to, with candidate ids of `id_bytes` bytes on
    /// average: what [`TopSketch::memory_bytes`] reaches once it is full.
    pub fn full_memory_bytes(&self, id_bytes: usize) -> usize {
        let per_slot = 8 * 4 + 4 + 1 + 2 * std::mem::size_of::<Slot>();
        std::mem::size_of::<Self>()
            + self.capacity * (per_slot + id_bytes)
            + (self.capacity * 2).next_power_of_two() * std::mem::size_of::<Slot>()
            + match &self.admission {
                Admission::CountMin(c) => c.memory_bytes(),
                Admission::SpaceSaving => 0,
            }
    }

    /// Absorbs one batch in which each product appears at most once. Reorders `rows`
    /// (heaviest first), so heavy products are admitted before light ones.
    pub fn absorb(&mut self, rows: &mut [Row<'_>]) {
        rows.sort_unstable_by_key(|r| std::cmp::Reverse(r.quantity));
        let (mut missed, mut missed_refund) = (0i64, 0i64);
        for r in rows.iter() {
            self.total = self.total.saturating_add(r.quantity);
            if let Some(slot) = self.find(r.key) {
                if let (Admission::CountMin(cms), true) = (&mut self.admission, r.quantity > 0) {
                    // Keeps the sketch an upper bound should the product be evicted later.
                    cms.add_conservative(r.key, r.quantity as u64);
                }
                self.counts[slot] = self.counts[slot].saturating_add(r.quantity);
                self.revenue[slot] = self.revenue[slot].saturating_add(r.revenue_cents);
                self.resift(slot);
                continue;
            }
            if r.quantity <= 0 {
                missed_refund = missed_refund.max(r.quantity.saturating_neg());
                continue;
            }
            let full = self.keys.len() == self.capacity;
            // Live, not taken at the start of the batch: a candidate evicted earlier in this
            // batch may be this very product.
            let floor = self.floor();
            let past = match &mut self.admission {
                Admission::CountMin(cms) => {
                    let est = i64::try_from(cms.estimate(r.key)).unwrap_or(i64::MAX);
                    cms.add_conservative(r.key, r.quantity as u64);
                    est.min(floor)
                }
                Admission::SpaceSaving => floor,
            };
            if !full {
                self.push(r.product_id, r.key, r.quantity, past, r.revenue_cents);
                continue;
            }
            let min = self.heap[0] as usize;
            let admit = match self.admission {
                Admission::CountMin(_) => r.quantity > self.counts[min],
                Admission::SpaceSaving => true,
            };
            if admit {
                self.evicted = self.evicted.max(self.upper(min));
                self.replace(min, r.product_id, r.key, r.quantity, past, r.revenue_cents);
            } else {
                missed = missed.max(r.quantity);
            }
        }
        self.missed = self.missed.saturating_add(missed);
        self.missed_refunds = self.missed_refunds.saturating_add(missed_refund);
    }

    /// Absorbs a single row as a batch of its own.
    pub fn update(&mut self, product_id: &str, key: u64, quantity: i64, revenue_cents: i64) {
        self.absorb(&mut [Row { product_id, key, quantity, revenue_cents }]);
    }

    /// Upper bound of a candidate's count.
    fn upper(&self, s: usize) -> i64 {
        self.counts[s].saturating_add(self.errors[s])
    }

    /// What ranks candidates (and orders the heap): the exactly counted part with
    /// count-min admission, the upper bound with Space-Saving.
    fn rank_key(&self, s: usize) -> i64 {
        match self.admission {
            Admission::CountMin(_) => self.counts[s],
            Admission::SpaceSaving => self.upper(s),
        }
    }

    /// The `n` best candidates, best first (ties by product id).
    pub fn top(&self, n: usize) -> Vec<Estimate> {
        let mut slots: Vec<usize> = (0..self.keys.len()).collect();
        let cmp =
            |&a: &usize, &b: &usize| self.rank_key(b).cmp(&self.rank_key(a)).then_with(|| self.id(a).cmp(self.id(b)));
        if n < slots.len() {
            slots.select_nth_unstable_by(n, cmp);
            slots.truncate(n);
        }
        slots.sort_unstable_by(cmp);
        slots.into_iter().map(|s| self.estimate_at(s)).collect()
    }

    /// The candidate's estimate, if `product_id` is one.
    pub fn get(&self, product_id: &str, key: u64) -> Option<Estimate> {
        self.find(key).filter(|&s| self.id(s) == product_id).map(|s| self.estimate_at(s))
    }

    /// The interval `[count - error, count + error]` holds `[lower, upper]`: the exact part
    /// minus missed refunds, and the exact part plus the bound on its past.
    fn estimate_at(&self, s: usize) -> Estimate {
        let (count, error) = match self.admission {
            Admission::CountMin(_) => (self.counts[s], self.errors[s].max(self.missed_refunds)),
            Admission::SpaceSaving => (self.upper(s), self.errors[s].max(self.missed_refunds)),
        };
        Estimate { product_id: self.id(s).to_string(), count, error, revenue_cents: self.revenue[s] }
    }

    /// An upper bound of what a product that is not a candidate counted.
    fn outside_bound(&self, key: u64) -> i64 {
        match &self.admission {
            Admission::CountMin(cms) => i64::try_from(cms.estimate(key)).unwrap_or(i64::MAX).min(self.floor()),
            Admission::SpaceSaving => self.floor(),
        }
    }

    /// Merges `other` into `self`: the result bounds every product of the union of both
    /// streams. A product that is a candidate in only one of them is charged the other's
    /// bound for outsiders as error.
    pub fn merge(&mut self, other: &TopSketch) -> Result<(), SketchError> {
        let mut all: Vec<(u64, String, i64, i64, i64)> = Vec::with_capacity(self.len() + other.len());
        for s in 0..self.len() {
            let key = self.keys[s];
            let (count, error, revenue) = match other.find(key) {
                Some(o) => (other.counts[o], other.errors[o], other.revenue[o]),
                None => (0, other.outside_bound(key), 0),
            };
            all.push((
                key,
                self.id(s).to_string(),
                self.counts[s].saturating_add(count),
                self.errors[s].saturating_add(error),
                self.revenue[s].saturating_add(revenue),
            ));
        }
        for o in 0..other.len() {
            let key = other.keys[o];
            if self.find(key).is_none() {
                let error = other.errors[o].saturating_add(self.outside_bound(key));
                all.push((key, other.id(o).to_string(), other.counts[o], error, other.revenue[o]));
            }
        }
        match (&mut self.admission, &other.admission) {
            (Admission::CountMin(a), Admission::CountMin(b)) => a.merge(b)?,
            (Admission::SpaceSaving, Admission::SpaceSaving) => {}
            _ => return Err(SketchError::Shape("count-min and space-saving admission".into())),
        }
        let admission = std::mem::replace(&mut self.admission, Admission::SpaceSaving);
        let rank = |e: &(u64, String, i64, i64, i64)| match admission {
            Admission::CountMin(_) => e.2,
            Admission::SpaceSaving => e.2.saturating_add(e.3),
        };
        all.sort_unstable_by(|a, b| rank(b).cmp(&rank(a)).then_with(|| a.1.cmp(&b.1)));
        let dropped = all.iter().skip(self.capacity).map(|e| e.2.saturating_add(e.3)).max().unwrap_or(0);
        all.truncate(self.capacity);
        let mut merged = TopSketch::new(self.capacity, admission)?;
        merged.evicted = self.evicted.saturating_add(other.evicted).max(dropped);
        merged.missed = self.missed.saturating_add(other.missed);
        merged.missed_refunds = self.missed_refunds.saturating_add(other.missed_refunds);
        merged.total = self.total.saturating_add(other.total);
        for (key, id, count, error, revenue) in all {
            merged.push(&id, key, count, error, revenue);
        }
        *self = merged;
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.len() * 48 + self.ids.len());
        out.push(1); // version
        match &self.admission {
            Admission::CountMin(cms) => {
                out.push(1);
                cms.encode_into(&mut out);
            }
            Admission::SpaceSaving => out.push(2),
        }
        out.extend_from_slice(&(self.capacity as u32).to_le_bytes());
        for v in [self.evicted, self.missed, self.missed_refunds, self.total] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for s in 0..self.len() {
            out.extend_from_slice(&self.keys[s].to_le_bytes());
            for v in [self.counts[s], self.errors[s], self.revenue[s]] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            let id = self.id(s);
            out.push(id.len() as u8);
            out.extend_from_slice(id.as_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<TopSketch, SketchError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != 1 {
            return Err(SketchError::Decode("unknown top-sketch version".into()));
        }
        let admission = match r.u8()? {
            1 => Admission::CountMin(CountMin::decode_from(&mut r)?),
            2 => Admission::SpaceSaving,
            k => return Err(SketchError::Decode(format!("unknown admission kind {k}"))),
        };
        let capacity = r.u32()? as usize;
        let mut sketch = TopSketch::new(capacity, admission).map_err(|e| SketchError::Decode(e.to_string()))?;
        sketch.evicted = r.u64()? as i64;
        sketch.missed = r.u64()? as i64;
        sketch.missed_refunds = r.u64()? as i64;
        sketch.total = r.u64()? as i64;
        let n = r.u32()? as usize;
        if n > capacity {
            return Err(SketchError::Decode(format!("{n} candidates in a sketch of capacity {capacity}")));
        }
        for _ in 0..n {
            let key = r.u64()?;
            let (count, error, revenue) = (r.u64()? as i64, r.u64()? as i64, r.u64()? as i64);
            let len = r.u8()? as usize;
            let id = r.str(len)?;
            if sketch.find(key).is_some() {
                return Err(SketchError::Decode(format!("candidate {id:?} twice")));
            }
            sketch.push(id, key, count, error, revenue);
        }
        r.end()?;
        Ok(sketch)
    }

    fn id(&self, slot: usize) -> &str {
        let start = self.id_start[slot] as usize;
        &self.ids[start..start + self.id_len[slot] as usize]
    }

    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (self.index.len() - 1)
    }

    fn find(&self, key: u64) -> Option<usize> {
        let mask = self.index.len() - 1;
        let mut i = self.home(key);
        loop {
            let s = self.index[i];
            if s == EMPTY {
                return None;
            }
            if self.keys[s as usize] == key {
                return Some(s as usize);
            }
            i = (i + 1) & mask;
        }
    }

    fn index_insert(&mut self, key: u64, slot: usize) {
        let mask = self.index.len() - 1;
        let mut i = self.home(key);
        while self.index[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.index[i] = slot as Slot;
    }

    /// Backward-shift deletion keeps every probe chain unbroken without tombstones.
    fn index_remove(&mut self, key: u64) {
        let mask = self.index.len() - 1;
        let mut i = self.home(key);
        while self.keys[self.index[i] as usize] != key {
            i = (i + 1) & mask;
        }
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.index[j] == EMPTY {
                break;
            }
            let home = self.home(self.keys[self.index[j] as usize]);
            // The entry at j may move to i unless its home lies cyclically in (i, j].
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                self.index[i] = self.index[j];
                i = j;
            }
        }
        self.index[i] = EMPTY;
    }

    fn store_id(&mut self, slot: usize, product_id: &str) {
        self.live_id_bytes -= self.id_len[slot] as usize;
        self.id_len[slot] = 0;
        // Garbage is bounded by a quarter of the live bytes, so ids cost about 1.25× their size.
        let needed = self.ids.len() + product_id.len();
        if needed > self.live_id_bytes + (self.live_id_bytes / 4).max(64) || needed > self.ids.capacity() {
            self.compact_ids();
        }
        // Product ids are at most 128 bytes (validated at ingest), so they fit a u8 length.
        debug_assert!(product_id.len() <= u8::MAX as usize);
        self.id_start[slot] = self.ids.len() as u32;
        self.id_len[slot] = product_id.len() as u8;
        self.live_id_bytes += product_id.len();
        self.ids.push_str(product_id);
    }

    fn compact_ids(&mut self) {
        // Exact-size reservation: a doubling String would hold up to twice the bytes.
        let mut ids = String::new();
        ids.reserve_exact(self.live_id_bytes + self.live_id_bytes / 4 + 128);
        for s in 0..self.keys.len() {
            let start = ids.len() as u32;
            ids.push_str(self.id(s));
            self.id_start[s] = start;
        }
        self.ids = ids;
    }

    fn push(&mut self, product_id: &str, key: u64, count: i64, error: i64, revenue: i64) {
        let slot = self.keys.len();
        self.keys.push(key);
        self.counts.push(count);
        self.errors.push(error);
        self.revenue.push(revenue);
        self.id_start.push(0);
        self.id_len.push(0);
        self.store_id(slot, product_id);
        if 2 * self.keys.len() > self.index.len() {
            self.grow_index(slot);
        }
        self.index_insert(key, slot);
        self.heap.push(slot as Slot);
        self.pos.push((self.heap.len() - 1) as Slot);
        self.sift_up(self.heap.len() - 1);
    }

    /// Doubles the index, and indexes the candidates in slots `..slots` again.
    fn grow_index(&mut self, slots: usize) {
        self.index = vec![EMPTY; self.index.len() * 2];
        for s in 0..slots {
            self.index_insert(self.keys[s], s);
        }
    }

    fn replace(&mut self, slot: usize, product_id: &str, key: u64, count: i64, error: i64, revenue: i64) {
        self.index_remove(self.keys[slot]);
        self.keys[slot] = key;
        self.counts[slot] = count;
        self.errors[slot] = error;
        self.revenue[slot] = revenue;
        self.store_id(slot, product_id);
        self.index_insert(key, slot);
        self.resift(slot);
    }

    /// Restores heap order after the slot's count changed either way.
    fn resift(&mut self, slot: usize) {
        let i = self.sift_up(self.pos[slot] as usize);
        self.sift_down(i);
    }

    fn less(&self, a: Slot, b: Slot) -> bool {
        let (a, b) = (a as usize, b as usize);
        match self.rank_key(a).cmp(&self.rank_key(b)) {
            Ordering::Equal => self.keys[a] < self.keys[b],
            o => o == Ordering::Less,
        }
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        self.pos[self.heap[i] as usize] = i as Slot;
        self.pos[self.heap[j] as usize] = j as Slot;
    }

    fn sift_up(&mut self, mut i: usize) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.less(self.heap[i], self.heap[parent]) {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
        i
    }

    fn sift_down(&mut self, mut i: usize) -> usize {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < self.heap.len() && self.less(self.heap[l], self.heap[m]) {
                m = l;
            }
            if r < self.heap.len() && self.less(self.heap[r], self.heap[m]) {
                m = r;
            }
            if m == i {
                return i;
            }
            self.swap(i, m);
            i = m;
        }
    }
}

#[cfg(test)]
mod tests;
