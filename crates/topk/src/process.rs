//! The wiring of one process: its logs, and the roles it runs on threads — all of them in
//! `topk serve` and `topk replay`, one in each production role process — over the
//! embedded logs or Kafka, the store and the archive its configuration names.
//!
//! [`Pipeline`] is also what the HTTP API sees of the process (`topk_serve::Process`):
//! the events log to ingest into, health, and each role's positions for the metrics.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use topk_aggregator::{AggregatorConfig, Control};
use topk_archive::{Archive, ArchiveProgress};
use topk_batch::Batch;
use topk_core::clock::now_ms;
use topk_core::Shutdown;
use topk_ingest::kafka_source::SourceState;
use topk_ingest::{IngestStats, Ingestor};
use topk_log::{Assignments, Log, LogError, Membership};
use topk_serve::telemetry::PartitionLag;
use topk_speed::{Architecture, Speed, SpeedProgress};
use topk_store::SqlStore;

use crate::config::Config;
use crate::supervise::{spawn_role, Failures};

/// Sets two of glibc's malloc parameters for a process that runs roles; called first
/// thing in main, before any other thread exists (the binary's, and the examples' that
/// run roles). BENCHMARKS.md, "Exact sooner" and "The single-instance roles alone":
/// - one arena per core instead of up to 8: memory one thread frees (the ingest threads'
///   dedup tables and buffers, at the end of a replay's input) is not reused by another
///   thread's arena (the batch layer's rollups after it). A 10M-event replay peaked at
///   742 MB with the default and at 535 MB with one arena per core, as fast.
/// - a fixed mmap threshold of 1 MiB: glibc's own starts at 128 KiB and rises to the size
///   of each large block freed (up to 32 MiB), so the large vectors of rows a replay
///   allocates and frees by the thousand end up inside the arenas, where freed memory
///   stays with the process. Mapped, they return to the system when freed: the replay's
///   peak RSS went from 637 to 515 MiB (medians of 3), at 1.02x the wall time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_malloc() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let arenas = i32::try_from(cores).unwrap_or(i32::MAX);
    // SAFETY: mallopt sets one of the allocator's parameters under the allocator's own
    // lock; it reads and keeps no pointer.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_malloc() {}

/// A role, as a process runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The aggregators of `Config::aggregate_partitions` (or of the consumer group).
    Aggregator,
    Archive,
    Speed,
    /// The batch scheduler (Lambda only).
    Batch,
    /// The plain Kafka source, when `source_topic` is set.
    Source,
}

impl Role {
    /// Every role: `topk serve`.
    pub const ALL: [Role; 5] = [Role::Aggregator, Role::Archive, Role::Speed, Role::Batch, Role::Source];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Aggregator => "aggregator",
            Role::Archive => "archive",
            Role::Speed => "speed",
            Role::Batch => "batch",
            Role::Source => "source",
        }
    }
}

/// librdkafka settings of the aggregators' consumer group unless `kafka_properties` sets
/// them: a stopped member's partitions move on within 10 s (librdkafka's default is 45).
const GROUP_PROPERTIES: [(&str, &str); 2] = [("session.timeout.ms", "10000"), ("heartbeat.interval.ms", "1000")];

/// The aggregator threads of a process, one per owned partition: fixed at start, or
/// following the aggregators' consumer group.
struct Aggregators {
    events: Arc<dyn Log>,
    flush: Arc<dyn Log>,
    cfg: AggregatorConfig,
    control: Arc<Control>,
    failures: Arc<Failures>,
    /// Per partition: the thread, and the signal that stops it.
    threads: Mutex<HashMap<u32, (JoinHandle<()>, Shutdown)>>,
}

impl Assignments for Aggregators {
    fn assigned(&self, partitions: &[u32]) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for &p in partitions {
            if threads.contains_key(&p) {
                continue;
            }
            self.control.set_owned(p, true);
            let stop = Shutdown::default();
            let (events, flush, control, cfg) =
                (self.events.clone(), self.flush.clone(), self.control.clone(), self.cfg.clone());
            let s = stop.clone();
            let woken = self.events.clone();
            stop.on_trigger(move || woken.wake());
            let thread = spawn_role(format!("aggregator-{p}"), &self.failures, &stop, move || {
                Ok(topk_aggregator::run(&*events, &*flush, p, cfg.clone(), &control, &s)?)
            });
            threads.insert(p, (thread, stop));
        }
    }

    /// Each revoked aggregator flushes what it holds before this returns.
    fn revoked(&self, partitions: &[u32]) {
        let stopped: Vec<(JoinHandle<()>, Shutdown)> = {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            partitions.iter().filter_map(|p| threads.remove(p)).collect()
        };
        for &p in partitions {
            self.control.set_owned(p, false);
        }
        for (_, stop) in &stopped {
            stop.trigger();
        }
        for (thread, _) in stopped {
            let _ = thread.join();
        }
    }
}

/// Totals of the batch layer's catch-up passes.
#[derive(Debug, Default)]
pub struct BatchSummary {
    pub ran: usize,
    pub failed: Vec<(topk_core::time::Bucket, String)>,
    pub waiting: usize,
}

/// One role's thread and the signal that stops it.
struct Running {
    role: Role,
    stop: Shutdown,
    thread: JoinHandle<()>,
}

/// The roles of one process, running on threads.
pub struct Pipeline {
    pub cfg: Config,
    roles: BTreeSet<Role>,
    pub events: Arc<dyn Log>,
    pub flush: Arc<dyn Log>,
    pub control: Arc<Control>,
    pub archive: Arc<ArchiveProgress>,
    pub speed: Arc<SpeedProgress>,
    pub ingest_stats: Arc<IngestStats>,
    pub source: Arc<SourceState>,
    aggregators: Arc<Aggregators>,
    /// In the aggregators' consumer group (Kafka), when it assigns the partitions.
    membership: Mutex<Option<Membership>>,
    running: Mutex<Vec<Running>>,
    failures: Arc<Failures>,
    /// Buckets the batch scheduler role has rolled up.
    batch_ran: Arc<AtomicUsize>,
}

fn open_batch(cfg: &Config) -> anyhow::Result<Batch<SqlStore>> {
    let mut batch = Batch::new(cfg.open_store()?, cfg.archive_root()?, cfg.batch.clone());
    batch.recover_interrupted()?;
    Ok(batch)
}

impl Pipeline {
    /// Opens the data directory (recovering from any crash) and starts every role; role
    /// errors stop it (a replay). The batch scheduler rolls up the hours a replay has
    /// closed while it still reads; [`Pipeline::catch_up_batch`] stops it and finishes.
    pub fn start(cfg: Config) -> anyhow::Result<Pipeline> {
        Pipeline::start_roles(cfg, &Role::ALL, false)
    }

    /// Opens the logs and the store and starts `roles`; with `retry`, a role that fails
    /// is restarted (a server).
    pub fn start_roles(cfg: Config, roles: &[Role], retry: bool) -> anyhow::Result<Pipeline> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
        let (events, flush) = cfg.open_logs()?;
        let partitions = cfg.log.partitions;
        let control = Arc::new(Control::new(partitions));
        let failures = Arc::new(Failures::new(retry));
        let aggregators = Arc::new(Aggregators {
            events: events.clone(),
            flush: flush.clone(),
            cfg: cfg.aggregator.clone(),
            control: control.clone(),
            failures: failures.clone(),
            threads: Mutex::default(),
        });
        let pipeline = Pipeline {
            roles: roles.iter().copied().collect(),
            events,
            flush,
            control,
            archive: ArchiveProgress::new(partitions),
            speed: SpeedProgress::new(partitions),
            ingest_stats: Arc::new(IngestStats::default()),
            source: Arc::new(SourceState::default()),
            aggregators,
            membership: Mutex::new(None),
            running: Mutex::default(),
            failures,
            batch_ran: Arc::default(),
            cfg,
        };
        for &role in roles {
            pipeline.start_role(role)?;
        }
        tracing::info!(
            data_dir = %pipeline.cfg.data_dir.display(),
            partitions,
            architecture = ?pipeline.cfg.speed.architecture,
            roles = ?pipeline.roles,
            logs = if pipeline.cfg.kafka.is_some() { "kafka" } else { "embedded" },
            store = %topk_store::redact(&pipeline.cfg.store),
            "pipeline started"
        );
        Ok(pipeline)
    }

    fn runs(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Starts one role on its thread(s).
    fn start_role(&self, role: Role) -> anyhow::Result<()> {
        let cfg = self.cfg.clone();
        let partitions = cfg.log.partitions;
        let stop = Shutdown::default();
        let s = stop.clone();
        // A stop wakes the archive and the speed layer from waiting for flushes (the batch
        // scheduler and the source wait on the stop itself).
        if matches!(role, Role::Archive | Role::Speed) {
            let flush = self.flush.clone();
            stop.on_trigger(move || flush.wake());
        }
        let thread = match role {
            Role::Aggregator => {
                match (&cfg.kafka, cfg.aggregate_group) {
                    (Some(kafka), true) => {
                        let topic = cfg.kafka_log(kafka, "events")?;
                        let group = format!("{}aggregators", kafka.prefix);
                        let membership = topic.join_group(&group, &GROUP_PROPERTIES, self.aggregators.clone())?;
                        *self.membership.lock().unwrap_or_else(|e| e.into_inner()) = Some(membership);
                    }
                    _ => self.aggregators.assigned(&cfg.aggregate_partitions),
                }
                return Ok(());
            }
            Role::Archive => {
                let (flush, progress) = (self.flush.clone(), self.archive.clone());
                spawn_role("archive".into(), &self.failures, &stop, move || {
                    let archive = Archive::open(cfg.archive_root()?, partitions).context("opening the archive")?;
                    Ok(topk_archive::run(&*flush, archive, &progress, &s)?)
                })
            }
            Role::Speed => {
                let (flush, progress) = (self.flush.clone(), self.speed.clone());
                spawn_role("speed".into(), &self.failures, &stop, move || {
                    let speed = Speed::open(cfg.open_store()?, partitions, cfg.speed.clone())
                        .context("opening the speed layer")?;
                    Ok(topk_speed::run(&*flush, speed, &progress, &s)?)
                })
            }
            // Kappa has no batch layer.
            Role::Batch if cfg.speed.architecture == Architecture::Kappa => return Ok(()),
            Role::Batch => {
                let ran = self.batch_ran.clone();
                spawn_role("batch".into(), &self.failures, &stop, move || {
                    let count = |pass: &topk_batch::PassReport| {
                        ran.fetch_add(pass.ran.len(), Ordering::Relaxed);
                    };
                    Ok(topk_batch::run(open_batch(&cfg)?, &s, count)?)
                })
            }
            Role::Source => {
                let (Some(kafka), Some(settings)) = (cfg.kafka.clone(), cfg.source.clone()) else { return Ok(()) };
                let (events, state, stats) = (self.events.clone(), self.source.clone(), self.ingest_stats.clone());
                spawn_role("source".into(), &self.failures, &stop, move || {
                    let topic = kafka.topic(&settings.topic, 1);
                    let dead = cfg.kafka_log(&kafka, "dead-letter")?;
                    let ingestor = Ingestor::new(events.clone(), cfg.max_future_ms, stats.clone());
                    Ok(topk_ingest::kafka_source::run(&settings, topic, &dead, &*events, ingestor, &state, &s)?)
                })
            }
        };
        self.running.lock().unwrap_or_else(|e| e.into_inner()).push(Running { role, stop, thread });
        Ok(())
    }

    /// Stops the batch scheduler role, then runs batch passes until nothing more is
    /// ready (`topk replay`); Kappa has none.
    pub fn catch_up_batch(&self) -> anyhow::Result<BatchSummary> {
        let mut summary = BatchSummary::default();
        if self.cfg.speed.architecture == Architecture::Kappa {
            return Ok(summary);
        }
        self.stop_roles(&[Role::Batch]);
        self.check()?;
        summary.ran = self.batch_ran.load(Ordering::Relaxed);
        let mut batch = open_batch(&self.cfg)?;
        loop {
            let pass = batch.run_pending()?;
            summary.ran += pass.ran.len();
            summary.failed.extend(pass.failed);
            summary.waiting = pass.waiting;
            if pass.ran.is_empty() {
                return Ok(summary);
            }
        }
    }

    /// A new ingestor over the events log.
    pub fn ingestor(&self) -> Ingestor {
        Ingestor::new(self.events.clone(), self.cfg.max_future_ms, self.ingest_stats.clone())
    }

    /// A role's error: the first one (a replay), or a recent one (a server).
    pub fn failure(&self) -> Option<String> {
        self.failures.current()
    }

    fn check(&self) -> anyhow::Result<()> {
        failed(self.failure())
    }

    /// Declares the input complete: every partition flushes all it holds as final (the
    /// hours that have ended close), and this returns once the archive and the speed
    /// layer have recorded all of it. (It looks every 10 ms: a one-time wait at the end of
    /// a replay, on the progress of three kinds of role, and on their failures.)
    pub fn drain(&self) -> anyhow::Result<()> {
        self.drain_aggregators()?;
        tracing::info!("aggregators drained; waiting for the archive and the speed layer");
        self.wait_recorded()
    }

    /// Has every aggregator flush all it holds as final, and returns once they have.
    pub fn drain_aggregators(&self) -> anyhow::Result<()> {
        let request = self.control.request_drain();
        self.events.wake(); // the aggregators notice the request at once
        while !self.control.all_drained(request) {
            self.check()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Returns once the archive and the speed layer, those this process runs, have
    /// recorded the flush log up to its present end.
    pub fn wait_recorded(&self) -> anyhow::Result<()> {
        let mut done = Vec::new();
        if self.runs(Role::Archive) {
            done.push(&self.archive.applied);
        }
        if self.runs(Role::Speed) {
            done.push(&self.speed.written);
        }
        for p in 0..self.flush.partitions() {
            let end = self.flush.end_offset(p)?;
            for positions in &done {
                while self.flush.distance(positions[p as usize].load(Ordering::SeqCst), end) > 0 {
                    self.check()?;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        Ok(())
    }

    /// Stops every role in order: the source first (what it appended is aggregated), then
    /// the aggregators flush what they hold, the archive and the speed layer record it,
    /// and the batch scheduler stops.
    /// Stops `roles` (those running) and waits for their threads.
    fn stop_roles(&self, roles: &[Role]) {
        let now: Vec<Running> = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let (now, later) = std::mem::take(&mut *running).into_iter().partition(|r| roles.contains(&r.role));
            *running = later;
            now
        };
        for r in &now {
            r.stop.trigger();
        }
        for r in now {
            let _ = r.thread.join();
        }
    }

    pub fn shutdown(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        self.stop_roles(&[Role::Source]);
        if let Some(m) = self.membership.lock().unwrap_or_else(|e| e.into_inner()).take() {
            m.leave();
        }
        let all: Vec<u32> = (0..self.cfg.log.partitions).collect();
        self.aggregators.revoked(&all);
        self.stop_roles(&[Role::Archive, Role::Speed]);
        self.stop_roles(&[Role::Batch]);
        tracing::info!("pipeline stopped");
        // A role that failed and recovered earlier does not fail the stop; one that failed
        // while stopping (say, its last flush) does.
        failed(self.failures.since(Some(started)))
    }
}

fn failed(failure: Option<String>) -> anyhow::Result<()> {
    match failure {
        Some(f) => anyhow::bail!("pipeline failed: {f}"),
        None => Ok(()),
    }
}

impl topk_serve::Process for Pipeline {
    fn events(&self) -> &Arc<dyn Log> {
        &self.events
    }

    fn ingestor(&self) -> Ingestor {
        Pipeline::ingestor(self)
    }

    fn ingest_stats(&self) -> &IngestStats {
        &self.ingest_stats
    }

    fn failure(&self) -> Option<String> {
        Pipeline::failure(self)
    }

    fn record_failure(&self, message: String) {
        self.failures.record(message);
    }

    /// What this process runs only; a role elsewhere reports its own.
    fn lags(&self) -> Result<Vec<PartitionLag>, LogError> {
        let now = now_ms();
        let (archive, speed) = (self.runs(Role::Archive), self.runs(Role::Speed));
        let mut out = Vec::with_capacity(self.events.partitions() as usize);
        for p in 0..self.events.partitions() {
            let progress = &self.control.progress[p as usize];
            let aggregated = self.control.owns(p);
            let flush_end = if archive || speed { self.flush.end_offset(p)? } else { 0 };
            let lag =
                |done: &std::sync::atomic::AtomicU64| self.flush.distance(done.load(Ordering::Relaxed), flush_end);
            let counter = |c: &std::sync::atomic::AtomicU64| aggregated.then(|| c.load(Ordering::Relaxed));
            out.push(PartitionLag {
                partition: p,
                flush_lag_events: aggregated
                    .then(|| self.events.end_offset(p))
                    .transpose()?
                    .map(|end| self.events.distance(progress.flushed_end.load(Ordering::Relaxed), end)),
                // No watermark yet (no event seen, stored as a negative number): no lag.
                watermark_lag_seconds: Some(progress.watermark_ms.load(Ordering::Relaxed) as i64)
                    .filter(|&w| aggregated && w > 0)
                    .map(|w| now.saturating_sub(w).max(0) as f64 / 1000.0),
                archive_lag_batches: archive.then(|| lag(&self.archive.applied[p as usize])),
                speed_lag_batches: speed.then(|| lag(&self.speed.written[p as usize])),
                aggregated_events: counter(&progress.accepted),
                duplicate_events: counter(&progress.duplicates),
                late_events: counter(&progress.late),
                dedup_bytes: counter(&progress.dedup_bytes),
            });
        }
        Ok(out)
    }

    fn source(&self) -> Option<(&str, &SourceState)> {
        self.cfg.source.as_ref().filter(|_| self.runs(Role::Source)).map(|s| (s.topic.as_str(), &*self.source))
    }
}
