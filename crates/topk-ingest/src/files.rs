//! Replaying files: NDJSON or CSV, resuming exactly where an interrupted run of the same
//! file stopped.
//!
//! A file is identified by its name and its first 64 KiB, and every appended batch
//! records how far into the file it reaches, atomically with its events (see
//! `topk_log::SourcePos`). Replaying the same file again after a crash therefore skips
//! exactly the lines already in the log; after a complete replay it does nothing.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use topk_core::event::{CsvHeader, LineInfo, Rejection};
use topk_log::{Log, LogError, SourcePos};
use xxhash_rust::xxh3::xxh3_64;

use crate::{IngestReport, Ingestor, SourceResume};

/// Bytes of input per appended batch: large enough to amortise the fsync.
const CHUNK: usize = 32 << 20;
/// A line longer than this is rejected alone rather than held in an unbounded buffer.
pub const MAX_LINE: usize = 64 << 20;
/// CSV records per appended batch.
const CSV_CHUNK: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{path}: line 1: {reason}")]
    Header { path: PathBuf, reason: String },
    /// The replay was asked to stop; what was appended is safe and a rerun resumes.
    #[error("interrupted: the lines appended so far are safe; run the same command again to resume")]
    Interrupted,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FileError + '_ {
    move |source| FileError::Io { path: path.to_path_buf(), source }
}

/// The two input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ndjson" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            other => Err(format!("unknown format {other:?} (expected ndjson or csv)")),
        }
    }
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
pub fn source_id(path: &Path) -> Result<u64, FileError> {
    let mut head = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().into_bytes();
    head.push(0);
    File::open(path).and_then(|f| f.take(64 << 10).read_to_end(&mut head)).map_err(io_err(path))?;
    // 0 means "no source" in the log, so never hand it out.
    Ok(xxh3_64(&head).max(1))
}

/// What a replay reports as it goes, for a progress display.
pub trait Progress {
    /// `bytes` more of the input were read.
    fn read(&self, bytes: u64);
    /// Events accepted so far in this file.
    fn accepted(&self, total: u64);
}

/// No progress display.
impl Progress for () {
    fn read(&self, _: u64) {}
    fn accepted(&self, _: u64) {}
}

/// What [`for_each_chunk`] hands out: whole lines, or the length of one line too long to
/// hold (skipped, to be rejected on its own).
pub enum Piece<'a> {
    Lines(&'a [u8]),
    TooLong { len: u64 },
}

/// The rejection of a line over [`MAX_LINE`] bytes.
pub fn too_long(line: u64, len: u64) -> Rejection {
    Rejection {
        line,
        field: None,
        reason: format!("the line is longer than {} MiB ({len} bytes): skipped", MAX_LINE >> 20),
    }
}

/// Reads `path` from byte `from` in chunks of whole lines (about [`CHUNK`] bytes; the
/// last may lack its newline) and hands each to `f` with its offset in the file. A line
/// longer than [`MAX_LINE`] is read past, not held, and handed over as its length.
pub fn for_each_chunk<E: From<FileError>>(
    path: &Path,
    from: u64,
    mut f: impl FnMut(u64, Piece<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut file = File::open(path).map_err(io_err(path))?;
    file.seek(SeekFrom::Start(from)).map_err(io_err(path))?;
    let mut offset = from;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + (64 << 10));
    let mut eof = false;
    // Bytes of an over-long line read past so far.
    let mut skipping: Option<u64> = None;
    loop {
        if !eof {
            let before = buf.len();
            (&mut file).take(CHUNK as u64).read_to_end(&mut buf).map_err(io_err(path))?;
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

/// Where to resume `path` from, or `None` if an earlier run replayed all of it.
pub fn resume_point(events: &dyn Log, path: &Path) -> Result<Option<(SourceResume, SourcePos)>, FileError> {
    let (resume, start) = SourceResume::load(events, source_id(path)?)?;
    let len = std::fs::metadata(path).map_err(io_err(path))?.len();
    Ok((start.pos < len).then_some((resume, start)))
}

/// Replays one file through `ingestor` into `events`, from where an earlier run of the
/// same file stopped. `stop` is asked between batches; a `true` ends the replay with
/// [`FileError::Interrupted`], everything appended so far being safe.
pub fn replay_file(
    ingestor: &mut Ingestor,
    events: &dyn Log,
    path: &Path,
    format: Format,
    progress: &dyn Progress,
    stop: &dyn Fn() -> bool,
) -> Result<IngestReport, FileError> {
    let Some((resume, start)) = resume_point(events, path)? else {
        progress.read(std::fs::metadata(path).map_err(io_err(path))?.len());
        return Ok(IngestReport::default());
    };
    if start.pos > 0 {
        tracing::info!(file = %path.display(), offset = start.pos, line = start.line + 1, "resuming replay");
    }
    progress.read(start.pos);
    match format {
        Format::Ndjson => replay_ndjson(ingestor, path, resume, start, progress, stop),
        Format::Csv => replay_csv(ingestor, path, resume, start, progress, stop),
    }
}

fn replay_ndjson(
    ingestor: &mut Ingestor,
    path: &Path,
    mut resume: SourceResume,
    start: SourcePos,
    progress: &dyn Progress,
    stop: &dyn Fn() -> bool,
) -> Result<IngestReport, FileError> {
    let mut report = IngestReport::default();
    let mut line = start.line + 1;
    for_each_chunk(path, start.pos, |offset, piece| {
        if stop() {
            return Err(FileError::Interrupted);
        }
        match piece {
            Piece::Lines(chunk) => {
                let r = ingestor.ingest_ndjson(chunk, line, offset, Some(&mut resume))?;
                line += r.lines;
                report.merge(r);
                progress.read(chunk.len() as u64);
            }
            Piece::TooLong { len } => {
                report.add_rejections(vec![too_long(line, len)]);
                line += 1;
                // Record the position past it, so a rerun resumes after the line.
                ingestor.ingest_ndjson(b"", line, offset + len, Some(&mut resume))?;
                progress.read(len);
            }
        }
        progress.accepted(report.accepted);
        Ok(())
    })?;
    Ok(report)
}

fn replay_csv(
    ingestor: &mut Ingestor,
    path: &Path,
    mut resume: SourceResume,
    start: SourcePos,
    progress: &dyn Progress,
    stop: &dyn Fn() -> bool,
) -> Result<IngestReport, FileError> {
    let id = resume.source;
    let open = || File::open(path).map_err(io_err(path));
    let mut report = IngestReport::default();
    let builder = || {
        let mut b = csv::ReaderBuilder::new();
        b.has_headers(false).flexible(true);
        b
    };
    let mut rdr = builder().from_reader(io::BufReader::with_capacity(1 << 20, open()?));
    let mut record = csv::ByteRecord::new();
    let csv_err = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(source) => FileError::Io { path: path.to_path_buf(), source },
        other => FileError::Header { path: path.to_path_buf(), reason: format!("{other:?}") },
    };
    if !rdr.read_byte_record(&mut record).map_err(csv_err)? {
        return Ok(report);
    }
    let header = CsvHeader::new(&record).map_err(|reason| FileError::Header { path: path.to_path_buf(), reason })?;
    let (base, base_line) = if start.pos > 0 {
        let mut f = open()?;
        f.seek(SeekFrom::Start(start.pos)).map_err(io_err(path))?;
        rdr = builder().from_reader(io::BufReader::with_capacity(1 << 20, f));
        (start.pos, start.line)
    } else {
        (0, 0)
    };
    progress.read(base + rdr.position().byte() - start.pos);
    let mut done = base + rdr.position().byte();
    loop {
        if stop() {
            return Err(FileError::Interrupted);
        }
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
                Err(e) if e.is_io_error() => return Err(csv_err(e)),
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
        progress.read(pos.pos - done);
        done = pos.pos;
        progress.accepted(report.accepted);
        if !more {
            return Ok(report);
        }
    }
}

/// Why a file whose every line was rejected may have been read wrongly.
pub fn format_hint(path: &Path, format: Format) -> Option<&'static str> {
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
