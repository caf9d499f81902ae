//! An [`std::io::Write`] over the ingestor: whatever writes NDJSON lines (the generator
//! of `serve --demo`) ingests them through the same path as an HTTP body.

use std::io::Write;

use crate::Ingestor;

/// Buffers written bytes and ingests them in batches of whole lines (about 8 MiB each,
/// the rest on [`Write::flush`]).
pub struct IngestWriter {
    ingestor: Ingestor,
    buf: Vec<u8>,
    accepted: u64,
}

/// Bytes buffered before the whole lines among them are ingested.
const BATCH_BYTES: usize = 8 << 20;

impl IngestWriter {
    pub fn new(ingestor: Ingestor) -> IngestWriter {
        IngestWriter { ingestor, buf: Vec::new(), accepted: 0 }
    }

    /// Events accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    fn send(&mut self, all: bool) -> std::io::Result<()> {
        let cut = if all { self.buf.len() } else { self.buf.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1) };
        if cut > 0 {
            let report = self.ingestor.ingest_ndjson(&self.buf[..cut], 1, 0, None).map_err(std::io::Error::other)?;
            self.accepted += report.accepted;
            self.buf.drain(..cut);
        }
        Ok(())
    }
}

impl Write for IngestWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= BATCH_BYTES {
            self.send(false)?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send(true)
    }
}
