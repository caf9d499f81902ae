//! `topk replay FILE...`: runs input files through the embedded pipeline (or sends them
//! to a running server), resuming exactly where an interrupted run of the same file stopped.
//!
//! A file is identified by its name and its first 64 KiB, and every appended batch
//! records how far into the file it reaches, atomically with its events (see
//! `topk_log::SourcePos`). Running the same replay again after a crash therefore skips
//! exactly the lines already in the log; running it after a complete replay does nothing.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use topk_core::event::{CsvHeader, LineInfo, Rejection};
use topk_log::SourcePos;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::Config;
use crate::pipeline::{IngestReport, Ingestor, Pipeline, SourceResume};

/// Bytes of input per appended batch: large enough to amortise the fsync.
const CHUNK: usize = 32 << 20;
/// A line longer than this is an error rather than an unbounded buffer.
const MAX_LINE: usize = 64 << 20;
/// CSV records per appended batch.
const CSV_CHUNK: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    /// `.csv` (also `.csv.*`) is CSV, anything else NDJSON.
    pub fn of(path: &Path) -> Format {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.ends_with(".csv") || name.contains(".csv.") {
            Format::Csv
        } else {
            Format::Ndjson
        }
    }
}

/// The stable identity of an input file: its name and first 64 KiB.
pub fn source_id(path: &Path) -> anyhow::Result<u64> {
    let mut head = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().into_bytes();
    head.push(0);
    File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_end(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    // 0 means "no source" in the log, so never hand it out.
    Ok(xxh3_64(&head).max(1))
}

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

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}")
            .expect("valid template"),
    );
    bar
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

/// A replay stopped by SIGINT; what it appended is safe, and a rerun resumes.
#[derive(Debug, thiserror::Error)]
#[error("interrupted: the lines appended so far are safe; run the same command again to resume")]
pub struct Interrupted;

/// How long a replay may take to stop in order after SIGINT before the process just
/// exits (safe at any moment: everything durable is crash-consistent).
const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Makes SIGINT stop a replay between two batches, in order, with a word on stderr and
/// status 130; a replay that is draining or rolling up stops at once the same way (every
/// step there is safe to cut short, like a kill -9).
fn catch_interrupts() -> anyhow::Result<()> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false))).clone();
    signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone()).context("handling SIGINT")?;
    std::thread::Builder::new().name("sigint".into()).spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        INTERRUPTED.store(true, Ordering::SeqCst);
        if READING.load(Ordering::SeqCst) {
            std::thread::sleep(INTERRUPT_GRACE);
        }
        eprintln!("{Interrupted}");
        std::process::exit(130);
    })?;
    Ok(())
}

fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Why a file whose every line was rejected may have been read wrongly.
fn format_hint(path: &Path, format: Format) -> Option<&'static str> {
    let mut head = Vec::new();
    File::open(path).ok()?.take(4096).read_to_end(&mut head).ok()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Some("the file is gzip-compressed: decompress it first (gunzip)");
    }
    let first =
        head.split(|&b| b == b'\n').map(|l| String::from_utf8_lossy(l).trim().to_string()).find(|l| !l.is_empty())?;
    match format {
        Format::Ndjson if !first.starts_with('{') && first.contains(',') => {
            Some("it looks like CSV: name the file .csv or pass --format csv")
        }
        Format::Csv if first.starts_with('{') => Some("it looks like NDJSON: pass --format ndjson"),
        _ => None,
    }
}

/// Replays `files` in-process on the data directory; returns when everything is
/// flushed and archived.
pub fn replay_local(cfg: Config, files: &[PathBuf], format: Option<Format>) -> anyhow::Result<Summary> {
    let started = Instant::now();
    // Every input must be readable before anything (the data directory) is created.
    for path in files {
        File::open(path).with_context(|| format!("opening {}", path.display()))?;
    }
    catch_interrupts()?;
    let pipeline = Pipeline::start(cfg)?;
    let total = total_bytes(files);
    let bar = progress_bar(total);
    let mut summary = Summary::default();
    let mut ingestor = pipeline.ingestor();
    READING.store(true, Ordering::SeqCst);
    for path in files {
        let format = format.unwrap_or_else(|| Format::of(path));
        let report = match format {
            Format::Ndjson => replay_ndjson(&pipeline, &mut ingestor, path, &bar, started),
            Format::Csv => replay_csv(&pipeline, &mut ingestor, path, &bar, started),
        };
        let report = match report {
            Ok(report) => report,
            Err(e) => {
                bar.finish_and_clear();
                if e.is::<Interrupted>() {
                    // Stop in order, so what was appended is flushed and committed.
                    pipeline.shutdown()?;
                }
                return Err(e);
            }
        };
        print_rejections(path, &report.rejected, report.rejected_count);
        if report.accepted == 0 && report.already_ingested == 0 && report.rejected_count > 0 {
            if let Some(hint) = format_hint(path, format) {
                eprintln!("{}: every line was rejected: {hint}", path.display());
            }
        }
        summary.files += 1;
        summary.report.merge(report);
    }
    READING.store(false, Ordering::SeqCst);
    if let Err(e) = check_interrupted() {
        bar.finish_and_clear();
        pipeline.shutdown()?;
        return Err(e);
    }
    tracing::info!(elapsed_s = started.elapsed().as_secs_f64(), "input appended; draining");
    bar.set_message("flushing and archiving…");
    pipeline.drain()?;
    tracing::info!(elapsed_s = started.elapsed().as_secs_f64(), "flushed and archived; rolling up");
    bar.set_message("rolling up…");
    let batch = pipeline.catch_up_batch()?;
    bar.finish_and_clear();
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

/// A replay in which every line was rejected did not do what was asked: an error.
fn nothing_accepted(r: &IngestReport) -> anyhow::Result<()> {
    if r.accepted == 0 && r.already_ingested == 0 && r.rejected_count > 0 {
        bail!("no event was accepted: all {} lines were rejected (see the messages above)", r.rejected_count);
    }
    Ok(())
}

fn set_rate(bar: &ProgressBar, started: Instant, accepted: u64) {
    let rate = accepted as f64 / started.elapsed().as_secs_f64().max(1e-9);
    bar.set_message(format!("{accepted} events, {rate:.0} events/s"));
}

/// Where to resume `path` from, or `None` if an earlier run replayed all of it.
fn resume_point(
    pipeline: &Pipeline,
    path: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<Option<(SourceResume, SourcePos)>> {
    let (resume, start) = SourceResume::load(&*pipeline.events, source_id(path)?)?;
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if start.pos >= len {
        bar.inc(len);
        eprintln!("{}: already replayed completely, nothing to do", path.display());
        return Ok(None);
    }
    Ok(Some((resume, start)))
}

fn replay_ndjson(
    pipeline: &Pipeline,
    ingestor: &mut Ingestor,
    path: &Path,
    bar: &ProgressBar,
    started: Instant,
) -> anyhow::Result<IngestReport> {
    let Some((mut resume, start)) = resume_point(pipeline, path, bar)? else { return Ok(IngestReport::default()) };
    let mut report = IngestReport::default();
    if start.pos > 0 {
        tracing::info!(file = %path.display(), offset = start.pos, line = start.line + 1, "resuming replay");
    }
    bar.inc(start.pos);
    let mut line = start.line + 1;
    for_each_chunk(path, start.pos, |offset, piece| {
        check_interrupted()?;
        match piece {
            Piece::Lines(chunk) => {
                let r = ingestor.ingest_ndjson(chunk, line, offset, Some(&mut resume))?;
                line += r.lines;
                report.merge(r);
                bar.inc(chunk.len() as u64);
            }
            Piece::TooLong { len } => {
                let mut rejected = IngestReport::default();
                rejected.add_rejections(vec![too_long(line, len)]);
                report.merge(rejected);
                line += 1;
                // Record the position past it, so a rerun resumes after the line.
                ingestor.ingest_ndjson(b"", line, offset + len, Some(&mut resume))?;
                bar.inc(len);
            }
        }
        set_rate(bar, started, report.accepted);
        Ok(())
    })?;
    Ok(report)
}

/// What [`for_each_chunk`] hands out: whole lines, or the length of one line too long to
/// hold (skipped, to be rejected on its own).
enum Piece<'a> {
    Lines(&'a [u8]),
    TooLong { len: u64 },
}

/// The rejection of a line over [`MAX_LINE`] bytes.
fn too_long(line: u64, len: u64) -> Rejection {
    Rejection {
        line,
        field: None,
        reason: format!("the line is longer than {} MiB ({len} bytes): skipped", MAX_LINE >> 20),
    }
}

/// Reads `path` from byte `from` in chunks of whole lines (about [`CHUNK`] bytes; the
/// last may lack its newline) and hands each to `f` with its offset in the file. A line
/// longer than [`MAX_LINE`] is read past, not held, and handed over as its length.
fn for_each_chunk(
    path: &Path,
    from: u64,
    mut f: impl FnMut(u64, Piece<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    file.seek(SeekFrom::Start(from))?;
    let mut offset = from;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + (64 << 10));
    let mut eof = false;
    // Bytes of an over-long line read past so far.
    let mut skipping: Option<u64> = None;
    loop {
        if !eof {
            let before = buf.len();
            (&mut file).take(CHUNK as u64).read_to_end(&mut buf)?;
            eof = buf.len() - before < CHUNK;
        }
        if let Some(skipped) = skipping {
            match memchr::memchr(b'\n', &buf) {
                Some(i) => {
                    let len = skipped + i as u64 + 1;
                    f(offset, Piece::TooLong { len })?;
                    offset += len;
                    buf.drain(..=i);
                    skipping = None;
                }
                None if eof => {
                    let len = skipped + buf.len() as u64;
                    return f(offset, Piece::TooLong { len });
                }
                None => {
                    skipping = Some(skipped + buf.len() as u64);
                    buf.clear();
                }
            }
            continue;
        }
        // Cut after the last complete line; at the end of the file take everything.
        let cut = match memchr::memrchr(b'\n', &buf) {
            _ if eof && buf.len() <= MAX_LINE => buf.len(),
            Some(i) => i + 1,
            None if buf.len() > MAX_LINE => {
                skipping = Some(buf.len() as u64);
                buf.clear();
                continue;
            }
            None => continue,
        };
        if cut == 0 {
            return Ok(());
        }
        f(offset, Piece::Lines(&buf[..cut]))?;
        offset += cut as u64;
        buf.drain(..cut);
    }
}

fn replay_csv(
    pipeline: &Pipeline,
    ingestor: &mut Ingestor,
    path: &Path,
    bar: &ProgressBar,
    started: Instant,
) -> anyhow::Result<IngestReport> {
    let Some((mut resume, start)) = resume_point(pipeline, path, bar)? else { return Ok(IngestReport::default()) };
    let id = resume.source;
    let open = || File::open(path).with_context(|| format!("opening {}", path.display()));
    let mut report = IngestReport::default();
    let builder = || {
        let mut b = csv::ReaderBuilder::new();
        b.has_headers(false).flexible(true);
        b
    };
    let mut rdr = builder().from_reader(std::io::BufReader::with_capacity(1 << 20, open()?));
    let mut record = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut record)? {
        return Ok(report);
    }
    let header = CsvHeader::new(&record).map_err(|e| anyhow::anyhow!("{}: line 1: {e}", path.display()))?;
    let (base, base_line) = if start.pos > 0 {
        let mut f = open()?;
        f.seek(SeekFrom::Start(start.pos))?;
        rdr = builder().from_reader(std::io::BufReader::with_capacity(1 << 20, f));
        (start.pos, start.line)
    } else {
        (0, 0)
    };
    bar.inc(base + rdr.position().byte());
    let mut done = base + rdr.position().byte();
    loop {
        check_interrupted()?;
        let mut rejections = Vec::new();
        let mut n = 0;
        let mut more = true;
        while n < CSV_CHUNK {
            let at = rdr.position().clone();
            let line = base_line + at.line();
            match rdr.read_byte_record(&mut record) {
                Ok(false) => {
                    more = false;
                    break;
                }
                Ok(true) => {
                    let info = LineInfo { line, start: base + at.byte(), end: base + rdr.position().byte() };
                    let limits = ingestor.limits();
                    match header.parse(&record, line, &limits) {
                        Ok(ev) => report.tally(ingestor.add(info, &ev, Some(&resume))),
                        Err(r) => rejections.push(r),
                    }
                }
                Err(e) if e.is_io_error() => {
                    return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())))
                }
                Err(e) => rejections.push(Rejection { line, field: None, reason: format!("invalid CSV: {e}") }),
            }
            n += 1;
        }
        let pos =
            SourcePos { source: id, pos: base + rdr.position().byte(), line: base_line + rdr.position().line() - 1 };
        ingestor.commit(Some((&mut resume, pos)))?;
        let mut found = IngestReport::default();
        found.add_rejections(rejections);
        report.merge(found);
        bar.inc(pos.pos - done);
        done = pos.pos;
        set_rate(bar, started, report.accepted);
        if !more {
            return Ok(report);
        }
    }
}

/// Sends `files` to a running `topk serve`, resuming from what the server has.
pub fn replay_remote(server: &str, token: Option<&str>, files: &[PathBuf]) -> anyhow::Result<Summary> {
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
    let total = total_bytes(files);
    let bar = progress_bar(total);
    let mut summary = Summary { bytes: total, ..Summary::default() };
    for path in files {
        if Format::of(path) == Format::Csv {
            bail!("{}: replay --server sends NDJSON only; replay CSV files locally", path.display());
        }
        let id = source_id(path)?;
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
        bar.inc(from);
        let mut report = IngestReport::default();
        for_each_chunk(path, from, |offset, piece| {
            check_interrupted()?;
            let chunk = match piece {
                Piece::Lines(chunk) => chunk,
                Piece::TooLong { len } => {
                    let mut rejected = IngestReport::default();
                    rejected.add_rejections(vec![too_long(line, len)]);
                    report.merge(rejected);
                    line += 1;
                    bar.inc(len);
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
            bar.inc(chunk.len() as u64);
            set_rate(&bar, started, report.accepted);
            Ok(())
        })?;
        print_rejections(path, &report.rejected, report.rejected_count);
        summary.files += 1;
        summary.report.merge(report);
    }
    bar.finish_and_clear();
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
