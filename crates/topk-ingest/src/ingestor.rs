//! The ingest path: input lines parsed, validated and routed by product to the events
//! log's partitions, appended durably as one batch per partition.

use std::sync::Arc;

use topk_core::codec;
use topk_core::event::{parse_ndjson, Event, Limits, LineInfo, Rejection};
use topk_core::partition::partition_of;
use topk_log::{Log, LogError, SourcePos};

use crate::{IngestReport, IngestStats, SourceResume};

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
    stats: Arc<IngestStats>,
    max_future_ms: i64,
    routed: Routed,
    /// One per parse thread, reused between calls.
    scratch: Vec<Routed>,
}

impl Ingestor {
    pub fn new(log: Arc<dyn Log>, max_future_ms: i64, stats: Arc<IngestStats>) -> Self {
        let n = log.partitions();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        Ingestor { log, stats, max_future_ms, routed: Routed::new(n), scratch: vec![Routed::new(n); threads] }
    }

    /// Counts an ingest in the stats (the NDJSON calls do it themselves).
    pub fn record(&self, report: &IngestReport) {
        self.stats.record(report);
    }

    pub fn limits(&self) -> Limits {
        Limits { now_ms: topk_core::clock::now_ms(), max_future_ms: self.max_future_ms }
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
        self.stats.record(&report);
        Ok(report)
    }
}
