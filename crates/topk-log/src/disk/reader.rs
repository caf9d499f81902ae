//! Reading a partition: sequentially from any offset, only ever up to the durable end.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::Ordering;

use super::segment::{read_full, Header, HEADER_LEN};
use super::DiskLog;
use crate::{io_err, Batch, LogError, LogReader};

/// Reads one partition sequentially, only ever up to the durable end.
pub struct DiskReader {
    pub(super) log: DiskLog,
    pub(super) partition: u32,
    /// The next offset wanted.
    pub(super) next: u64,
    /// The open segment: (its base, the file, the position of the next header).
    pub(super) file: Option<(u64, io::BufReader<File>, u64)>,
}

impl LogReader for DiskReader {
    /// The next offset this reader will return.
    fn position(&self) -> u64 {
        self.next
    }

    /// The next batch at or after the current position, or `None` when caught up.
    /// The returned batch may start before the position if the position is mid-batch.
    fn next_batch(&mut self) -> Result<Option<Batch>, LogError> {
        let part = &self.log.inner.parts[self.partition as usize];
        if self.next >= part.visible_end.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut fresh = false;
        loop {
            if self.file.is_none() {
                self.seek()?;
                fresh = true;
            }
            let (_, f, pos) = self.file.as_mut().expect("seeked");
            let mut h = [0u8; HEADER_LEN];
            let path = || self.log.inner.dir.clone();
            if !read_full(f, &mut h).map_err(|e| LogError::Io { path: path(), source: e })? {
                if fresh {
                    let pos = *pos;
                    return Err(LogError::Corrupt {
                        path: path(),
                        pos,
                        what: format!("offset {} is indexed but not on disk", self.next),
                    });
                }
                // End of this segment: move on to the segment holding `next`.
                self.file = None;
                continue;
            }
            let header = Header::decode(&h).ok_or_else(|| LogError::Corrupt {
                path: path(),
                pos: *pos,
                what: "bad magic".into(),
            })?;
            let mut payload = vec![0u8; header.payload_len as usize];
            f.read_exact(&mut payload).map_err(|e| LogError::Io { path: path(), source: e })?;
            *pos += (HEADER_LEN + payload.len()) as u64;
            fresh = false;
            let batch = Batch { base_offset: header.base_offset, count: header.count, source: header.source, payload };
            if batch.end_offset() <= self.next {
                continue;
            }
            self.next = batch.end_offset();
            return Ok(Some(batch));
        }
    }
}

impl DiskReader {
    fn seek(&mut self) -> Result<(), LogError> {
        let st = self.log.lock(self.partition)?;
        let earliest = st.segments.keys().next().copied().unwrap_or(0);
        let Some((&base, seg)) = st.segments.range(..=self.next).next_back() else {
            return Err(LogError::OffsetGone { partition: self.partition, offset: self.next, earliest });
        };
        let i = seg.index.partition_point(|&(b, _)| b <= self.next).saturating_sub(1);
        let pos = seg.index.get(i).map_or(0, |&(_, pos)| pos);
        let mut f = File::open(&seg.path).map_err(io_err(&seg.path))?;
        f.seek(SeekFrom::Start(pos)).map_err(io_err(&seg.path))?;
        self.file = Some((base, io::BufReader::with_capacity(256 << 10, f), pos));
        Ok(())
    }
}
