//! The batch layer (the chapter's §17.5): exact Top-K for every hour, day, ISO week,
//! month and year, computed by re-runnable tasks into the SQL store.
//!
//! # The DAG
//! Each bucket runs four tasks, each recorded in `pipeline_runs` and each safe to re-run:
//! 1. `check`: the bucket's hours are complete and nothing below it is still pending;
//! 2. `rollup`: hour from the Parquet archive, day from its 24 hours, week from its 7
//!    days, month from its days, year from its 12 months — one transaction each;
//! 3. `clean_speed`: score the bucket's approximate `speed_table` rows against the exact
//!    ones into `accuracy`, then delete them;
//! 4. `top_lists`: regenerate its top lists by quantity and by revenue.
//!
//! # What runs when
//! Work is a durable set of pending buckets (`batch_pending`). An hour becomes pending
//! when it is complete and its archive version (which grows with every file written for
//! it) differs from the version it was last rolled up from; the hour's rollup marks its
//! day, week, month and year pending in the same transaction. So late events, refunds and
//! replays re-run exactly the buckets they touch, and a crash at any point leaves the
//! work pending rather than lost. Pending buckets run finest first, each once nothing
//! finer below it is pending.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use topk_archive::{ArchiveError, ArchiveState, Root};
use topk_core::clock::now_ms;
use topk_core::time::{Bucket, Granularity};
use topk_core::Shutdown;
use topk_store::{BatchStore, ProductSum, RunStatus, StoreError};

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
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            top_k: topk_core::DEFAULT_TOP_K,
            hour_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            max_backoff: Duration::from_secs(300),
            pass_interval: Duration::from_secs(2),
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
}

impl<S: BatchStore> Batch<S> {
    pub fn new(store: S, archive: Root, cfg: BatchConfig) -> Self {
        Batch { store, archive, cfg, backoff: HashMap::default() }
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
        let retention_cutoff = self.retention_cutoff();
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
        // An hour past retention has lost its siblings' rows: re-roll its whole day from
        // the archive, or the day would be summed from a partial set of hours.
        let mut extra = Vec::new();
        for hour in stale.iter().filter(|h| h.start_ms < retention_cutoff) {
            extra.extend(hour.parent(Granularity::Day).children());
        }
        stale.extend(extra);
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

    /// `Ok` if the bucket's inputs are final, else why not.
    pub fn check(&self, state: &ArchiveState, pending: &[Bucket], bucket: Bucket) -> Result<(), String> {
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
        if let Some(p) = pending.iter().find(|p| {
            p.granularity.feeds(bucket.granularity) && p.start_ms < bucket.end_ms() && p.end_ms() > bucket.start_ms
        }) {
            return Err(format!("its input {p} is still pending"));
        }
        Ok(())
    }

    /// Runs one task, recording the attempt.
    fn task(
        &mut self,
        task: &'static str,
        bucket: Bucket,
        f: impl FnOnce(&mut Self) -> Result<u64, BatchError>,
    ) -> Result<u64, BatchError> {
        let attempt = self.store.attempts(task, bucket)? + 1;
        let id = self.store.start_run(task, bucket, attempt, now_ms())?;
        let started = Instant::now();
        match f(self) {
            Ok(rows) => {
                self.store.finish_run(id, RunStatus::Success, Some(rows as i64), None, now_ms())?;
                tracing::debug!(task, %bucket, rows, ms = started.elapsed().as_millis() as u64, "task done");
                Ok(rows)
            }
            Err(e) => {
                let reason = e.to_string();
                self.store.finish_run(id, RunStatus::Failed, None, Some(&reason), now_ms())?;
                Err(match e {
                    not_ready @ BatchError::NotReady { .. } => not_ready,
                    _ => BatchError::Task { task, bucket, reason },
                })
            }
        }
    }

    /// Runs the whole DAG of one bucket and clears it from the pending set.
    pub fn run_bucket(&mut self, state: &ArchiveState, bucket: Bucket) -> Result<u64, BatchError> {
        let pending = self.store.pending()?;
        let generation = self.store.pending_generation(bucket)?;
        self.task("check", bucket, |b| {
            b.check(state, &pending, bucket).map(|_| 0).map_err(|reason| BatchError::NotReady { bucket, reason })
        })?;
        let rows = self.task("rollup", bucket, |b| b.rollup(state, bucket))?;
        self.task("clean_speed", bucket, |b| b.score_and_clean_speed(bucket))?;
        let k = self.cfg.top_k;
        self.task("top_lists", bucket, |b| Ok(b.store.regenerate_top_lists(bucket, k)?))?;
        if let Some(generation) = generation {
            self.store.remove_pending(bucket, generation)?;
        }
        Ok(rows)
    }

    /// Scores the speed layer's rows of the bucket against the exact ones (the seed's
    /// supervisor audit) into `accuracy`, then deletes them: exact rows win from here on.
    fn score_and_clean_speed(&mut self, bucket: Bucket) -> Result<u64, BatchError> {
        let speed = self.store.speed_rows(bucket)?;
        if !speed.is_empty() {
            let mut exact: Vec<(String, i64)> =
                self.store.bucket_rows(bucket)?.into_iter().map(|r| (r.product_id, r.count)).collect();
            exact.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let approx: Vec<(String, i64, i64)> = speed.into_iter().map(|r| (r.product_id, r.count, r.error)).collect();
            let a = topk_core::accuracy::score(&exact, &approx);
            self.store.record_accuracy(bucket, &a, now_ms())?;
            tracing::info!(
                %bucket,
                precision_at_10 = a.precision_at_10,
                precision_at_100 = a.precision_at_100,
                bound_coverage = a.bound_coverage,
                "speed layer scored against the exact answer"
            );
        }
        Ok(self.store.delete_speed_rows(bucket)?)
    }

    fn rollup(&mut self, state: &ArchiveState, bucket: Bucket) -> Result<u64, BatchError> {
        if bucket.granularity != Granularity::Hour {
            return Ok(self.store.rollup(bucket)?);
        }
        let version = state.hours.get(&bucket.to_string()).map_or(0, |h| h.files);
        let rows = hour_from_archive(&self.archive, bucket.start_ms)?;
        Ok(self.store.replace_hour(bucket, &rows, version, &bucket.ancestors())?)
    }

    /// One scheduler pass: discovers changed hours, then runs every ready pending bucket,
    /// finest first, until none is ready. Failures are retried in later passes with
    /// exponential backoff.
    pub fn run_pending(&mut self) -> Result<PassReport, BatchError> {
        let state = ArchiveState::load(&self.archive)?;
        self.discover(&state)?;
        let mut report = PassReport::default();
        loop {
            let mut pending = self.store.pending()?;
            pending.sort_by_key(|b| (b.granularity, b.start_ms));
            let now = Instant::now();
            let next = pending.iter().copied().find(|&b| {
                self.backoff.get(&b).is_none_or(|&(_, at)| at <= now)
                    && !report.failed.iter().any(|(f, _)| *f == b)
                    && self.check(&state, &pending, b).is_ok()
            });
            let Some(bucket) = next else {
                report.waiting = pending.len();
                break;
            };
            match self.run_bucket(&state, bucket) {
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
        let mut cutoff = self.retention_cutoff();
        if cutoff == i64::MIN {
            return Ok(());
        }
        // Never delete hours a pending day still has to read.
        if let Some(first) =
            self.store.pending()?.iter().filter(|b| b.granularity == Granularity::Day).map(|b| b.start_ms).min()
        {
            cutoff = cutoff.min(first);
        }
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

/// Sums every archive file of one hour per product.
pub fn hour_from_archive(archive: &Root, hour_ms: i64) -> Result<Vec<ProductSum>, BatchError> {
    let mut sums: HashMap<String, (i64, i64), RandomState> = HashMap::default();
    for f in topk_archive::hour_files(archive, hour_ms)? {
        for r in topk_archive::read_file(archive, &f)? {
            debug_assert_eq!(r.hour_ms, hour_ms);
            let e = sums.entry(r.product_id).or_default();
            e.0 = e.0.saturating_add(r.count);
            e.1 = e.1.saturating_add(r.revenue_cents);
        }
    }
    let mut rows: Vec<ProductSum> = sums
        .into_iter()
        .map(|(product_id, (count, revenue_cents))| ProductSum { product_id, count, revenue_cents })
        .collect();
    rows.sort_unstable_by(|a, b| a.product_id.cmp(&b.product_id));
    Ok(rows)
}

/// The scheduler loop of `topk serve`: a pass every `pass_interval` until shutdown.
pub fn run<S: BatchStore>(mut batch: Batch<S>, shutdown: &Shutdown) -> Result<(), BatchError> {
    let interval = batch.cfg.pass_interval;
    while !shutdown.is_triggered() {
        let report = batch.run_pending()?;
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
