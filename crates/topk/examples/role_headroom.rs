//! The single-instance roles alone, each over a flush log built beforehand: how fast the
//! archive, the speed layer and the batch layer get through it, for the headroom figures
//! of SCALING.md (`scripts/role_headroom.sh` runs the steps in order, several times).
//!
//! ```sh
//! role_headroom prepare FILE DIR [--flush-interval-ms N]   # events log → flush log, aggregators only
//! role_headroom archive DIR    # the archive role alone, until it has the whole flush log
//! role_headroom speed DIR      # the speed role alone, the same (the batch layer waits for it)
//! role_headroom batch DIR      # the batch layer's passes over that archive, until none is ready
//! ```
//!
//! Each step prints one line: what it went through, its wall and CPU time (the process's,
//! from getrusage: only the one role works) and the process's peak RSS, with the binary's
//! malloc parameters. `TOPK_LOG` sets the log filter (`warn` by default; `topk_batch=debug`
//! shows each bucket). The default configuration applies (`TOPK_*` variables are not
//! read), except the flush interval of `prepare`: a live partition flushes every second,
//! and at 10B events a day over 16 partitions a second holds ~7k events, so a short
//! interval here gives flush batches of about the live size although the input arrives
//! far faster.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use topk::config::{Config, Settings};
use topk::process::{Pipeline, Role};
use topk_core::flush::FlushBatch;
use topk_ingest::files::{self, Format};

fn config(dir: &Path, flush_interval_ms: Option<u64>) -> anyhow::Result<Config> {
    Settings { data_dir: Some(dir.to_path_buf()), flush_interval_ms, ..Settings::default() }.over_file(None)
}

/// The process's CPU seconds so far and its peak RSS in MiB.
fn usage() -> (f64, f64) {
    // SAFETY: `rusage` is plain integers, valid when zeroed; getrusage only writes the
    // struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss as f64 / 1024.0)
}

/// Flush batches, their rows and the events they aggregate, over every partition.
#[derive(Default)]
struct Counted {
    batches: u64,
    rows: u64,
    events: u64,
}

fn count_flush_log(cfg: &Config) -> anyhow::Result<Counted> {
    let (_, flush) = cfg.open_logs()?;
    let mut c = Counted::default();
    for p in 0..flush.partitions() {
        let mut reader = flush.reader(p, 0)?;
        while let Some(rec) = reader.next_batch()? {
            if let Some(batch) = FlushBatch::read(rec.base_offset, &rec.payload)? {
                c.batches += 1;
                c.rows += batch.rows.len() as u64;
                c.events += batch.end_offset - batch.first_offset;
            }
        }
    }
    Ok(c)
}

/// What a timed step went through, returned, and took.
struct Timed<T> {
    out: T,
    counted: Counted,
    wall: f64,
    cpu: f64,
    peak: f64,
}

/// Starts `roles` on the data directory and times them and `work` until it returns (the
/// flush log is counted first, untimed; the stop after is not timed either).
fn timed<T>(
    cfg: Config,
    roles: &[Role],
    work: impl FnOnce(&Pipeline) -> anyhow::Result<T>,
) -> anyhow::Result<Timed<T>> {
    let counted = count_flush_log(&cfg)?;
    let (cpu0, _) = usage();
    let started = Instant::now();
    let pipeline = Pipeline::start_roles(cfg, roles, false)?;
    let out = work(&pipeline)?;
    let wall = started.elapsed().as_secs_f64();
    let (cpu1, peak) = usage();
    pipeline.shutdown()?;
    Ok(Timed { out, counted, wall, cpu: cpu1 - cpu0, peak })
}

/// Starts `role` alone and returns once it has recorded the whole flush log.
fn run_role(cfg: Config, role: Role) -> anyhow::Result<()> {
    let t = timed(cfg, &[role], Pipeline::wait_recorded)?;
    println!(
        "{}: {} rows in {} flush batches ({} events) in {:.2} s wall, {:.2} s CPU: {:.0} rows/s of wall time; peak RSS {:.0} MiB",
        role.as_str(),
        t.counted.rows,
        t.counted.batches,
        t.counted.events,
        t.wall,
        t.cpu,
        t.counted.rows as f64 / t.wall,
        t.peak,
    );
    Ok(())
}

fn prepare(file: &Path, dir: &Path, flush_interval_ms: Option<u64>) -> anyhow::Result<()> {
    if dir.exists() {
        bail!("{}: exists; prepare makes a new data directory", dir.display());
    }
    let started = Instant::now();
    let pipeline = Pipeline::start_roles(config(dir, flush_interval_ms)?, &[Role::Aggregator], false)?;
    let mut ingestor = pipeline.ingestor();
    let report = files::replay_file(&mut ingestor, &*pipeline.events, file, Format::of(file), &(), &|| false)?;
    pipeline.drain_aggregators()?;
    pipeline.shutdown()?;
    drop(pipeline); // it holds the logs open
    let cfg = config(dir, None)?;
    // Only the flush log is read from here on.
    std::fs::remove_dir_all(cfg.events_dir()).context("removing the events log")?;
    let c = count_flush_log(&cfg)?;
    println!(
        "prepare: {} events accepted, {} rejected; flush log: {} batches, {} rows ({:.1} rows a batch, {:.2} rows an event) in {:.1} s",
        report.accepted,
        report.rejected_count,
        c.batches,
        c.rows,
        c.rows as f64 / c.batches.max(1) as f64,
        c.rows as f64 / c.events.max(1) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn batch(dir: &Path) -> anyhow::Result<()> {
    let t = timed(config(dir, None)?, &[], Pipeline::catch_up_batch)?;
    let summary = t.out;
    if !summary.failed.is_empty() {
        bail!("{} bucket(s) failed: {:?}", summary.failed.len(), summary.failed);
    }
    println!(
        "batch: {} buckets rolled up ({} waiting) from {} archived rows in {:.2} s wall, {:.2} s CPU: {:.0} archived rows/s of wall time; peak RSS {:.0} MiB",
        summary.ran,
        summary.waiting,
        t.counted.rows,
        t.wall,
        t.cpu,
        t.counted.rows as f64 / t.wall,
        t.peak,
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    topk::process::tune_malloc();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOPK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let help = "usage: role_headroom prepare FILE DIR [--flush-interval-ms N] | archive DIR | speed DIR | batch DIR";
    let flush_interval_ms = match args.iter().position(|a| a == "--flush-interval-ms") {
        Some(i) => Some(args.get(i + 1).context(help)?.parse().context("--flush-interval-ms")?),
        None => None,
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["prepare", file, dir, ..] => prepare(Path::new(file), Path::new(dir), flush_interval_ms),
        ["archive", dir] => run_role(config(Path::new(dir), None)?, Role::Archive),
        ["speed", dir] => run_role(config(Path::new(dir), None)?, Role::Speed),
        ["batch", dir] => batch(Path::new(dir)),
        _ => bail!("{help}"),
    }
}
