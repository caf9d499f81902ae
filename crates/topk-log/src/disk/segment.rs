//! A segment file: batches, each a 48-byte header and its payload, and the scan that
//! indexes a segment (and cuts off a torn tail) when the log opens.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::{io_err, LogError, SourcePos};

const MAGIC: u32 = 0x544B_4231; // "TKB1"
/// Size of a batch header in bytes.
pub const HEADER_LEN: usize = 48;

pub(super) struct Header {
    pub(super) crc: u32,
    pub(super) base_offset: u64,
    pub(super) count: u32,
    pub(super) payload_len: u32,
    pub(super) source: SourcePos,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&self.crc.to_le_bytes());
        h[8..16].copy_from_slice(&self.base_offset.to_le_bytes());
        h[16..20].copy_from_slice(&self.count.to_le_bytes());
        h[20..24].copy_from_slice(&self.payload_len.to_le_bytes());
        h[24..32].copy_from_slice(&self.source.source.to_le_bytes());
        h[32..40].copy_from_slice(&self.source.pos.to_le_bytes());
        h[40..48].copy_from_slice(&self.source.line.to_le_bytes());
        h
    }

    pub(super) fn decode(h: &[u8; HEADER_LEN]) -> Option<Header> {
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        (u32_at(0) == MAGIC).then(|| Header {
            crc: u32_at(4),
            base_offset: u64_at(8),
            count: u32_at(16),
            payload_len: u32_at(20),
            source: SourcePos { source: u64_at(24), pos: u64_at(32), line: u64_at(40) },
        })
    }

    pub(super) fn checksum(h: &[u8; HEADER_LEN], payload: &[u8]) -> u32 {
        crc32c::crc32c_append(crc32c::crc32c(&h[8..]), payload)
    }
}

pub(super) struct Segment {
    pub(super) path: PathBuf,
    /// (base offset, byte position) of every batch, for seeking by offset.
    pub(super) index: Vec<(u64, u64)>,
    pub(super) len: u64,
}

pub(super) fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// Reads exactly `buf.len()` bytes, or returns `Ok(false)` at a clean or torn end.
pub(super) fn read_full(f: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => return Ok(false),
            n => got += n,
        }
    }
    Ok(true)
}

/// Indexes a segment's batches. In the last segment every checksum is verified and a torn
/// or corrupt tail is truncated; earlier segments were fsynced when closed.
pub(super) fn scan_segment(
    path: &Path,
    base: u64,
    verify: bool,
    sources: &mut HashMap<u64, SourcePos>,
) -> Result<(Segment, u64), LogError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let mut r = io::BufReader::with_capacity(1 << 20, &file);
    let mut index = Vec::new();
    let (mut pos, mut expected) = (0u64, base);
    let mut payload = Vec::new();
    let mut h = [0u8; HEADER_LEN];
    let torn = loop {
        if pos == file_len {
            break None;
        }
        if !read_full(&mut r, &mut h).map_err(io_err(path))? {
            break Some("incomplete batch header");
        }
        let Some(header) = Header::decode(&h) else { break Some("bad magic") };
        if header.base_offset != expected {
            break Some("unexpected base offset");
        }
        let end = pos + HEADER_LEN as u64 + u64::from(header.payload_len);
        if end > file_len {
            break Some("incomplete batch payload");
        }
        if verify {
            payload.resize(header.payload_len as usize, 0);
            r.read_exact(&mut payload).map_err(io_err(path))?;
            if Header::checksum(&h, &payload) != header.crc {
                break Some("checksum mismatch");
            }
        } else {
            r.seek_relative(i64::from(header.payload_len)).map_err(io_err(path))?;
        }
        index.push((header.base_offset, pos));
        if header.source.source != 0 {
            sources.insert(header.source.source, header.source);
        }
        expected += u64::from(header.count);
        pos = end;
    };
    if let Some(what) = torn {
        if !verify {
            return Err(LogError::Corrupt { path: path.into(), pos, what: what.into() });
        }
        tracing::warn!(path = %path.display(), pos, dropped_bytes = file_len - pos, reason = what, "truncating torn log tail");
        file.set_len(pos).and_then(|_| file.sync_all()).map_err(io_err(path))?;
    }
    Ok((Segment { path: path.to_path_buf(), index, len: pos }, expected))
}
