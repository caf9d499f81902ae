//! The speed layer (the chapter's streaming pipeline, §17.6–17.7; DESIGN §5): fresh Top-K
//! for every open bucket within seconds, in fixed memory, each number with its error bound.
//! With `--architecture kappa` the same role counts exactly instead and fills the serving
//! tables itself, with no batch layer (§17.9).
//!
//! # Layout
//! - [`sketch`]: the pure data structures (count-min sketch, candidate sketch).
//! - [`Speed`]: the role's state — per open bucket, one sketch per flush-log partition (the
//!   first tier). Because the logs are partitioned by product, each product's whole count
//!   lives in one partition, so the union of the partitions' lists is the global list (the
//!   second tier) without the error of merging heaps.
//! - [`run`]: the loop: absorb flush batches, write every `write_interval`.
//!
//! # Exactly what was absorbed
//! Every write cycle stores the buckets' rows, their serialised sketches (Lambda) or exact
//! sums (Kappa) and the next flush-log offset of every partition in one transaction. A
//! restart loads the sketches and resumes from those offsets, so a flush batch is absorbed
//! once, however the process stops.

mod catalog;
mod per_bucket;
pub mod simulate;
pub mod sketch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use catalog::Catalog;
use foldhash::fast::RandomState;
use sketch::{Admission, CountMin, Row, SketchError, TopSketch};
pub use topk_core::accuracy::{score, Accuracy};
use topk_core::breakdown::{parse_key, Breakdowns, DimSet, DimValues, OTHER};
use topk_core::flush::{CorruptFlush, FlushBatch};
use topk_core::time::Bucket;
use topk_core::Shutdown;
use topk_log::{Log, LogError};
use topk_store::{ProductSum, SpeedRow, SpeedStore, SpeedWrite, StoreError};

/// Size of each open bucket's structures. The budget is per bucket and split over the
/// partitions: a partition holds about 1/P of the products and of the sales, so 1/P of
/// the counters keeps the same ε·N bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedSizing {
    /// Rows written per bucket to `speed_table`.
    pub top_n: usize,
    /// Candidates per bucket as a multiple of `top_n` (slack for uneven partitions).
    pub candidates_per_row: f64,
    /// Count-min ε (relative error) and δ (probability of exceeding it), per bucket.
    pub epsilon: f64,
    pub delta: f64,
}

impl Default for SpeedSizing {
    fn default() -> Self {
        SpeedSizing { top_n: topk_core::DEFAULT_TOP_K, candidates_per_row: 1.0, epsilon: 0.02, delta: 0.05 }
    }
}

impl SpeedSizing {
    /// One partition's count-min sketch.
    pub fn count_min(&self, partitions: u32) -> Result<CountMin, SketchError> {
        CountMin::shard_of(self.epsilon, self.delta, partitions)
    }

    pub fn capacity(&self, partitions: u32) -> usize {
        ((self.top_n as f64 * self.candidates_per_row / f64::from(partitions)).ceil() as usize)
            .clamp(1, sketch::MAX_CAPACITY)
    }
}

/// Lambda (approximate speed layer beside an exact batch layer) or Kappa (one exact stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Architecture {
    Lambda,
    Kappa,
}

impl TryFrom<String> for Architecture {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for Architecture {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lambda" => Ok(Architecture::Lambda),
            "kappa" => Ok(Architecture::Kappa),
            other => Err(format!("architecture must be lambda or kappa, got {other:?}")),
        }
    }
}

impl Architecture {
    /// The consumer name under which the role's offsets are stored.
    pub fn consumer(self) -> &'static str {
        match self {
            Architecture::Lambda => "speed",
            Architecture::Kappa => "kappa",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SpeedConfig {
    pub sizing: SpeedSizing,
    pub architecture: Architecture,
    /// How often open buckets are written.
    pub write_interval: Duration,
    /// A bucket is written a last time this long after the watermark passed its end, then
    /// dropped from memory.
    pub final_delay: Duration,
    /// The dimension sets that get their own lists.
    pub breakdowns: Breakdowns,
    /// The most memory the breakdowns' sketches may take, in bytes: past it, a value new
    /// to an open bucket is counted under its set's `(other)` there (the batch layer still
    /// counts it exactly once the bucket ends).
    pub breakdown_memory_bytes: usize,
}

impl Default for SpeedConfig {
    fn default() -> Self {
        SpeedConfig {
            sizing: SpeedSizing::default(),
            architecture: Architecture::Lambda,
            write_interval: Duration::from_millis(500),
            final_delay: Duration::from_secs(60),
            breakdowns: Breakdowns::default(),
            breakdown_memory_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpeedError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Flush(#[from] CorruptFlush),
    #[error("speed sketch: {0}")]
    Sketch(#[from] SketchError),
    #[error("saved sketch of {bucket} partition {partition} does not fit {partitions} partitions")]
    Partitions { bucket: Bucket, partition: u32, partitions: u32 },
}

/// What the role has written, per partition: the next flush-log offset covered in the store.
#[derive(Debug)]
pub struct SpeedProgress {
    pub written: Vec<AtomicU64>,
}

impl SpeedProgress {
    pub fn new(partitions: u32) -> Arc<Self> {
        Arc::new(SpeedProgress { written: (0..partitions).map(|_| AtomicU64::new(0)).collect() })
    }
}

enum Counts {
    /// Lambda: one sketch per partition.
    Sketches(Vec<TopSketch>),
    /// Kappa: exact (count, revenue) per product, and which changed since the last write.
    Exact { sums: HashMap<String, (i64, i64), RandomState>, changed: HashSet<String, RandomState> },
}

impl Counts {
    /// Bytes of its sketches (0 for Kappa's exact sums).
    fn memory_bytes(&self) -> usize {
        match self {
            Counts::Sketches(parts) => parts.iter().map(TopSketch::memory_bytes).sum(),
            Counts::Exact { .. } => 0,
        }
    }
}

struct Open {
    counts: Counts,
    dirty: bool,
    /// When the low watermark passed the bucket's end.
    ended_at: Option<Instant>,
}

/// The speed role's state over one store.
pub struct Speed<S: SpeedStore> {
    store: S,
    cfg: SpeedConfig,
    partitions: u32,
    /// Next flush-log offset per partition: everything before it is absorbed.
    next: Vec<u64>,
    /// Effective watermark per partition, from its latest flush batch.
    watermarks: Vec<i64>,
    /// Per open bucket and breakdown key (`""`: the global list).
    open: BTreeMap<(Bucket, String), Open>,
    /// Open breakdown (not global) buckets, and how many may be open at once: as many as
    /// fit `breakdown_memory_bytes` full (their sketches grow with their candidates, so
    /// most take less).
    breakdowns_open: usize,
    max_breakdowns_open: usize,
    /// The (bucket, set) pairs that have refused a value for want of memory: they open no
    /// new value after that, so a value either has its own sketches in a bucket from its
    /// first sale there, or counts under `(other)` there throughout.
    closed: HashSet<(Bucket, DimSet), RandomState>,
    catalog: Catalog,
}

impl<S: SpeedStore> Speed<S> {
    /// Resumes from the store: the offsets and (Lambda) the sketches of the last write.
    pub fn open(mut store: S, partitions: u32, cfg: SpeedConfig) -> Result<Speed<S>, SpeedError> {
        let mut next = vec![0; partitions as usize];
        for (p, offset) in store.consumer_offsets(cfg.architecture.consumer())? {
            if let Some(n) = next.get_mut(p as usize) {
                *n = offset;
            }
        }
        let mut speed = Speed {
            store,
            cfg,
            partitions,
            next,
            watermarks: vec![i64::MIN; partitions as usize],
            open: BTreeMap::new(),
            breakdowns_open: 0,
            max_breakdowns_open: 0,
            closed: HashSet::default(),
            catalog: Catalog::default(),
        };
        if speed.cfg.architecture == Architecture::Lambda {
            // Product ids of ~32 bytes.
            let bucket_bytes = speed.new_sketch()?.full_memory_bytes(32) * partitions as usize;
            speed.max_breakdowns_open = speed.cfg.breakdown_memory_bytes / bucket_bytes.max(1);
            for (bucket, key, partition, bytes) in speed.store.speed_sketches()? {
                if partition >= partitions {
                    return Err(SpeedError::Partitions { bucket, partition, partitions });
                }
                let sketch = TopSketch::decode(&bytes)?;
                // Sketches of (other) mean the set refused values in the bucket: it still does.
                if let Some((set, OTHER)) = parse_key(&key) {
                    speed.closed.insert((bucket, set));
                }
                let open = speed.open_bucket(bucket, key)?;
                if let Counts::Sketches(parts) = &mut open.counts {
                    parts[partition as usize] = sketch;
                }
            }
            // Until every partition has a watermark here, the estimates cover nothing for
            // sure: the batch layer waits for them (a bounded time) rather than scoring
            // what was written so far.
            speed.store.write_speed(speed.cfg.architecture.consumer(), &[], &[], Some(i64::MIN), &[])?;
        }
        Ok(speed)
    }

    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

    /// Next flush-log offset per partition.
    pub fn next_offsets(&self) -> &[u64] {
        &self.next
    }

    /// Bytes held by one open bucket's sketches of one breakdown (all partitions).
    pub fn bucket_memory(&self, bucket: Bucket, breakdown: &str) -> Option<usize> {
        match &self.open.get(&(bucket, breakdown.to_string()))?.counts {
            Counts::Sketches(parts) => Some(parts.iter().map(TopSketch::memory_bytes).sum()),
            Counts::Exact { .. } => None,
        }
    }

    /// Bytes held by every open sketch (Lambda): of the global lists, and of the
    /// breakdowns'.
    pub fn memory_bytes(&self) -> (usize, usize) {
        let of = |breakdowns: bool| {
            let open = self.open.iter().filter(move |((_, key), _)| key.is_empty() != breakdowns);
            open.map(|(_, o)| o.counts.memory_bytes()).sum()
        };
        (of(false), of(true))
    }

    /// The open buckets (of the global lists).
    pub fn open_buckets(&self) -> Vec<Bucket> {
        self.open.keys().filter(|(_, k)| k.is_empty()).map(|(b, _)| *b).collect()
    }

    /// The open breakdowns' keys of a bucket.
    pub fn open_breakdowns(&self, bucket: Bucket) -> Vec<String> {
        self.open.keys().filter(|(b, k)| *b == bucket && !k.is_empty()).map(|(_, k)| k.clone()).collect()
    }

    fn new_sketch(&self) -> Result<TopSketch, SketchError> {
        let s = &self.cfg.sizing;
        TopSketch::new(s.capacity(self.partitions), Admission::CountMin(s.count_min(self.partitions)?))
    }

    /// The key a breakdown's rows of `bucket` are counted under: its own while memory
    /// allows (or it is open already), else its set's `(other)`.
    fn admit(&mut self, bucket: Bucket, key: String) -> String {
        let Some((set, _)) = parse_key(&key) else { return key };
        if self.open.contains_key(&(bucket, key.clone())) {
            return key;
        }
        let full = self.breakdowns_open >= self.max_breakdowns_open;
        if !full && !self.closed.contains(&(bucket, set)) {
            return key;
        }
        self.closed.insert((bucket, set));
        let other = set.key(OTHER);
        if full && !self.open.contains_key(&(bucket, other.clone())) {
            tracing::warn!(%bucket, set = %set, "breakdown sketches at their memory cap: new values count under (other)");
        }
        other
    }

    fn open_bucket(&mut self, bucket: Bucket, key: String) -> Result<&mut Open, SpeedError> {
        let id = (bucket, key);
        if !self.open.contains_key(&id) {
            let counts = match self.cfg.architecture {
                Architecture::Lambda => {
                    Counts::Sketches((0..self.partitions).map(|_| self.new_sketch()).collect::<Result<_, _>>()?)
                }
                // The store holds everything absorbed before the saved offsets: continue from it.
                Architecture::Kappa => {
                    self.store.set_breakdown(&id.1);
                    let rows = self.store.bucket_rows(bucket);
                    self.store.set_breakdown("");
                    Counts::Exact {
                        sums: rows?.into_iter().map(|r| (r.product_id, (r.count, r.revenue_cents))).collect(),
                        changed: HashSet::default(),
                    }
                }
            };
            if !id.1.is_empty() {
                self.breakdowns_open += 1;
            }
            self.open.insert(id.clone(), Open { counts, dirty: false, ended_at: None });
        }
        Ok(self.open.get_mut(&id).expect("inserted above"))
    }

    fn low_watermark(&self) -> i64 {
        self.watermarks.iter().copied().min().unwrap_or(i64::MIN)
    }

    /// Absorbs the flush batch at `offset` of its partition; one already absorbed is skipped.
    pub fn absorb(&mut self, offset: u64, batch: &FlushBatch) -> Result<bool, SpeedError> {
        let p = batch.partition as usize;
        if offset < self.next[p] {
            return Ok(false);
        }
        self.watermarks[p] = batch.watermark_ms;
        self.catalog.absorb(batch);
        // The breakdown keys of the batch, each once (the global `""` first), and per
        // distinct combination of dimension values its keys: built once, not per row. Each
        // row is looked up once, for the number of its combination: a lookup hashes and
        // compares the row's dimension strings, and a second one per row was a tenth of
        // the role's time in a profile (BENCHMARKS.md, "The single-instance roles alone").
        let sets = &self.cfg.breakdowns.sets;
        let mut names: Vec<String> = vec![String::new()];
        let mut combinations: HashMap<&DimValues, u32, RandomState> = HashMap::default();
        let mut keys: Vec<Vec<u32>> = Vec::new();
        let combination_of: Vec<u32> = batch
            .rows
            .iter()
            .map(|r| {
                *combinations.entry(&r.dims).or_insert_with(|| {
                    let mut of_row = vec![0];
                    for set in sets {
                        let name = set.key(&set.value_of(&r.dims));
                        let i = names.iter().position(|n| *n == name).unwrap_or_else(|| {
                            names.push(name);
                            names.len() - 1
                        });
                        of_row.push(i as u32);
                    }
                    keys.push(of_row);
                    (keys.len() - 1) as u32
                })
            })
            .collect();
        let low = self.low_watermark();
        let high = self.watermarks.iter().copied().max().unwrap_or(i64::MIN);
        let architecture = self.cfg.architecture;
        let open = &self.open;
        let wanted = |bucket: Bucket, k: u32| {
            let global_open = || open.contains_key(&(bucket, String::new()));
            match architecture {
                // Lambda leaves a bucket that had ended before it opened here to the batch
                // layer; and a breakdown's bucket that has ended for some partition before it
                // opened here (history, a replay), too: it would only take the memory of the
                // values still selling.
                Architecture::Lambda if !global_open() && bucket.end_ms() <= low => false,
                Architecture::Lambda if k != 0 && bucket.end_ms() <= high => {
                    open.contains_key(&(bucket, names[k as usize].clone()))
                }
                _ => true,
            }
        };
        let keys_of = |i: usize| keys[combination_of[i] as usize].as_slice();
        let mut per_bucket = per_bucket::sum_per_bucket(&batch.rows, keys_of, wanted);
        // Biggest first, so that the values that get their own sketches when memory runs
        // short are the ones with the most volume.
        per_bucket.sort_by_cached_key(|((b, k), rows)| {
            (*k == 0, std::cmp::Reverse(rows.iter().map(|r| r.quantity.saturating_abs()).sum::<i64>()), *b)
        });
        for ((bucket, k), mut rows) in per_bucket {
            let breakdown = names[k as usize].clone();
            let breakdown = match self.cfg.architecture {
                Architecture::Lambda => self.admit(bucket, breakdown),
                Architecture::Kappa => breakdown,
            };
            let open = self.open_bucket(bucket, breakdown)?;
            open.dirty = true;
            match &mut open.counts {
                Counts::Sketches(parts) => parts[p].absorb(&mut rows),
                Counts::Exact { sums: exact, changed } => {
                    for Row { product_id: id, quantity: q, revenue_cents: r, .. } in rows {
                        let e = exact.entry(id.to_string()).or_default();
                        e.0 = e.0.saturating_add(q);
                        e.1 = e.1.saturating_add(r);
                        changed.insert(id.to_string());
                    }
                }
            }
        }
        self.next[p] = offset + 1;
        Ok(true)
    }

    /// Writes every changed bucket, and every ended bucket a last time once `final_delay`
    /// has passed, in one transaction with the offsets. Returns the buckets written.
    pub fn write(&mut self, now: Instant) -> Result<usize, SpeedError> {
        let low = self.low_watermark();
        let final_delay = self.cfg.final_delay;
        let mut finished = Vec::new();
        // The buckets to write, each with whether this is its last write.
        let mut due = Vec::new();
        for (id, open) in self.open.iter_mut() {
            if open.ended_at.is_none() && id.0.end_ms() <= low {
                open.ended_at = Some(now);
            }
            // A breakdown's bucket is written a last time as soon as it ends: its memory is
            // shared by every value (see `breakdown_memory_bytes`), and the batch layer's
            // exact answer follows.
            let delay = if id.1.is_empty() { final_delay } else { Duration::ZERO };
            let last = open.ended_at.is_some_and(|at| now >= at + delay);
            if last {
                finished.push(id.clone());
            }
            if open.dirty || last {
                due.push((id.clone(), last));
            }
        }
        let now_ms = topk_core::clock::now_ms();
        let top_n = self.cfg.sizing.top_n;
        let products = self.catalog.take();
        match self.cfg.architecture {
            Architecture::Lambda => {
                let mut writes = Vec::with_capacity(due.len());
                // `due` is in (bucket, breakdown) order: a bucket's breakdowns follow each
                // other, and share one look at whether it is exact.
                let mut exact_of: Option<(Bucket, bool)> = None;
                for (id, last) in &due {
                    let bucket = &id.0;
                    // Once the batch layer has the exact answer, approximate rows only mislead.
                    let exact = match exact_of {
                        Some((b, exact)) if b == *bucket => exact,
                        _ => self.store.has_exact(*bucket)?,
                    };
                    exact_of = Some((*bucket, exact));
                    let Counts::Sketches(parts) = &self.open[id].counts else { unreachable!("lambda holds sketches") };
                    let done = exact || *last;
                    if exact {
                        finished.push(id.clone());
                    }
                    let (rows, unlisted_bound) = if exact { (Vec::new(), 0) } else { merged_top(parts, top_n, now_ms) };
                    writes.push(SpeedWrite {
                        ended: self.open[id].ended_at.is_some(),
                        bucket: *bucket,
                        breakdown: id.1.clone(),
                        rows,
                        unlisted_bound,
                        total_count: parts.iter().map(TopSketch::total).sum(),
                        sketches: if done {
                            Vec::new()
                        } else {
                            parts.iter().enumerate().map(|(p, s)| (p as u32, s.encode())).collect()
                        },
                        finished: done,
                    });
                }
                let offsets = self.offsets();
                self.store.write_speed(self.cfg.architecture.consumer(), &writes, &offsets, Some(low), &products)?;
            }
            Architecture::Kappa => {
                let mut rows = Vec::with_capacity(due.len());
                for (id, _) in &due {
                    let open = self.open.get_mut(id).expect("due buckets are open");
                    let Counts::Exact { sums, changed } = &mut open.counts else {
                        unreachable!("kappa counts exactly")
                    };
                    let changed: Vec<ProductSum> = changed
                        .drain()
                        .map(|id| {
                            let (count, revenue_cents) = sums[&id];
                            ProductSum { product_id: id, count, revenue_cents }
                        })
                        .collect();
                    rows.push((id.0, id.1.clone(), changed));
                }
                let offsets = self.offsets();
                self.store.write_exact(self.cfg.architecture.consumer(), &rows, top_n, &offsets, &products)?;
            }
        }
        self.catalog.wrote(&products);
        for (id, _) in &due {
            if let Some(open) = self.open.get_mut(id) {
                open.dirty = false;
            }
        }
        for id in finished {
            if self.open.remove(&id).is_some() && !id.1.is_empty() {
                self.breakdowns_open -= 1;
            }
        }
        self.closed.retain(|(b, _)| self.open.contains_key(&(*b, String::new())));
        Ok(due.len())
    }

    fn offsets(&self) -> Vec<(u32, u64)> {
        self.next.iter().enumerate().map(|(p, &n)| (p as u32, n)).collect()
    }
}

/// The second tier: the partitions hold disjoint products, so their lists' union, ranked,
/// is the bucket's list.
pub fn merge_partitions(parts: &[TopSketch], n: usize) -> Vec<sketch::Estimate> {
    merge_with_bound(parts, n).0
}

/// The merged list, and the most any product left off it can have sold: no more than its
/// partition's floor if it is not a candidate, or its own upper bound if it was cut.
fn merge_with_bound(parts: &[TopSketch], n: usize) -> (Vec<sketch::Estimate>, i64) {
    let mut all: Vec<_> = parts.iter().flat_map(|s| s.top(s.len())).collect();
    all.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.product_id.cmp(&b.product_id)));
    let cut = all.iter().skip(n).map(|e| e.count.saturating_add(e.error));
    let bound = parts.iter().map(TopSketch::floor).chain(cut).max().unwrap_or(0).max(0);
    all.truncate(n);
    (all, bound)
}

fn merged_top(parts: &[TopSketch], n: usize, now_ms: i64) -> (Vec<SpeedRow>, i64) {
    let (top, bound) = merge_with_bound(parts, n);
    let rows = top
        .into_iter()
        .map(|e| SpeedRow {
            product_id: e.product_id,
            count: e.count,
            error: e.error,
            revenue_cents: e.revenue_cents,
            updated_ms: now_ms,
        })
        .collect();
    (rows, bound)
}

/// The role's loop: absorbs flush batches from every partition and writes every
/// `write_interval`; on shutdown, writes what it holds and returns.
pub fn run<S: SpeedStore>(
    flush_log: &dyn Log,
    mut speed: Speed<S>,
    progress: &SpeedProgress,
    shutdown: &Shutdown,
) -> Result<(), SpeedError> {
    let mut readers = Vec::with_capacity(speed.partitions as usize);
    for p in 0..speed.partitions {
        let from = speed.next[p as usize];
        progress.written[p as usize].store(from, Ordering::SeqCst);
        readers.push(flush_log.reader(p, from)?);
    }
    let mut last_write = Instant::now();
    let mut tick = 0;
    loop {
        let stopping = shutdown.is_triggered();
        let mut absorbed = 0;
        for reader in readers.iter_mut() {
            // Bounded per round, so writes stay regular during a long backlog.
            for _ in 0..64 {
                let Some(rec) = reader.next_batch()? else { break };
                // A superseded aggregator's flush (see topk_aggregator's "Fencing") is skipped.
                if let Some(batch) = FlushBatch::read(rec.base_offset, &rec.payload)? {
                    speed.absorb(rec.base_offset, &batch)?;
                }
                absorbed += 1;
            }
        }
        let now = Instant::now();
        if stopping || now >= last_write + speed.cfg.write_interval {
            let written = speed.write(now)?;
            last_write = now;
            let took = now.elapsed();
            for (p, &n) in speed.next.iter().enumerate() {
                progress.written[p].store(n, Ordering::SeqCst);
            }
            if written > 0 {
                tracing::debug!(buckets = written, took_ms = took.as_millis() as u64, "speed layer wrote");
            }
        }
        if stopping && absorbed == 0 {
            return Ok(());
        }
        if absorbed == 0 {
            // Until a flush is appended, the next write, or a stop wakes it.
            flush_log.wait_for_append(&mut tick, speed.cfg.write_interval.saturating_sub(last_write.elapsed()));
        }
    }
}

#[cfg(test)]
mod tests;
