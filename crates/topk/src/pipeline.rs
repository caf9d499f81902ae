//! The pipeline of one process: the events log, one aggregator thread per owned
//! partition, the flush log, the archive thread and the speed thread (the batch scheduler
//! joins in `serve` and `topk batch`); and the [`Ingestor`] that turns input lines into
//! appended batches.
//!
//! `topk serve` runs every role here, over the embedded logs or Kafka. In production each
//! role runs as its own process ([`Roles`]), the logs being Kafka topics and the store
//! PostgreSQL; every process also serves the HTTP API, health and metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use topk_aggregator::{AggregatorConfig, Control};
use topk_archive::{Archive, ArchiveProgress};
use topk_batch::Batch;
use topk_core::codec;
use topk_core::event::{parse_ndjson, Event, Limits, LineInfo, Rejection};
use topk_core::partition::partition_of;
use topk_core::Shutdown;
use topk_log::{Assignments, Log, LogError, Membership, SourcePos};
use topk_speed::{Architecture, Speed, SpeedProgress};
use topk_store::SqlStore;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::source::SourceState;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Role errors. A replay stops at the first (`retry` off); a server's roles restart after
/// an error — each recovers from its durable state, as after a crash — and the process
/// reports itself unhealthy until [`HEALTHY_AFTER`] has passed without one.
#[derive(Default)]
struct Failures {
    retry: bool,
    last: Mutex<Option<(String, Instant)>>,
}

type Failure = Arc<Failures>;

/// How long a restarted role must run without an error before the process is healthy.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// The longest wait between two restarts of a failing role.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Failures {
    fn record(&self, message: String) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if self.retry || last.is_none() {
            *last = Some((message, Instant::now()));
        }
    }

    fn current(&self) -> Option<String> {
        self.since(Instant::now().checked_sub(HEALTHY_AFTER))
    }

    /// The last failure if it happened at or after `start` (`None`: ever), or without
    /// retries at all: then a failed role stays failed.
    fn since(&self, start: Option<Instant>) -> Option<String> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((m, at)) if !self.retry || start.is_none_or(|s| *at >= s) => Some(m.clone()),
            _ => None,
        }
    }
}

/// The aggregator threads of a process, one per owned partition: fixed at start, or
/// following the aggregators' consumer group.
struct Aggregators {
    events: Arc<dyn Log>,
    flush: Arc<dyn Log>,
    cfg: AggregatorConfig,
    control: Arc<Control>,
    failure: Failure,
    threads: Mutex<HashMap<u32, JoinHandle<()>>>,
}

impl Assignments for Aggregators {
    fn assigned(&self, partitions: &[u32]) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for &p in partitions {
            if threads.contains_key(&p) {
                continue;
            }
            self.control.set_owned(p, true);
            let (events, flush, control, cfg) =
                (self.events.clone(), self.flush.clone(), self.control.clone(), self.cfg.clone());
            let stop = control.clone();
            let stopping = move || stop.shutdown.is_triggered() || !stop.owns(p);
            let thread = spawn_role(format!("aggregator-{p}"), &self.failure, stopping, move || {
                Ok(topk_aggregator::run(&*events, &*flush, p, cfg.clone(), &control)?)
            });
            threads.insert(p, thread);
        }
    }

    /// Each revoked aggregator flushes what it holds before this returns.
    fn revoked(&self, partitions: &[u32]) {
        for &p in partitions {
            self.control.set_owned(p, false);
        }
        let stopped: Vec<JoinHandle<()>> = {
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            partitions.iter().filter_map(|p| threads.remove(p)).collect()
        };
        for t in stopped {
            let _ = t.join();
        }
    }
}

/// Which roles a process runs on its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Aggregators for `Config::aggregate_partitions`.
    pub aggregators: bool,
    pub archive: bool,
    pub speed: bool,
    /// The batch scheduler (Lambda only).
    pub batch: bool,
    /// The plain Kafka source, when `source_topic` is set.
    pub source: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { aggregators: true, archive: true, speed: true, batch: true, source: true };
    /// The API alone: ingest and queries.
    pub const NONE: Roles = Roles { aggregators: false, archive: false, speed: false, batch: false, source: false };
}

/// The roles of one process, running on threads.
pub struct Pipeline {
    pub cfg: Config,
    pub roles: Roles,
    pub events: Arc<dyn Log>,
    pub flush: Arc<dyn Log>,
    pub control: Arc<Control>,
    pub archive: Arc<ArchiveProgress>,
    pub speed: Arc<SpeedProgress>,
    pub metrics: Arc<Metrics>,
    pub source: Arc<SourceState>,
    archive_shutdown: Shutdown,
    source_shutdown: Shutdown,
    sourcer: Option<JoinHandle<()>>,
    speed_shutdown: Shutdown,
    batch_shutdown: Shutdown,
    aggregators: Arc<Aggregators>,
    /// In the aggregators' consumer group (Kafka), when it assigns the partitions.
    membership: Option<Membership>,
    archiver: Option<JoinHandle<()>>,
    speeder: Option<JoinHandle<()>>,
    batcher: Option<JoinHandle<()>>,
    failure: Failure,
}

/// Totals of the batch layer's catch-up passes.
#[derive(Debug, Default)]
pub struct BatchSummary {
    pub ran: usize,
    pub failed: Vec<(topk_core::time::Bucket, String)>,
    pub waiting: usize,
}

/// [`spawn_role`] for a role that stops when `shutdown` is triggered.
fn spawn_until(
    name: &str,
    failure: &Failure,
    shutdown: &Shutdown,
    run: impl FnMut() -> anyhow::Result<()> + Send + 'static,
) -> JoinHandle<()> {
    let stop = shutdown.clone();
    spawn_role(name.into(), failure, move || stop.is_triggered(), run)
}

/// Runs a role on its own thread. `run` opens the role's state and runs it until it
/// returns; with retries on, an error is logged and the role started again (with a
/// growing pause) until `stopping` says the process is shutting down.
fn spawn_role(
    name: String,
    failure: &Failure,
    stopping: impl Fn() -> bool + Send + 'static,
    mut run: impl FnMut() -> anyhow::Result<()> + Send + 'static,
) -> JoinHandle<()> {
    let failure = failure.clone();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut backoff = Duration::from_millis(500);
            loop {
                let started = Instant::now();
                let Err(e) = run() else { return };
                let error = format!("{e:#}");
                failure.record(format!("{name}: {error}"));
                if !failure.retry || stopping() {
                    tracing::error!(role = %name, %error, "role failed");
                    return;
                }
                if started.elapsed() > MAX_BACKOFF {
                    backoff = Duration::from_millis(500);
                }
                tracing::error!(role = %name, %error, retry_in_ms = backoff.as_millis() as u64, "role failed; restarting it");
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if stopping() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tracing::info!(role = %name, "restarting role");
            }
        })
        .expect("spawning a role thread")
}

fn open_batch(cfg: &Config) -> anyhow::Result<Batch<SqlStore>> {
    let mut batch = Batch::new(cfg.open_store()?, cfg.archive_root()?, cfg.batch.clone());
    batch.recover_interrupted()?;
    Ok(batch)
}

impl Pipeline {
    /// Opens the data directory (recovering from any crash) and starts every role.
    /// Role errors stop the pipeline (a replay).
    pub fn start(cfg: Config) -> anyhow::Result<Pipeline> {
        Pipeline::start_roles(cfg, Roles { batch: false, ..Roles::ALL }, false)
    }

    /// Opens the logs and the store and starts `roles` (the batch scheduler only with
    /// [`Pipeline::start_batch`]); with `retry`, a role that fails is restarted (a server).
    pub fn start_roles(cfg: Config, roles: Roles, retry: bool) -> anyhow::Result<Pipeline> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
        let (events, flush) = cfg.open_logs()?;
        let partitions = cfg.log.partitions;
        let control = Arc::new(Control::new(partitions, Shutdown::default()));
        let archive_progress = ArchiveProgress::new(partitions);
        let failure: Failure = Arc::new(Failures { retry, last: Mutex::default() });
        let metrics = Arc::new(Metrics::default());
        let aggregators = Arc::new(Aggregators {
            events: events.clone(),
            flush: flush.clone(),
            cfg: cfg.aggregator.clone(),
            control: control.clone(),
            failure: failure.clone(),
            threads: Mutex::default(),
        });
        for p in 0..partitions {
            control.set_owned(p, false);
        }
        let mut membership = None;
        match (&cfg.kafka, roles.aggregators, cfg.aggregate_group) {
            (_, false, _) => {}
            (Some(kafka), true, true) => {
                let topic = cfg.kafka_log(kafka, "events")?;
                let group = format!("{}aggregators", kafka.prefix);
                let settings = [("session.timeout.ms", "10000"), ("heartbeat.interval.ms", "1000")];
                membership = Some(topic.join_group(&group, &settings, aggregators.clone())?);
            }
            (_, true, _) => aggregators.assigned(&cfg.aggregate_partitions),
        }
        let archive_shutdown = Shutdown::default();
        let archiver = if roles.archive {
            let (flush, progress, shutdown) = (flush.clone(), archive_progress.clone(), archive_shutdown.clone());
            let cfg = cfg.clone();
            Some(spawn_until("archive", &failure, &archive_shutdown, move || {
                let archive = Archive::open(cfg.archive_root()?, partitions).context("opening the archive")?;
                Ok(topk_archive::run(&*flush, archive, &progress, &shutdown)?)
            }))
        } else {
            None
        };
        let speed_shutdown = Shutdown::default();
        let speed_progress = SpeedProgress::new(partitions);
        let speeder = if roles.speed {
            let (flush, progress, shutdown) = (flush.clone(), speed_progress.clone(), speed_shutdown.clone());
            let cfg = cfg.clone();
            Some(spawn_until("speed", &failure, &speed_shutdown, move || {
                let speed =
                    Speed::open(cfg.open_store()?, partitions, cfg.speed.clone()).context("opening the speed layer")?;
                Ok(topk_speed::run(&*flush, speed, &progress, &shutdown)?)
            }))
        } else {
            None
        };
        tracing::info!(
            data_dir = %cfg.data_dir.display(),
            partitions,
            architecture = ?cfg.speed.architecture,
            ?roles,
            logs = if cfg.kafka.is_some() { "kafka" } else { "embedded" },
            store = %topk_store::redact(&cfg.store),
            "pipeline started"
        );
        let source_shutdown = Shutdown::default();
        let source = Arc::new(SourceState::default());
        let sourcer = match (&cfg.source, roles.source) {
            (Some(settings), true) => {
                let (cfg, settings, events, state) = (cfg.clone(), settings.clone(), events.clone(), source.clone());
                let (metrics, shutdown) = (metrics.clone(), source_shutdown.clone());
                Some(spawn_until("source", &failure, &source_shutdown, move || {
                    let ingestor = Ingestor::new(events.clone(), cfg.max_future_ms, metrics.clone());
                    crate::source::run(&cfg, &settings, &*events, ingestor, &state, &shutdown)
                }))
            }
            _ => None,
        };
        let mut pipeline = Pipeline {
            cfg,
            roles,
            events,
            flush,
            control,
            archive: archive_progress,
            speed: speed_progress,
            metrics,
            source,
            archive_shutdown,
            source_shutdown,
            sourcer,
            speed_shutdown,
            batch_shutdown: Shutdown::default(),
            aggregators,
            membership,
            archiver,
            speeder,
            batcher: None,
            failure,
        };
        if roles.batch {
            pipeline.start_batch()?;
        }
        Ok(pipeline)
    }

    /// The batch layer over this pipeline's archive and store.
    pub fn open_batch(&self) -> anyhow::Result<Batch<SqlStore>> {
        open_batch(&self.cfg)
    }

    /// Starts the batch scheduler as a role (`topk serve`); Kappa has none.
    pub fn start_batch(&mut self) -> anyhow::Result<()> {
        if self.cfg.speed.architecture == Architecture::Kappa || self.batcher.is_some() {
            return Ok(());
        }
        self.roles.batch = true;
        let shutdown = self.batch_shutdown.clone();
        let cfg = self.cfg.clone();
        self.batcher = Some(spawn_until("batch", &self.failure, &self.batch_shutdown, move || {
            Ok(topk_batch::run(open_batch(&cfg)?, Duration::from_secs(2), &shutdown)?)
        }));
        Ok(())
    }

    /// Runs batch passes until nothing more is ready (`topk replay`); Kappa has none.
    pub fn catch_up_batch(&self) -> anyhow::Result<BatchSummary> {
        let mut summary = BatchSummary::default();
        if self.cfg.speed.architecture == Architecture::Kappa {
            return Ok(summary);
        }
        let mut batch = self.open_batch()?;
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

    /// Records a failure outside the roles (an ingest that could not append): the
    /// process reports itself unhealthy from this moment, as for a role's.
    pub fn record_failure(&self, message: String) {
        self.failure.record(message);
    }

    /// A role's error: the first one (a replay), or a recent one (a server).
    pub fn failure(&self) -> Option<String> {
        self.failure.current()
    }

    /// Each role's position and lag, per partition, as Prometheus text.
    pub fn render_lag(&self, out: &mut String) -> Result<(), LogError> {
        use crate::metrics::{header, sample};
        let now = now_ms();
        let parts = self.events.partitions();
        let aggregated: Vec<bool> = (0..parts).map(|p| self.control.owns(p)).collect();
        let mut rows = Vec::with_capacity(parts as usize);
        for p in 0..parts {
            let progress = &self.control.progress[p as usize];
            // Only what this process runs; a role elsewhere reports its own.
            let flush_end = if self.roles.archive || self.roles.speed { self.flush.end_offset(p)? } else { 0 };
            let lag = |done: u64| Some(self.flush.distance(done, flush_end) as f64);
            rows.push([
                aggregated[p as usize]
                    .then(|| self.events.end_offset(p))
                    .transpose()?
                    .map(|end| self.events.distance(progress.flushed_end.load(Ordering::Relaxed), end) as f64),
                // No watermark yet (no event seen, stored as a negative number): no lag.
                Some(progress.watermark_ms.load(Ordering::Relaxed) as i64)
                    .filter(|&w| aggregated[p as usize] && w > 0)
                    .map(|w| now.saturating_sub(w).max(0) as f64 / 1000.0),
                self.roles.archive.then(|| lag(self.archive.applied[p as usize].load(Ordering::Relaxed))).flatten(),
                self.roles.speed.then(|| lag(self.speed.written[p as usize].load(Ordering::Relaxed))).flatten(),
                aggregated[p as usize].then(|| progress.accepted.load(Ordering::Relaxed) as f64),
                aggregated[p as usize].then(|| progress.duplicates.load(Ordering::Relaxed) as f64),
                aggregated[p as usize].then(|| progress.late.load(Ordering::Relaxed) as f64),
            ]);
        }
        let metrics = [
            (
                "topk_flush_lag_events",
                "gauge",
                "events (Kafka: messages) in the log not yet covered by a durable flush",
            ),
            ("topk_watermark_lag_seconds", "gauge", "wall clock minus the partition's event-time watermark"),
            ("topk_archive_lag_batches", "gauge", "flush batches not yet archived"),
            ("topk_speed_lag_batches", "gauge", "flush batches not yet written by the speed layer"),
            ("topk_aggregated_events_total", "counter", "events counted by the aggregators"),
            ("topk_duplicate_events_total", "counter", "events dropped as duplicates of an earlier event_id"),
            ("topk_late_events_total", "counter", "events behind the watermark (counted as corrections)"),
        ];
        for (i, (name, kind, help)) in metrics.into_iter().enumerate() {
            header(out, name, kind, help);
            for (p, row) in rows.iter().enumerate() {
                if let Some(v) = row[i] {
                    sample(out, name, &[("partition", &p.to_string())], v);
                }
            }
        }
        Ok(())
    }

    pub fn ingestor(&self) -> Ingestor {
        Ingestor::new(self.events.clone(), self.cfg.max_future_ms, self.metrics.clone())
    }

    /// Declares the input complete: every partition flushes all it holds as final (its
    /// hours close), and this returns once the archive has recorded all of it.
    pub fn drain(&self) -> anyhow::Result<()> {
        let request = self.control.request_drain();
        while !self.control.all_drained(request) {
            self.check()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!("aggregators drained; waiting for the archive and the speed layer");
        for p in 0..self.flush.partitions() {
            let end = self.flush.end_offset(p)?;
            for done in [&self.archive.applied[p as usize], &self.speed.written[p as usize]] {
                while self.flush.distance(done.load(Ordering::SeqCst), end) > 0 {
                    self.check()?;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        failed(self.failure())
    }

    /// Stops every role in order: aggregators flush what they hold, then the archive and
    /// the speed layer record it, then everything is committed.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        // The source first, so that what it appended is aggregated before the stop.
        self.source_shutdown.trigger();
        if let Some(h) = self.sourcer.take() {
            let _ = h.join();
        }
        self.control.shutdown.trigger();
        if let Some(m) = self.membership.take() {
            m.leave();
        }
        let all: Vec<u32> = (0..self.cfg.log.partitions).collect();
        self.aggregators.revoked(&all);
        self.archive_shutdown.trigger();
        self.speed_shutdown.trigger();
        for h in [self.archiver.take(), self.speeder.take()].into_iter().flatten() {
            let _ = h.join();
        }
        self.batch_shutdown.trigger();
        if let Some(h) = self.batcher.take() {
            let _ = h.join();
        }
        tracing::info!("pipeline stopped");
        // A role that failed and recovered earlier does not fail the stop; one that failed
        // while stopping (say, its last flush) does.
        failed(self.failure.since(Some(started)))
    }
}

fn failed(failure: Option<String>) -> anyhow::Result<()> {
    match failure {
        Some(f) => anyhow::bail!("pipeline failed: {f}"),
        None => Ok(()),
    }
}

/// What one ingest call did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IngestReport {
    pub accepted: u64,
    /// Lines skipped because an earlier run of the same source already appended them.
    #[serde(skip_serializing_if = "is_zero")]
    pub already_ingested: u64,
    pub rejected_count: u64,
    /// The rejected lines, at most [`MAX_LISTED_REJECTIONS`] of them.
    pub rejected: Vec<Rejection>,
    /// Every rejection counted by what was wrong: the field at fault, or the kind of
    /// problem with the whole line ([`Rejection::category`], a closed set).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected_by_field: BTreeMap<String, u64>,
    /// Input lines read (blank ones included).
    #[serde(skip)]
    pub lines: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A reply lists this many rejected lines at most; `rejected_count` has the total.
pub const MAX_LISTED_REJECTIONS: usize = 1000;

impl IngestReport {
    pub fn add_rejections(&mut self, rejections: Vec<Rejection>) {
        self.rejected_count += rejections.len() as u64;
        for r in &rejections {
            *self.rejected_by_field.entry(r.category().to_string()).or_default() += 1;
        }
        self.list(rejections);
    }

    /// Keeps rejections for the reply, up to [`MAX_LISTED_REJECTIONS`].
    fn list(&mut self, rejections: Vec<Rejection>) {
        let room = MAX_LISTED_REJECTIONS.saturating_sub(self.rejected.len());
        self.rejected.extend(rejections.into_iter().take(room));
    }

    /// Counts one valid event: appended now, or already in the log from an earlier run.
    pub fn tally(&mut self, taken: bool) {
        if taken {
            self.accepted += 1;
        } else {
            self.already_ingested += 1;
        }
    }

    pub fn merge(&mut self, other: IngestReport) {
        self.accepted += other.accepted;
        self.lines += other.lines;
        self.already_ingested += other.already_ingested;
        self.rejected_count += other.rejected_count;
        self.list(other.rejected);
        for (field, n) in other.rejected_by_field {
            *self.rejected_by_field.entry(field).or_default() += n;
        }
    }
}

/// Where a source (a file being replayed) stands in each partition.
#[derive(Debug, Clone)]
pub struct SourceResume {
    pub source: u64,
    /// Per partition, the input byte offset below which its lines are already in the log.
    pub done: Vec<u64>,
}

impl SourceResume {
    /// Reads the positions the log recorded for `source`.
    pub fn load(log: &dyn Log, source: u64) -> Result<(SourceResume, SourcePos), LogError> {
        let mut done = Vec::with_capacity(log.partitions() as usize);
        let mut start = SourcePos { source, pos: u64::MAX, line: 0 };
        for p in 0..log.partitions() {
            let pos = log.source_position(p, source)?.unwrap_or(SourcePos { source, pos: 0, line: 0 });
            done.push(pos.pos);
            if pos.pos < start.pos {
                start = pos;
            }
        }
        Ok((SourceResume { source, done }, start))
    }
}

/// Encoded events per partition, not yet appended.
#[derive(Debug, Clone, Default)]
struct Routed {
    buffers: Vec<Vec<u8>>,
    counts: Vec<u32>,
}

impl Routed {
    fn new(partitions: u32) -> Self {
        Routed { buffers: vec![Vec::new(); partitions as usize], counts: vec![0; partitions as usize] }
    }

    /// Routes one valid event to its partition's buffer, unless `resume` says that
    /// partition already has this line. Returns whether it was taken. (Names and
    /// categories travel inside the encoded event, to the catalog the speed role keeps.)
    fn add(&mut self, info: LineInfo, event: &Event<'_>, resume: Option<&SourceResume>) -> bool {
        let p = partition_of(event.product_id.as_bytes(), self.counts.len() as u32) as usize;
        if resume.is_some_and(|r| info.start < r.done[p]) {
            return false;
        }
        codec::encode(event, &mut self.buffers[p]);
        self.counts[p] += 1;
        true
    }

    fn clear(&mut self) {
        self.buffers.iter_mut().for_each(Vec::clear);
        self.counts.iter_mut().for_each(|c| *c = 0);
    }
}

/// Bodies at least this large are parsed by several threads.
const PARALLEL_PARSE_BYTES: usize = 1 << 20;

/// Parses one NDJSON piece with line numbers relative to the piece; returns the number
/// of lines in it.
fn parse_piece(
    piece: &[u8],
    base_offset: u64,
    limits: &Limits,
    resume: Option<&SourceResume>,
    out: &mut Routed,
    report: &mut IngestReport,
) -> u64 {
    let rejections = parse_ndjson(piece, 1, base_offset, limits, |info, ev| {
        report.tally(out.add(info, &ev, resume));
    });
    report.add_rejections(rejections);
    memchr::memchr_iter(b'\n', piece).count() as u64
}

/// Parses, validates and partitions input, and appends it to the events log.
pub struct Ingestor {
    log: Arc<dyn Log>,
    metrics: Arc<Metrics>,
    max_future_ms: i64,
    routed: Routed,
    /// One per parse thread, reused between calls.
    scratch: Vec<Routed>,
}

impl Ingestor {
    pub fn new(log: Arc<dyn Log>, max_future_ms: i64, metrics: Arc<Metrics>) -> Self {
        let n = log.partitions();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        Ingestor { log, metrics, max_future_ms, routed: Routed::new(n), scratch: vec![Routed::new(n); threads] }
    }

    /// Counts an ingest in the metrics (done by the ingest calls themselves).
    pub fn record(&self, report: &IngestReport) {
        self.metrics.record_ingest(report);
    }

    pub fn limits(&self) -> Limits {
        Limits { now_ms: now_ms(), max_future_ms: self.max_future_ms }
    }

    /// Routes one valid event to its partition's buffer, unless `resume` says that
    /// partition already has this line. Returns whether it was taken.
    pub fn add(&mut self, info: LineInfo, event: &Event<'_>, resume: Option<&SourceResume>) -> bool {
        self.routed.add(info, event, resume)
    }

    /// Appends the buffered events durably. With a source, every partition records
    /// `pos` (even with no events), so a later resume knows it is done up to there.
    pub fn commit(&mut self, source: Option<(&mut SourceResume, SourcePos)>) -> Result<(), LogError> {
        let pos = source.as_ref().map(|(_, pos)| *pos).unwrap_or_default();
        // Each partition's batch is its events from `routed` and then from each parse
        // thread's buffer, in input order.
        let all: Vec<&Routed> = std::iter::once(&self.routed).chain(&self.scratch).collect();
        let parts: Vec<(u32, u32, Vec<&[u8]>)> = (0..self.routed.buffers.len())
            .map(|p| {
                let count = all.iter().map(|r| r.counts[p]).sum();
                (p as u32, count, all.iter().map(|r| r.buffers[p].as_slice()).filter(|b| !b.is_empty()).collect())
            })
            .filter(|(_, count, _)| *count > 0 || pos.source != 0)
            .collect();
        let batches: Vec<(u32, u32, &[&[u8]], SourcePos)> =
            parts.iter().map(|(p, c, b)| (*p, *c, &b[..], pos)).collect();
        if !batches.is_empty() {
            self.log.append_parts(&batches)?;
        }
        if let Some((resume, pos)) = source {
            resume.done.iter_mut().for_each(|d| *d = (*d).max(pos.pos));
        }
        self.routed.clear();
        self.scratch.iter_mut().for_each(Routed::clear);
        Ok(())
    }

    /// Routes messages of a source topic, one JSON event each, as `(offset, value)`: a
    /// message is the "line" at its offset, so `resume` skips what an earlier run already
    /// appended. Nothing is appended until [`Ingestor::commit`]; rejections carry
    /// `line = offset + 1`.
    pub fn route_records(&mut self, records: &[(u64, Vec<u8>)], resume: &SourceResume) -> IngestReport {
        let limits = self.limits();
        let mut report = IngestReport::default();
        for (offset, value) in records {
            // One message is one line, even if its JSON was pretty-printed.
            let line: std::borrow::Cow<'_, [u8]> = if value.contains(&b'\n') {
                value.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect::<Vec<u8>>().into()
            } else {
                value.as_slice().into()
            };
            let mut found = false;
            let rejections = parse_ndjson(&line, offset + 1, *offset, &limits, |info, ev| {
                found = true;
                report.tally(self.routed.add(info, &ev, Some(resume)));
            });
            if !found && rejections.is_empty() {
                let reason = "empty message: expected one JSON sale event".to_string();
                report.add_rejections(vec![Rejection { line: offset + 1, field: None, reason }]);
            }
            report.add_rejections(rejections);
        }
        report.lines = records.len() as u64;
        report
    }

    /// Ingests an NDJSON buffer: valid lines are appended (durably, per the fsync
    /// policy) before this returns; bad lines are reported. With a source, `base_offset`
    /// and `first_line` place the buffer in the source and the source position is recorded.
    pub fn ingest_ndjson(
        &mut self,
        body: &[u8],
        first_line: u64,
        base_offset: u64,
        source: Option<&mut SourceResume>,
    ) -> Result<IngestReport, LogError> {
        let limits = self.limits();
        let resume = source.as_deref();
        // Cut the body into pieces at line ends, one per thread.
        let threads = if body.len() >= PARALLEL_PARSE_BYTES { self.scratch.len() } else { 1 };
        let mut cuts = vec![0];
        for t in 1..threads {
            let at = (body.len() * t / threads).max(*cuts.last().expect("non-empty"));
            let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |i| at + i + 1);
            cuts.push(end);
        }
        cuts.push(body.len());
        let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &body[w[0]..w[1]]).collect();
        let results: Vec<(IngestReport, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = pieces
                .iter()
                .zip(cuts.iter())
                .zip(self.scratch.iter_mut())
                .map(|((piece, &start), out)| {
                    let limits = &limits;
                    s.spawn(move || {
                        let mut report = IngestReport::default();
                        let lines = parse_piece(piece, base_offset + start as u64, limits, resume, out, &mut report);
                        (report, lines)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("parse thread panicked")).collect()
        });
        let mut report = IngestReport::default();
        let mut line = first_line;
        for (mut r, lines) in results {
            r.rejected.iter_mut().for_each(|rej| rej.line += line - 1);
            report.merge(r);
            line += lines;
        }
        let pos = SourcePos {
            source: source.as_ref().map_or(0, |s| s.source),
            pos: base_offset + body.len() as u64,
            line: line - 1,
        };
        self.commit(source.map(|s| (s, pos)))?;
        report.lines = line - first_line;
        self.metrics.record_ingest(&report);
        Ok(report)
    }
}
