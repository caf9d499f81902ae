//! `topk replay FILE...`: runs input files through the embedded pipeline (or sends them
//! to a running server), resuming exactly where an interrupted run of the same file
//! stopped (the reading itself is `topk_ingest::files`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use topk_core::event::Rejection;
use topk_ingest::files::{self, FileError, Format, Piece};
use topk_ingest::IngestReport;

use crate::config::Config;
use crate::process::Pipeline;

/// Totals of a replay.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    /// Lines a server already had from an earlier run (`--server`), not sent again.
    pub skipped_lines: u64,
    pub report: IngestReport,
    pub bytes: u64,
    pub elapsed_s: f64,
}

/// The size of all inputs, for the progress bar (a missing file counts 0 and fails later).
fn total_bytes(files: &[PathBuf]) -> u64 {
    files.iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum()
}

/// The progress bar, which the file reader moves.
struct Bar {
    bar: ProgressBar,
    started: Instant,
}

impl Bar {
    fn new(total: u64) -> Bar {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}")
                .expect("valid template"),
        );
        Bar { bar, started: Instant::now() }
    }
}

impl files::Progress for Bar {
    fn read(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn accepted(&self, total: u64) {
        let rate = total as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!("{total} events, {rate:.0} events/s"));
    }
}

fn print_rejections(file: &Path, rejected: &[Rejection], total: u64) {
    for r in rejected.iter().take(100) {
        eprintln!("{}:{r}", file.display());
    }
    if total > 100 {
        eprintln!("{}: … and {} more rejected lines", file.display(), total - 100);
    }
}

/// Set by SIGINT (Ctrl-C) during a replay: it stops between two batches.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Whether the replay is reading its input (then SIGINT stops it in order, between two
/// batches); after that (draining, rolling up) SIGINT ends the process at once.
static READING: AtomicBool = AtomicBool::new(false);

/// How long a replay may take to stop in order after SIGINT before the process just
/// exits (safe at any moment: everything durable is crash-consistent).
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes SIGINT stop a replay between two batches, in order, with a word on stderr and
/// status 130; a replay that is draining or rolling up stops at once the same way (every
/// step there is safe to cut short, like a kill -9).
fn catch_interrupts() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT]).context("handling SIGINT")?;
    std::thread::Builder::new().name("sigint".into()).spawn(move || {
        // Blocks until the first SIGINT.
        if signals.forever().next().is_none() {
            return;
        }
        INTERRUPTED.store(true, Ordering::SeqCst);
        if READING.load(Ordering::SeqCst) {
            std::thread::sleep(INTERRUPT_GRACE);
        }
        eprintln!("{}", FileError::Interrupted);
        std::process::exit(130);
    })?;
    Ok(())
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Whether an error is the interruption of a replay (the command then exits with 130).
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.downcast_ref::<FileError>().is_some_and(|f| matches!(f, FileError::Interrupted))
}

/// A replay in which every line was rejected did not do what was asked: an error.
fn nothing_accepted(r: &IngestReport) -> anyhow::Result<()> {
    if r.nothing_accepted() {
        bail!("no event was accepted: all {} lines were rejected (see the messages above)", r.rejected_count);
    }
    Ok(())
}

/// Replays `files` in-process on the data directory; returns when everything is
/// flushed, archived and (what has ended) rolled up.
pub fn replay_local(cfg: Config, paths: &[PathBuf], format: Option<Format>) -> anyhow::Result<Summary> {
    let started = Instant::now();
    // Every input must be readable before anything (the data directory) is created.
    for path in paths {
        File::open(path).with_context(|| format!("opening {}", path.display()))?;
    }
    catch_interrupts()?;
    let pipeline = Pipeline::start(cfg)?;
    let total = total_bytes(paths);
    let bar = Bar::new(total);
    let mut summary = Summary::default();
    let mut ingestor = pipeline.ingestor();
    READING.store(true, Ordering::SeqCst);
    for path in paths {
        let format = format.unwrap_or_else(|| Format::of(path));
        if files::resume_point(&*pipeline.events, path)?.is_none() {
            eprintln!("{}: already replayed completely, nothing to do", path.display());
        }
        let report = match files::replay_file(&mut ingestor, &*pipeline.events, path, format, &bar, &interrupted) {
            Ok(report) => report,
            Err(e) => {
                bar.bar.finish_and_clear();
                if matches!(e, FileError::Interrupted) {
                    // Stop in order, so what was appended is flushed and committed.
                    pipeline.shutdown()?;
                }
                return Err(e.into());
            }
        };
        print_rejections(path, &report.rejected, report.rejected_count);
        if report.nothing_accepted() {
            if let Some(hint) = files::format_hint(path, format) {
                eprintln!("{}: every line was rejected: {hint}", path.display());
            }
        }
        summary.files += 1;
        summary.report.merge(report);
    }
    READING.store(false, Ordering::SeqCst);
    if interrupted() {
        bar.bar.finish_and_clear();
        pipeline.shutdown()?;
        return Err(FileError::Interrupted.into());
    }
    tracing::info!(elapsed_s = started.elapsed().as_secs_f64(), "input appended; draining");
    bar.bar.set_message("flushing and archiving…");
    pipeline.drain()?;
    tracing::info!(elapsed_s = started.elapsed().as_secs_f64(), "flushed and archived; rolling up");
    bar.bar.set_message("rolling up…");
    let batch = pipeline.catch_up_batch()?;
    bar.bar.finish_and_clear();
    summary.bytes = total;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    let duplicates: u64 = pipeline.control.progress.iter().map(|p| p.duplicates.load(Ordering::Relaxed)).sum();
    let late: u64 = pipeline.control.progress.iter().map(|p| p.late.load(Ordering::Relaxed)).sum();
    let r = &summary.report;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "replayed {} file(s) in {:.1} s: {} events accepted ({:.0}/s), {} rejected, {} duplicates dropped, {} late, {} already ingested earlier",
        summary.files,
        summary.elapsed_s,
        r.accepted,
        r.accepted as f64 / summary.elapsed_s.max(1e-9),
        r.rejected_count,
        duplicates,
        late,
        r.already_ingested,
    )?;
    writeln!(
        out,
        "archive: {} new file(s) under {}",
        pipeline.archive.files.load(Ordering::Relaxed),
        pipeline.cfg.archive
    )?;
    writeln!(
        out,
        "batch: {} bucket(s) rolled up, {} failed, {} waiting (not ended yet, or their inputs incomplete); store {}",
        batch.ran,
        batch.failed.len(),
        batch.waiting,
        topk_store::redact(&pipeline.cfg.store)
    )?;
    drop(out);
    for (bucket, error) in &batch.failed {
        eprintln!("batch: {bucket}: {error}");
    }
    pipeline.shutdown()?;
    if !batch.failed.is_empty() {
        anyhow::bail!("{} batch run(s) failed; see `topk batch status`", batch.failed.len());
    }
    nothing_accepted(&summary.report)?;
    Ok(summary)
}

/// Sends `files` to a running `topk serve`, resuming from what the server has.
pub fn replay_remote(server: &str, token: Option<&str>, paths: &[PathBuf]) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let server = server.trim_end_matches('/');
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        bail!("--server {server:?}: give the server's URL with its scheme, like http://127.0.0.1:8080");
    }
    catch_interrupts()?;
    let client = reqwest::blocking::Client::builder().timeout(None).build()?;
    let auth = |req: reqwest::blocking::RequestBuilder| match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let total = total_bytes(paths);
    let bar = Bar::new(total);
    let mut summary = Summary { bytes: total, ..Summary::default() };
    for path in paths {
        if Format::of(path) == Format::Csv {
            bail!("{}: replay --server sends NDJSON only; replay CSV files locally", path.display());
        }
        let id = files::source_id(path)?;
        let resp = auth(client.get(format!("{server}/api/v1/sources/{id}"))).send()?;
        if !resp.status().is_success() {
            bail!("{server}: GET /api/v1/sources/{id}: {} {}", resp.status(), resp.text().unwrap_or_default());
        }
        let start: serde_json::Value = resp.json()?;
        let (from, mut line) = (start["offset"].as_u64().unwrap_or(0), start["line"].as_u64().unwrap_or(0) + 1);
        if from > 0 {
            eprintln!("{}: the server already has the first {} lines; sending the rest", path.display(), line - 1);
            summary.skipped_lines += line - 1;
        }
        bar.bar.inc(from);
        let mut report = IngestReport::default();
        files::for_each_chunk(path, from, |offset, piece| -> anyhow::Result<()> {
            if interrupted() {
                return Err(FileError::Interrupted.into());
            }
            let chunk = match piece {
                Piece::Lines(chunk) => chunk,
                Piece::TooLong { len } => {
                    report.add_rejections(vec![files::too_long(line, len)]);
                    line += 1;
                    bar.bar.inc(len);
                    return Ok(());
                }
            };
            let url = format!("{server}/api/v1/events?source={id}&offset={offset}&line={line}");
            let resp = auth(client.post(url)).body(chunk.to_vec()).send()?;
            let status = resp.status();
            let text = resp.text()?;
            if !(status.is_success() || status == reqwest::StatusCode::BAD_REQUEST) {
                bail!("{server}: POST /api/v1/events: {status} {text}");
            }
            let r: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("server reply {text:?}"))?;
            let rejected: Vec<Rejection> = serde_json::from_value(r["rejected"].clone()).unwrap_or_default();
            let lines = memchr::memchr_iter(b'\n', chunk).count() as u64;
            report.merge(IngestReport {
                lines,
                accepted: r["accepted"].as_u64().unwrap_or(0),
                already_ingested: r["already_ingested"].as_u64().unwrap_or(0),
                rejected_count: r["rejected_count"].as_u64().unwrap_or(0),
                rejected,
                rejected_by_field: serde_json::from_value(r["rejected_by_field"].clone()).unwrap_or_default(),
            });
            line += lines;
            files::Progress::read(&bar, chunk.len() as u64);
            files::Progress::accepted(&bar, report.accepted);
            Ok(())
        })?;
        print_rejections(path, &report.rejected, report.rejected_count);
        summary.files += 1;
        summary.report.merge(report);
    }
    bar.bar.finish_and_clear();
    summary.elapsed_s = started.elapsed().as_secs_f64();
    writeln!(
        std::io::stdout(),
        "sent {} file(s) in {:.1} s: {} events accepted, {} rejected, {} already ingested earlier ({} lines the server had were not sent again)",
        summary.files,
        summary.elapsed_s,
        summary.report.accepted,
        summary.report.rejected_count,
        summary.report.already_ingested,
        summary.skipped_lines,
    )?;
    if summary.skipped_lines == 0 {
        nothing_accepted(&summary.report)?;
    }
    Ok(summary)
}
