//! Where a source (a replayed file, a source-topic partition) stands in the events log.

use topk_log::{Log, LogError, SourcePos};

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
