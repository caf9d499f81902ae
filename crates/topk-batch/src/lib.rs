//! The batch layer (the chapter's §17.5): exact Top-K for every hour, day, ISO week,
//! month and year, computed by re-runnable tasks into the SQL store.
//!
//! # The DAG
//! Each bucket runs four tasks, each recorded in `pipeline_runs`:
//! 1. `check`: the bucket's hours are complete and nothing below it is still pending;
//! 2. `rollup`: hour from the Parquet archive, day from its 24 hours, week from its 7
//!    days, month from its days, year from its 12 months — summed in memory (sums of
//!    sums are exact);
//! 3. `clean_speed`: score the bucket's approximate `speed_table` rows against the exact
//!    ones into `accuracy`, then delete them. A bucket otherwise ready waits (at most
//!    `score_wait`, and only while the speed layer writes) until the speed layer's
//!    written estimates cover it (`speed_watermark`); estimates that do not are deleted
//!    unscored: their score would measure how far behind they were;
//! 4. `top_lists`: its top lists by quantity and by revenue, and its totals, from the
//!    sums in memory.
//!
//! A run's results — rows, lists, totals, score, the runs' records and the clearing of
//! its pending mark — are committed in one transaction ([`BatchStore::commit_bucket`]):
//! after a crash the run has happened entirely or not at all, and is simply run again.
//!
//! # Where a rollup's inputs come from
//! Within one scheduler pass, a bucket's sums are kept in memory for the buckets above it
//! that can run in the same pass ([`Partial`]), so a replay sums each day from its hours,
//! and each week, month and year from its days or months, without reading them back.
//! Children computed in an earlier pass (or re-run in this one) are read from the store,
//! except hours past retention: their rows are not kept (they would only be deleted), so
//! a day past retention reads those hours from the archive.
//!
//! # Breakdowns
//! A bucket's run sums the global rows and, beside them, the rows of every value of each
//! configured breakdown set (`country=DE`, …), all committed in the same transaction, so
//! a value's lists are exactly as exact as the global ones. An hour maps the values its
//! archive rows carry through the sets' admitted values (`Admission`: the first
//! `breakdown_max_values` of a set, for good; later ones count under `(other)`); the
//! buckets above only merge their children's sums per value. When the configured sets
//! change, every hour runs again (`Batch::prepare`).
//!
//! # What runs when
//! Work is a durable set of pending buckets (`batch_pending`). An hour becomes pending
//! when it is complete and its archive version (which grows with every file written for
//! it) differs from the version it was last rolled up from; the hour's rollup marks its
//! day, week, month and year pending in the same transaction. So late events, refunds and
//! replays re-run exactly the buckets they touch, and a crash at any point leaves the
//! work pending rather than lost. Pending buckets run in the order they end, finest
//! first among those ending together (a day right after its last hour), each once
//! nothing finer below it is pending. While a bucket commits, the next ready hour is
//! summed from the archive on a second thread (`Batch::commit_while_summing`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use topk_archive::{ArchiveError, ArchiveState, Root};
use topk_core::breakdown::{Breakdowns, DimSet, NONE, OTHER};
use topk_core::clock::now_ms;
use topk_core::time::{Bucket, Granularity};
use topk_core::Shutdown;
use topk_store::{BatchStore, BucketRun, By, ProductSum, Rows, RunStatus, Slice, SpeedWatermark, StoreError, TaskRun};

pub const TASKS: [&str; 4] = ["check", "rollup", "clean_speed", "top_lists"];

#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Length of the top lists kept per bucket.
    pub top_k: usize,
    /// Hourly rows older than this are deleted from `batch_table` (days and above stay).
    pub hour_retention: Option<Duration>,
    /// Longest wait before retrying a failed bucket.
    pub max_backoff: Duration,
    /// Time between two passes of the scheduler loop ([`run`]).
    pub pass_interval: Duration,
    /// The dimension sets that get their own rows and lists.
    pub breakdowns: Breakdowns,
    /// Longest wait, once a bucket is otherwise ready, for the speed layer's written
    /// estimates to cover it (`speed_watermark`), while the speed layer is writing: its
    /// score measures the sketches, not how far behind they were. Past it the bucket is
    /// committed unscored.
    pub score_wait: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            top_k: topk_core::DEFAULT_TOP_K,
            hour_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            max_backoff: Duration::from_secs(300),
            pass_interval: Duration::from_secs(2),
            breakdowns: Breakdowns::default(),
            score_wait: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{bucket} is not ready: {reason}")]
    NotReady { bucket: Bucket, reason: String },
    #[error("task {task} of {bucket} failed: {reason}")]
    Task { task: &'static str, bucket: Bucket, reason: String },
}

/// What one pass of the scheduler did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub ran: Vec<Bucket>,
    pub failed: Vec<(Bucket, String)>,
    /// Pending buckets left waiting for their inputs.
    pub waiting: usize,
}

/// The outcome of one bucket of [`Batch::run_range`]: rows written, or why it failed or
/// is not ready.
pub type RangeResult = (Bucket, Result<u64, BatchError>);

/// The batch layer over one store and one archive.
pub struct Batch<S: BatchStore> {
    store: S,
    archive: Root,
    cfg: BatchConfig,
    /// Per failing bucket: consecutive failures and when to try again.
    backoff: HashMap<Bucket, (u32, Instant), RandomState>,
    /// The values each breakdown set has admitted; loaded from the store by [`Batch::prepare`].
    admission: Option<Admission>,
    /// Per ready bucket whose estimates the speed layer has not written whole yet: since
    /// when it waits for them (at most `score_wait`).
    speed_waits: HashMap<Bucket, Instant, RandomState>,
}

impl<S: BatchStore> Batch<S> {
    pub fn new(store: S, archive: Root, cfg: BatchConfig) -> Self {
        Batch { store, archive, cfg, backoff: HashMap::default(), admission: None, speed_waits: HashMap::default() }
    }

    /// Loads the admitted breakdown values, once; the first time, also compares the
    /// configured breakdown sets with those the stored rows were computed for. If they
    /// differ, every hour is marked to run again (and with it every bucket above), so the
    /// new sets are filled from the archive and dropped ones disappear.
    fn prepare(&mut self) -> Result<(), BatchError> {
        if self.admission.is_some() {
            return Ok(());
        }
        let mut names = self.cfg.breakdowns.names();
        names.sort();
        let recorded = self.store.breakdown_sets()?;
        if recorded.as_ref() != Some(&names) {
            let recompute = recorded.clone().unwrap_or_default() != names;
            if recompute {
                tracing::info!(
                    from = ?recorded.unwrap_or_default(),
                    to = ?names,
                    "breakdowns changed: every archived hour, and every bucket above it, runs again"
                );
            }
            self.store.set_breakdown_sets(&names, recompute)?;
        }
        self.admission = Some(Admission::load(&mut self.store, self.cfg.breakdowns.max_values)?);
        Ok(())
    }

    /// Marks runs left `running` by a stopped process as failed. Only the process that
    /// owns the data directory may call this: another's runs may be in progress.
    pub fn recover_interrupted(&mut self) -> Result<u64, BatchError> {
        let interrupted = self.store.fail_interrupted_runs(now_ms())?;
        if interrupted > 0 {
            tracing::warn!(interrupted, "marked runs of a stopped process as failed; their buckets stay pending");
        }
        Ok(interrupted)
    }

    pub fn store(&mut self) -> &mut S {
        &mut self.store
    }

    /// Marks pending every complete hour whose archive data changed since its rollup.
    pub fn discover(&mut self, state: &ArchiveState) -> Result<usize, BatchError> {
        let mut stale = Vec::new();
        for (hour_ms, hour) in state.hours_with_data() {
            if !hour.complete {
                continue;
            }
            let bucket = Bucket::containing(Granularity::Hour, hour_ms);
            if self.store.hour_version(bucket)? != Some(hour.files) {
                stale.push(bucket);
            }
        }
        stale.sort_unstable();
        stale.dedup();
        self.store.add_pending(&stale)?;
        Ok(stale.len())
    }

    fn retention_cutoff(&self) -> i64 {
        // Floored to a day, so retention never splits a day's hours.
        self.cfg.hour_retention.map_or(i64::MIN, |r| {
            let cutoff = now_ms().saturating_sub(i64::try_from(r.as_millis()).unwrap_or(i64::MAX));
            Bucket::containing(Granularity::Day, cutoff).start_ms
        })
    }

    /// Whether the bucket's rows are kept in the store: all but those of an hour past
    /// retention (they would only be deleted; its day reads it from the archive).
    fn kept(&self, bucket: Bucket) -> bool {
        bucket.granularity != Granularity::Hour || bucket.start_ms >= self.retention_cutoff()
    }

    /// `Ok` if the bucket's inputs are final, else why not.
    pub fn check(&self, state: &ArchiveState, pending: &[Bucket], bucket: Bucket) -> Result<(), String> {
        ended_and_complete(state, bucket)?;
        if let Some(p) = pending.iter().find(|p| {
            p.granularity.feeds(bucket.granularity) && p.start_ms < bucket.end_ms() && p.end_ms() > bucket.start_ms
        }) {
            return Err(format!("its input {p} is still pending"));
        }
        Ok(())
    }

    /// Whether a ready bucket waits for the speed layer: its written estimates do not
    /// reach the bucket's end yet, the speed layer wrote within `score_wait`, and the
    /// bucket has not waited `score_wait` already.
    fn waits_for_speed(&mut self, bucket: Bucket, speed: Option<SpeedWatermark>) -> bool {
        let wait = self.cfg.score_wait;
        let writing = speed.is_some_and(|w| {
            now_ms().saturating_sub(w.updated_ms) <= i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
        });
        if covers(speed, bucket) || !writing {
            return false;
        }
        let since = *self.speed_waits.entry(bucket).or_insert_with(Instant::now);
        since.elapsed() < wait
    }

    /// Runs the whole DAG of one bucket and clears it from the pending set (after
    /// [`Self::prepare`], which its caller runs).
    fn run_bucket(&mut self, state: &ArchiveState, bucket: Bucket) -> Result<u64, BatchError> {
        let pending = self.store.pending()?;
        let speed = self.store.speed_watermark()?;
        self.run_bucket_with(state, &pending, speed, bucket, &mut Partials::default(), &mut None, None)
    }

    /// [`Batch::run_bucket`] given the pending buckets and how far the speed layer's
    /// estimates reach, taking the bucket's sums so far from `partials` and adding its own
    /// to those of the buckets above it. An hour summed ahead (`ahead`) is taken from
    /// there; while the bucket commits, `next_hour` is summed into `ahead` on another
    /// thread.
    #[allow(clippy::too_many_arguments)]
    fn run_bucket_with(
        &mut self,
        state: &ArchiveState,
        pending: &[Bucket],
        speed_watermark: Option<SpeedWatermark>,
        bucket: Bucket,
        partials: &mut Partials,
        ahead: &mut Option<Ahead>,
        next_hour: Option<Bucket>,
    ) -> Result<u64, BatchError> {
        let generation = self.store.pending_generation(bucket)?;
        let mut runs = Runs::new(&mut self.store, bucket)?;
        if let Err(reason) = self.check(state, pending, bucket) {
            runs.fail(&mut self.store, "check", reason.clone());
            return Err(BatchError::NotReady { bucket, reason });
        }
        runs.ok("check", 0);
        let slices = match self.sum(bucket, partials.remove(&bucket), ahead) {
            Ok(slices) => slices,
            Err(e) => return Err(runs.fail(&mut self.store, "rollup", e.to_string())),
        };
        let rows = global(&slices);
        runs.ok("rollup", slices.iter().map(|(_, r)| r.len() as i64).sum());
        let speed = match self.store.speed_rows(bucket) {
            Ok(speed) => speed,
            Err(e) => return Err(runs.fail(&mut self.store, "clean_speed", e.to_string())),
        };
        // Estimates that do not cover the bucket yet (the speed layer is behind, or
        // stopped) would score how far behind they were, not the sketches.
        let covered = covers(speed_watermark, bucket);
        if !covered && !speed.is_empty() {
            tracing::warn!(%bucket, "the speed layer's estimates do not cover the bucket: not scored");
        }
        let accuracy = (covered && !speed.is_empty()).then(|| score(bucket, rows, &speed));
        runs.ok("clean_speed", speed.len() as i64);
        let keep = self.kept(bucket);
        let k = self.cfg.top_k;
        let list_rows: usize = if keep { slices.iter().map(|(_, r)| By::ALL.len() * r.len().min(k)).sum() } else { 0 };
        runs.ok("top_lists", list_rows as i64);
        let hour = bucket.granularity == Granularity::Hour;
        let ancestors = if hour { bucket.ancestors() } else { Vec::new() };
        let admitted = self.admission.as_mut().map(Admission::take_new).unwrap_or_default();
        let run = BucketRun {
            bucket,
            rows: keep.then_some(&slices[..]),
            admitted: &admitted,
            top_k: k,
            hour_version: hour.then(|| state.hours.get(&bucket.to_string()).map_or(0, |h| h.files)),
            mark_pending: &ancestors,
            accuracy: accuracy.as_ref(),
            runs: &runs.records(),
            generation,
            now_ms: now_ms(),
        };
        if let Err(e) = self.commit_while_summing(&run, next_hour, ahead) {
            // What it admitted was not recorded: the next run reloads the admitted values,
            // and sums again an hour summed meanwhile with them.
            self.admission = None;
            *ahead = None;
            runs.done.truncate(1);
            return Err(runs.fail(&mut self.store, "rollup", e.to_string()));
        }
        feed_parents(state, bucket, &slices, partials);
        self.speed_waits.remove(&bucket);
        let r = run.runs;
        tracing::debug!(
            %bucket,
            rows = rows.len(),
            breakdowns = slices.len() - 1,
            sum_ms = r[1].finished_ms - r[1].started_ms,
            score_ms = r[2].finished_ms - r[2].started_ms,
            commit_ms = now_ms() - r[3].finished_ms,
            "bucket done"
        );
        Ok(rows.len() as u64)
    }

    /// Commits a bucket's run; meanwhile sums `next_hour` from the archive on another
    /// thread, into `ahead`. The commit is mostly the store's work (SQLite's B-tree
    /// inserts, or PostgreSQL's, in its own process), and an hour's sum the archive's
    /// decoding: on two cores they overlap (BENCHMARKS.md, "An hour summed while the one
    /// before commits").
    fn commit_while_summing(
        &mut self,
        run: &BucketRun<'_>,
        next_hour: Option<Bucket>,
        ahead: &mut Option<Ahead>,
    ) -> Result<u64, StoreError> {
        let Some(hour) = next_hour.filter(|_| ahead.is_none()) else {
            return self.store.commit_bucket(run);
        };
        let mut admission = self.admission.take().expect("prepared before a run");
        let (archive, breakdowns, store) = (&self.archive, &self.cfg.breakdowns, &mut self.store);
        let committed = std::thread::scope(|s| {
            let summing = std::thread::Builder::new()
                .name("batch-sum-ahead".into())
                .spawn_scoped(s, || hour_from_archive(archive, hour.start_ms, breakdowns, &mut admission));
            let committed = store.commit_bucket(run);
            match summing {
                Ok(summing) => {
                    let slices = summing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    *ahead = Some(Ahead { hour, slices });
                }
                Err(e) => tracing::debug!(error = %e, "no thread to sum the next hour ahead"),
            }
            committed
        });
        self.admission = Some(admission);
        committed
    }

    /// The bucket's exact sums per breakdown and product: the global ones first (under
    /// `""`), then each breakdown's, each in product-id order. An hour summed ahead is
    /// taken from `ahead`.
    fn sum(
        &mut self,
        bucket: Bucket,
        partial: Option<Partial>,
        ahead: &mut Option<Ahead>,
    ) -> Result<Vec<Slice>, BatchError> {
        self.prepare()?;
        if let Some(summed) = ahead.take_if(|a| a.hour == bucket) {
            return summed.slices;
        }
        if bucket.granularity == Granularity::Hour {
            let admission = self.admission.as_mut().expect("prepared");
            return hour_from_archive(&self.archive, bucket.start_ms, &self.cfg.breakdowns, admission);
        }
        let mut partial = partial.unwrap_or_default();
        for child in bucket.children() {
            if partial.children.contains(&child) {
                continue;
            }
            let slices = if self.kept(child) {
                self.store.bucket_slices(child)?
            } else {
                let admission = self.admission.as_mut().expect("prepared");
                hour_from_archive(&self.archive, child.start_ms, &self.cfg.breakdowns, admission)?
            };
            partial.add(&slices);
        }
        Ok(partial.into_slices())
    }

    /// One scheduler pass: discovers changed hours, then runs every ready pending bucket,
    /// finest first, until none is ready. Failures are retried in later passes with
    /// exponential backoff.
    pub fn run_pending(&mut self) -> Result<PassReport, BatchError> {
        self.prepare()?;
        let state = ArchiveState::load(&self.archive)?;
        self.discover(&state)?;
        let mut report = PassReport::default();
        let mut partials = Partials::default();
        let mut ahead = None;
        loop {
            let mut pending = self.store.pending()?;
            pending.sort_by_key(|b| (b.end_ms(), b.granularity, b.start_ms));
            let now = Instant::now();
            let speed = self.store.speed_watermark()?;
            // The first ready bucket runs now; the next ready hour is summed while it
            // commits (its inputs are the archive's alone).
            let (mut next, mut next_hour) = (None, None);
            for &b in &pending {
                if self.backoff.get(&b).is_none_or(|&(_, at)| at <= now)
                    && !report.failed.iter().any(|(f, _)| *f == b)
                    && self.check(&state, &pending, b).is_ok()
                    && !self.waits_for_speed(b, speed)
                {
                    if next.is_none() {
                        next = Some(b);
                    } else if b.granularity == Granularity::Hour {
                        next_hour = Some(b);
                        break;
                    }
                }
            }
            let Some(bucket) = next else {
                report.waiting = pending.len();
                break;
            };
            match self.run_bucket_with(&state, &pending, speed, bucket, &mut partials, &mut ahead, next_hour) {
                Ok(_) => {
                    self.backoff.remove(&bucket);
                    report.ran.push(bucket);
                }
                Err(e) => {
                    let failures = self.backoff.get(&bucket).map_or(0, |&(n, _)| n) + 1;
                    let wait = Duration::from_secs(1u64 << failures.min(16)).min(self.cfg.max_backoff);
                    tracing::warn!(%bucket, failures, retry_in_s = wait.as_secs(), error = %e, "batch run failed");
                    self.backoff.insert(bucket, (failures, now + wait));
                    report.failed.push((bucket, e.to_string()));
                }
            }
        }
        if !report.ran.is_empty() {
            self.apply_retention()?;
        }
        Ok(report)
    }

    fn apply_retention(&mut self) -> Result<(), BatchError> {
        let cutoff = self.retention_cutoff();
        if cutoff == i64::MIN {
            return Ok(());
        }
        // A day past retention reads its hours from the archive, so none has to wait.
        let deleted = self.store.delete_hours_before(cutoff)?;
        if deleted > 0 {
            tracing::info!(deleted, cutoff = %topk_core::timestamp::format_rfc3339(cutoff), "deleted hourly rows past retention");
        }
        Ok(())
    }

    /// Runs the DAG of every `granularity` bucket in `[from_ms, to_ms)`, for external
    /// orchestration. Buckets already up to date are skipped unless `force`.
    pub fn run_range(
        &mut self,
        granularity: Granularity,
        from_ms: i64,
        to_ms: i64,
        force: bool,
    ) -> Result<Vec<RangeResult>, BatchError> {
        self.prepare()?;
        let state = ArchiveState::load(&self.archive)?;
        self.discover(&state)?;
        let pending = self.store.pending()?;
        let mut out = Vec::new();
        let mut b = Bucket::containing(granularity, from_ms);
        while b.start_ms < to_ms {
            let up_to_date = !pending.contains(&b) && self.store.attempts("top_lists", b)? > 0;
            if force || !up_to_date {
                out.push((b, self.run_bucket(&state, b)));
            }
            b = b.next();
        }
        Ok(out)
    }
}

/// An hour's sums computed ahead, while the bucket before it committed
/// ([`Batch::commit_while_summing`]).
struct Ahead {
    hour: Bucket,
    slices: Result<Vec<Slice>, BatchError>,
}

/// A bucket's sums per breakdown and product so far, from those of its children computed
/// in the same pass: by product number (each id stored once, in `ids`), as an hour's sums
/// are. As rows with an id string each, growing them was the largest part of a replay's
/// peak heap (292 of 522 MB, BENCHMARKS.md).
#[derive(Default)]
struct Partial {
    ids: Ids,
    sums: BTreeMap<String, Sums>,
    /// Breakdowns whose rows were the global rows in every child so far (`category=(none)`
    /// where events carry no category): not summed a second time, as the store marks them
    /// rather than storing them twice (`batch_as_global`).
    as_global: BTreeSet<String>,
    /// Children added so far.
    added: usize,
    children: Vec<Bucket>,
}

impl Partial {
    fn add(&mut self, slices: &[Slice]) {
        let global = global(slices);
        // The same rows shared (an hour's sums share them), or equal ones (read back).
        let is_global = |rows: &Rows| std::ptr::eq(&rows[..], global) || rows[..] == *global;
        let same: BTreeSet<&str> =
            slices.iter().filter(|(b, rows)| !b.is_empty() && is_global(rows)).map(|(b, _)| b.as_str()).collect();
        // A breakdown that was the global rows so far but is not in this child: its sums
        // so far are the global ones, summed from here on.
        let apart: Vec<String> = self.as_global.iter().filter(|b| !same.contains(b.as_str())).cloned().collect();
        for b in apart {
            self.as_global.remove(&b);
            let so_far = self.sums.get("").cloned().unwrap_or_default();
            self.sums.insert(b, so_far);
        }
        let mut numbered: Vec<(u32, Pair)> = Vec::new();
        for (breakdown, rows) in slices {
            if same.contains(breakdown.as_str()) && (self.added == 0 || self.as_global.contains(breakdown)) {
                self.as_global.insert(breakdown.clone());
                continue;
            }
            numbered.clear();
            numbered.extend(rows.iter().map(|r| (self.ids.intern(&r.product_id), (r.count, r.revenue_cents))));
            // The rows come in id order: their numbers ascend but where ids first seen in
            // a later child were numbered after the rest (runs the stable sort merges).
            numbered.sort_by_key(|&(n, _)| n);
            self.sums.entry(breakdown.clone()).or_default().add(&numbered);
        }
        self.added += 1;
    }

    /// The sums, the global ones first (`""` sorts first), present even when empty, each
    /// in product-id order.
    fn into_slices(mut self) -> Vec<Slice> {
        self.sums.entry(String::new()).or_default();
        let order = self.ids.order();
        let mut slices: Vec<Slice> =
            self.sums.into_iter().map(|(b, s)| (b, Rows::new(order.rows(&self.ids, s.0)))).collect();
        if !self.as_global.is_empty() {
            let global = slices[0].1.clone();
            slices.extend(self.as_global.into_iter().map(|b| (b, global.clone())));
            slices.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        slices
    }
}

/// The global rows of a bucket's slices (the first, see [`Partial::into_slices`]).
fn global(slices: &[Slice]) -> &[ProductSum] {
    slices.first().filter(|(b, _)| b.is_empty()).map_or(&[], |(_, rows)| &rows[..])
}

/// The values admitted to each breakdown set (`breakdown_values`): a set admits values
/// until it has `max_values` of them, and counts every later one under
/// [`OTHER`](topk_core::breakdown::OTHER). Since a set only ever grows, and stops growing
/// once full, a value is either admitted for good before any hour with it runs, or never:
/// every bucket counts it the same way, and a day's sums of its hours stay exact.
struct Admission {
    max_values: usize,
    admitted: HashMap<String, HashSet<String, RandomState>, RandomState>,
    /// Admitted since the last [`Admission::take_new`]: recorded with the bucket's run.
    new: Vec<(String, String)>,
}

impl Admission {
    fn load<S: BatchStore>(store: &mut S, max_values: usize) -> Result<Admission, BatchError> {
        let mut admitted: HashMap<String, HashSet<String, RandomState>, RandomState> = HashMap::default();
        for (set, value) in store.admitted_values()? {
            admitted.entry(set).or_default().insert(value);
        }
        Ok(Admission { max_values, admitted, new: Vec::new() })
    }

    /// Whether `value` counts as itself in `set`, admitting it if the set has room. Events
    /// without any of the set's dimensions always count under their own value, `(none)`.
    fn admit(&mut self, set: &str, value: &str) -> bool {
        if value.split('|').all(|v| v == NONE) {
            return true;
        }
        let values = self.admitted.entry(set.to_string()).or_default();
        if values.contains(value) {
            return true;
        }
        if values.len() >= self.max_values {
            return false;
        }
        values.insert(value.to_string());
        self.new.push((set.to_string(), value.to_string()));
        true
    }

    fn take_new(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.new)
    }
}

type Partials = HashMap<Bucket, Partial, RandomState>;

/// Count and revenue per product number, in number order, each number once. Sums are
/// built by merging sorted runs: measured 4× faster than hashing every id and sorting the
/// result (1M products an hour: 0.53 s → 0.14 s to sum an hour, `rollup_bench`, when the
/// runs were of id strings).
#[derive(Default, Clone)]
struct Sums(Vec<(u32, Pair)>);

impl Sums {
    /// Adds `rows` (in number order, each number once).
    fn add(&mut self, rows: &[(u32, Pair)]) {
        if self.0.is_empty() {
            self.0.extend_from_slice(rows);
            return;
        }
        let old = std::mem::take(&mut self.0);
        // Sized exactly: grown by doubling, the sums of a day's ten country values held
        // about twice their entries (389 of a 778 MB heap peak, `rollup_bench` with 10
        // countries under heaptrack).
        let len = union_len(&old, rows);
        let mut out = Vec::with_capacity(len);
        let (mut i, mut j) = (0, 0);
        while i < old.len() && j < rows.len() {
            match old[i].0.cmp(&rows[j].0) {
                std::cmp::Ordering::Less => {
                    out.push(old[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(rows[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    let mut pair = old[i].1;
                    add_pair(&mut pair, rows[j].1 .0, rows[j].1 .1);
                    out.push((old[i].0, pair));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&old[i..]);
        out.extend_from_slice(&rows[j..]);
        debug_assert_eq!(out.len(), len);
        self.0 = out;
    }
}

/// How many numbers two runs in number order hold together.
fn union_len(a: &[(u32, Pair)], b: &[(u32, Pair)]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i].0, b[j].0);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
        n += 1;
    }
    n + (a.len() - i) + (b.len() - j)
}

/// `Ok` if the bucket has ended and every hour of it is complete, else why not: the
/// inputs of [`Batch::check`] that do not depend on other pending buckets.
fn ended_and_complete(state: &ArchiveState, bucket: Bucket) -> Result<(), String> {
    if bucket.end_ms() > now_ms() {
        return Err(format!(
            "it has not ended yet (it ends {}): an open bucket is never exact",
            topk_core::timestamp::format_rfc3339(bucket.end_ms())
        ));
    }
    if !state.complete(bucket.start_ms, bucket.end_ms()) {
        return Err(format!(
            "not every hour of it is complete yet (partitions' low watermark is {})",
            topk_core::timestamp::format_rfc3339(state.low_watermark())
        ));
    }
    Ok(())
}

/// Adds a bucket's rows to the partial sums of the buckets above it that can run in this
/// pass (ended, and their hours complete). A bucket run twice in one pass (late data)
/// would be counted twice: its parents then drop their partial sums and read the store.
fn feed_parents(state: &ArchiveState, bucket: Bucket, slices: &[Slice], partials: &mut Partials) {
    for &g in bucket.granularity.rollup_parents() {
        let parent = bucket.parent(g);
        if ended_and_complete(state, parent).is_err() {
            continue;
        }
        let partial = partials.entry(parent).or_default();
        if partial.children.contains(&bucket) {
            partials.remove(&parent);
            continue;
        }
        partial.children.push(bucket);
        partial.add(slices);
    }
}

/// Whether the speed layer's written estimates cover the bucket (or it never said how far
/// they reach).
fn covers(speed: Option<SpeedWatermark>, bucket: Bucket) -> bool {
    speed.is_none_or(|w| w.watermark_ms >= bucket.end_ms())
}

/// Scores the speed layer's rows of a bucket against its exact rows (the seed's
/// supervisor audit).
fn score(bucket: Bucket, rows: &[ProductSum], speed: &[topk_store::SpeedRow]) -> topk_core::accuracy::Accuracy {
    let exact: Vec<(&str, i64)> =
        topk_store::best(rows, By::Quantity, 100).into_iter().map(|r| (r.product_id.as_str(), r.count)).collect();
    // `rows` are in product-id order.
    let truth = |p: &str| rows.binary_search_by(|r| r.product_id.as_str().cmp(p)).ok().map(|i| rows[i].count);
    let approx: Vec<(&str, i64, i64)> = speed.iter().map(|r| (r.product_id.as_str(), r.count, r.error)).collect();
    let a = topk_core::accuracy::score_with(&exact, truth, &approx);
    tracing::info!(
        %bucket,
        precision_at_10 = a.precision_at_10,
        precision_at_100 = a.precision_at_100,
        bound_coverage = a.bound_coverage,
        "speed layer scored against the exact answer"
    );
    a
}

/// The tasks of one bucket's run, recorded with the commit of its results (or, where it
/// fails, on their own).
struct Runs {
    bucket: Bucket,
    /// Per task of [`TASKS`]: this attempt's number.
    attempts: [i64; TASKS.len()],
    started_ms: i64,
    /// The tasks done so far: name, when it finished, rows.
    done: Vec<(&'static str, i64, i64)>,
}

impl Runs {
    fn new<S: BatchStore>(store: &mut S, bucket: Bucket) -> Result<Runs, BatchError> {
        let mut attempts = [0; TASKS.len()];
        for (a, task) in attempts.iter_mut().zip(TASKS) {
            *a = store.attempts(task, bucket)? + 1;
        }
        Ok(Runs { bucket, attempts, started_ms: now_ms(), done: Vec::new() })
    }

    fn ok(&mut self, task: &'static str, rows: i64) {
        self.done.push((task, now_ms(), rows));
    }

    fn attempt(&self, task: &str) -> i64 {
        TASKS.iter().position(|t| *t == task).map_or(1, |i| self.attempts[i])
    }

    /// The records of the tasks done, each started when the one before it finished.
    fn records(&self) -> Vec<TaskRun<'static>> {
        let mut started_ms = self.started_ms;
        self.done
            .iter()
            .map(|&(task, finished_ms, rows)| {
                let run = TaskRun {
                    task,
                    attempt: self.attempt(task),
                    started_ms,
                    finished_ms,
                    status: RunStatus::Success,
                    rows: Some(rows),
                    error: None,
                };
                started_ms = finished_ms;
                run
            })
            .collect()
    }

    /// Records the tasks done and `task`'s failure; returns the error the run ends with.
    fn fail<S: BatchStore>(&self, store: &mut S, task: &'static str, reason: String) -> BatchError {
        let mut runs = self.records();
        let started_ms = runs.last().map_or(self.started_ms, |r| r.finished_ms);
        runs.push(TaskRun {
            task,
            attempt: self.attempt(task),
            started_ms,
            finished_ms: now_ms(),
            status: RunStatus::Failed,
            rows: None,
            error: Some(&reason),
        });
        if let Err(e) = store.record_runs(self.bucket, &runs) {
            tracing::warn!(bucket = %self.bucket, task, error = %e, "could not record a failed run");
        }
        BatchError::Task { task, bucket: self.bucket, reason }
    }
}

/// Sums every archive file of one hour per product: globally, and per value of each
/// breakdown set (admitting values to their sets, biggest first, in `admission`).
fn hour_from_archive(
    archive: &Root,
    hour_ms: i64,
    breakdowns: &Breakdowns,
    admission: &mut Admission,
) -> Result<Vec<Slice>, BatchError> {
    let mut hour = HourSums::new(&breakdowns.sets);
    for f in topk_archive::hour_files(archive, hour_ms)? {
        topk_archive::visit_file(archive, &f, |r| {
            debug_assert_eq!(r.hour_ms, hour_ms);
            hour.add(&r);
        })?;
    }
    Ok(hour.into_slices(admission))
}

/// Count and revenue.
type Pair = (i64, i64);

/// An hour's sums while its archive files are read, row by row: each product id stored
/// once (as an index, in the order first seen), its global sums, and per breakdown set
/// and value the sums per product with the value's volume. Only sums are held, never the
/// rows: an hour of a 20k events/s soak (millions of archive rows, one per product,
/// value and flush) had taken 3.4 GB as rows, copied once per set.
struct HourSums<'a> {
    sets: &'a [DimSet],
    ids: Ids,
    global: Vec<Pair>,
    /// Per set (in `sets` order): its values.
    values: Vec<Values>,
    /// The value being looked up (reused: a row's value is rarely new).
    value: String,
}

impl<'a> HourSums<'a> {
    fn new(sets: &'a [DimSet]) -> Self {
        HourSums {
            sets,
            ids: Ids::default(),
            global: Vec::new(),
            values: sets.iter().map(|_| Values::default()).collect(),
            value: String::new(),
        }
    }

    fn add(&mut self, r: &topk_archive::RowRef<'_>) {
        let id = self.ids.intern(r.product_id);
        if id as usize == self.global.len() {
            self.global.push((0, 0));
        }
        add_pair(&mut self.global[id as usize], r.count, r.revenue_cents);
        for (set, values) in self.sets.iter().zip(&mut self.values) {
            set.write_value(&r.dims, &mut self.value);
            let v = match values.index.get(self.value.as_str()) {
                Some(&v) => v,
                None => {
                    values.index.insert(self.value.clone(), values.sums.len());
                    values.sums.push((self.value.clone(), 0, Run::default()));
                    values.sums.len() - 1
                }
            };
            let (_, volume, run) = &mut values.sums[v];
            *volume = volume.saturating_add(r.count.saturating_abs());
            run.push(id, (r.count, r.revenue_cents));
        }
    }

    /// The sums as slices, ordered by key (the global ones, `""`, first), each in
    /// product-id order; values beyond a set's admitted ones count under `(other)`.
    fn into_slices(self, admission: &mut Admission) -> Vec<Slice> {
        let HourSums { sets, ids, global: global_sums, values, .. } = self;
        let order = ids.order();
        let global = Rows::new(order.by_place.iter().map(|&n| row(&ids, n, global_sums[n as usize])).collect());
        let mut slices: Vec<Slice> = Vec::with_capacity(1 + sets.len());
        for (&set, values) in sets.iter().zip(values) {
            let name = set.to_string();
            let mut values = values.sums;
            values.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let mut by_key: BTreeMap<String, Run> = BTreeMap::new();
            for (value, _, run) in values {
                let value = if admission.admit(&name, &value) { value } else { OTHER.to_string() };
                by_key.entry(set.key(&value)).or_default().append(run);
            }
            let only_value = by_key.len() == 1;
            for (key, run) in by_key {
                let sums = run.into_sums();
                // Every product, each with its global sums (numbers ascend, each once):
                // the global rows, shared.
                let rows = if only_value
                    && sums.len() == global_sums.len()
                    && sums.iter().all(|&(n, pair)| global_sums[n as usize] == pair)
                {
                    Rows::clone(&global)
                } else {
                    Rows::new(order.rows(&ids, sums))
                };
                slices.push((key, rows));
            }
        }
        slices.push((String::new(), global));
        slices.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        slices
    }
}

/// Product ids, each stored once in one string and numbered in the order first seen (no
/// allocation per id: an hour, or a bucket's sums of its children, can hold a million).
#[derive(Default)]
struct Ids {
    text: String,
    /// Where each id ends in `text`.
    ends: Vec<usize>,
    /// Indexes into `ends`, hashed by their id.
    table: hashbrown::HashTable<u32>,
    hasher: RandomState,
    /// Whether every id came after the one before it in product-id order (one archive
    /// file, or files of disjoint ranges): then the numbering is the ids' order.
    in_order: bool,
}

impl Ids {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, id: u32) -> &str {
        nth(&self.text, &self.ends, id)
    }

    /// The numbers in product-id order.
    fn order(&self) -> Order {
        if self.in_order {
            return Order { by_place: (0..self.len() as u32).collect(), place: None };
        }
        let mut by_place: Vec<u32> = (0..self.len() as u32).collect();
        by_place.sort_unstable_by(|&a, &b| self.get(a).cmp(self.get(b)));
        let mut place = vec![0u32; self.len()];
        for (at, &n) in by_place.iter().enumerate() {
            place[n as usize] = at as u32;
        }
        Order { by_place, place: Some(place) }
    }

    /// The number of `id`, numbering it if it is new.
    fn intern(&mut self, id: &str) -> u32 {
        let hash = self.hasher.hash_one(id);
        if let Some(&found) = self.table.find(hash, |&i| nth(&self.text, &self.ends, i) == id) {
            return found;
        }
        let n = u32::try_from(self.ends.len()).expect("fewer than 2^32 products an hour");
        self.in_order = n == 0 || (self.in_order && self.get(n - 1) < id);
        self.text.push_str(id);
        self.ends.push(self.text.len());
        let Ids { text, ends, table, hasher, .. } = self;
        table.insert_unique(hash, n, |&i| hasher.hash_one(nth(text, ends, i)));
        n
    }
}

/// Product numbers ([`Ids`]) in product-id order.
struct Order {
    /// The number at each place.
    by_place: Vec<u32>,
    /// Each number's place (`None`: the numbering is the ids' order).
    place: Option<Vec<u32>>,
}

impl Order {
    /// Sums by number as rows in product-id order.
    fn rows(&self, ids: &Ids, mut sums: Vec<(u32, Pair)>) -> Vec<ProductSum> {
        if let Some(place) = &self.place {
            sums.sort_unstable_by_key(|&(n, _)| place[n as usize]);
        }
        sums.into_iter().map(|(n, pair)| row(ids, n, pair)).collect()
    }
}

fn row(ids: &Ids, n: u32, (count, revenue_cents): Pair) -> ProductSum {
    ProductSum { product_id: ids.get(n).to_string(), count, revenue_cents }
}

/// The `i`th of the strings concatenated in `text`, each ending at its entry of `ends`.
fn nth<'t>(text: &'t str, ends: &[usize], i: u32) -> &'t str {
    let i = i as usize;
    &text[if i == 0 { 0 } else { ends[i - 1] }..ends[i]]
}

/// One breakdown set's values in an hour ([`HourSums`]).
#[derive(Default)]
struct Values {
    /// Each value's place in `sums`.
    index: HashMap<String, usize, RandomState>,
    /// Per value: the value, its volume (the sum of its rows' absolute counts: what admits
    /// the biggest values first) and its sums per product index.
    sums: Vec<(String, i64, Run)>,
}

/// Sums per product index: appended row by row, and sorted by index and summed whenever
/// they have doubled since the last time, so they hold at most about twice as many
/// entries as products. Rows mostly come in index order (an archive file's rows are in
/// product-id order), which the sort takes in linear time: measured faster than a hash
/// map per value (`rollup_bench`, BENCHMARKS.md).
#[derive(Default)]
struct Run {
    sums: Vec<(u32, Pair)>,
    /// Entries after the last compaction.
    compacted: usize,
}

impl Run {
    fn push(&mut self, id: u32, pair: Pair) {
        self.sums.push((id, pair));
        self.compact_if_doubled();
    }

    /// Adds another run's sums (a value counted under `(other)`): compacted as pushes are,
    /// not on every append, which with thousands of values past the cap was quadratic.
    fn append(&mut self, other: Run) {
        self.sums.extend(other.sums);
        self.compact_if_doubled();
    }

    fn compact_if_doubled(&mut self) {
        if self.sums.len() >= 2 * self.compacted.max(4096) {
            self.compact();
        }
    }

    fn compact(&mut self) {
        self.sums.sort_by_key(|&(id, _)| id);
        self.sums.dedup_by(|next, kept| {
            let same = next.0 == kept.0;
            if same {
                add_pair(&mut kept.1, next.1 .0, next.1 .1);
            }
            same
        });
        self.compacted = self.sums.len();
    }

    /// The sums, in index order, each index once.
    fn into_sums(mut self) -> Vec<(u32, Pair)> {
        self.compact();
        self.sums
    }
}

fn add_pair(pair: &mut Pair, count: i64, revenue_cents: i64) {
    pair.0 = pair.0.saturating_add(count);
    pair.1 = pair.1.saturating_add(revenue_cents);
}

/// The scheduler loop of `topk serve`: a pass every `pass_interval` until shutdown.
/// `on_pass` sees every pass's report.
pub fn run<S: BatchStore>(
    mut batch: Batch<S>,
    shutdown: &Shutdown,
    mut on_pass: impl FnMut(&PassReport),
) -> Result<(), BatchError> {
    let interval = batch.cfg.pass_interval;
    while !shutdown.is_triggered() {
        let report = batch.run_pending()?;
        on_pass(&report);
        if !report.ran.is_empty() {
            tracing::info!(
                ran = report.ran.len(),
                failed = report.failed.len(),
                waiting = report.waiting,
                "batch pass"
            );
        }
        shutdown.wait(interval);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
