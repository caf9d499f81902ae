//! The flush batch: what the aggregator writes to the flush log, one log record each, and
//! what the archive, the speed layer and the aggregator's own recovery read back — the
//! contract between the roles, kept here beside the event codec.
//!
//! Binary little-endian layout (version byte first, so the format can evolve; version 2
//! lacks `slot`; versions 2 and 3 carry names without categories; versions 2 to 4 carry
//! rows without dimensions):
//! ```text
//! u8 version=5 | u64 slot | u32 partition | u64 first_offset | u64 end_offset | i64 watermark
//! i64 max_event_ts | u64 dedup_from | i64 dedup_from_max_ts | u8 end_of_input
//! u64 accepted | u64 duplicates | u64 late
//! u32 rows, each: u8 len + product_id | i64 hour | i64 count | i64 revenue | i64 earliest | i64 latest
//!     | u8 has_dims, then if 1: (u16 len + value) for country, city, category
//! u32 products, each: u8 len + product_id | u16 len + product_name | u16 len + category
//! ```
//! (an empty name or category: the events carried none.)

use crate::breakdown::DimValues;
use crate::bytes::{ReadError, Reader};

const VERSION: u8 = 5;
/// Rows without dimensions: read.
const VERSION_NO_DIMS: u8 = 4;
/// With `slot`, names without categories: read.
const VERSION_NAMES: u8 = 3;
/// Without `slot`: read, and never taken for a superseded aggregator's.
const VERSION_UNFENCED: u8 = 2;

/// The name and category a product's events carried (the product catalog's input).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductInfo {
    pub product_id: String,
    pub name: Option<String>,
    pub category: Option<String>,
}

/// Sums for one (product, hour) — and values of the dimensions that breakdowns use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggRow {
    pub product_id: String,
    /// Start of the hour, epoch ms.
    pub hour_ms: i64,
    /// Net quantity (refunds subtract).
    pub count: i64,
    pub revenue_cents: i64,
    pub earliest_ts_ms: i64,
    pub latest_ts_ms: i64,
    /// The events' country, city and category, where a configured breakdown uses them
    /// (empty otherwise, or where the events carried none).
    pub dims: DimValues,
}

/// One flush of one partition's aggregates; `(partition, first_offset, end_offset)` is its
/// flush_id: the events log offsets `first_offset .. end_offset` it covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlushBatch {
    /// The flush log offset its writer expected it to land at (the end of the log when it
    /// last read or wrote it). Found anywhere else, another aggregator wrote the partition
    /// in between: this one was superseded, and every reader ignores the batch (see the
    /// crate docs). `None` in version 2 batches.
    pub slot: Option<u64>,
    pub partition: u32,
    pub first_offset: u64,
    /// One past the last covered offset; equals `first_offset` for a heartbeat.
    pub end_offset: u64,
    /// Event time below which this partition expects no more events (max ts - lateness).
    pub watermark_ms: i64,
    pub max_event_ts_ms: i64,
    /// Replaying the events log from here rebuilds the dedup window (see the crate docs).
    pub dedup_from: u64,
    /// The partition's newest event time just before `dedup_from`.
    pub dedup_from_max_ts: i64,
    /// The flush answering a producer's end of input (a finished replay): its watermark
    /// was moved to the wall clock less the allowed lateness, and readers act on it at
    /// once (the archive records it without waiting for a full group).
    pub end_of_input: bool,
    pub accepted: u64,
    pub duplicates: u64,
    pub late: u64,
    pub rows: Vec<AggRow>,
    /// The newest name and category of each product whose covered events carried one, by
    /// product id: the product catalog is filled from these (and the rows' ids), so it is
    /// exactly as durable as the counts.
    pub products: Vec<ProductInfo>,
}

impl FlushBatch {
    /// The last covered offset, for names like `part-P-FIRST-LAST`; `None` for a heartbeat.
    pub fn last_offset(&self) -> Option<u64> {
        (self.end_offset > self.first_offset).then(|| self.end_offset - 1)
    }

    /// Reads the flush record found at `offset` of the flush log: `None` if a superseded
    /// aggregator wrote it (it landed elsewhere than its slot), which readers skip.
    pub fn read(offset: u64, payload: &[u8]) -> Result<Option<FlushBatch>, CorruptFlush> {
        Ok(FlushBatch::decode(payload)?.in_slot(offset))
    }

    /// [`FlushBatch::read`] without the rows and products (left empty): for a reader that
    /// keeps the record as it is until it needs them.
    pub fn read_header(offset: u64, payload: &[u8]) -> Result<Option<FlushBatch>, CorruptFlush> {
        let (_, batch) = FlushBatch::decode_header(&mut Reader::new(payload))?;
        Ok(batch.in_slot(offset))
    }

    fn in_slot(self, offset: u64) -> Option<FlushBatch> {
        match self.slot {
            Some(slot) if slot != offset => {
                tracing::warn!(
                    partition = self.partition,
                    offset,
                    slot,
                    first = self.first_offset,
                    end = self.end_offset,
                    "ignoring a flush written by a superseded aggregator"
                );
                None
            }
            _ => Some(self),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(72 + self.rows.len() * 56);
        match self.slot {
            Some(slot) => {
                out.push(VERSION);
                out.extend_from_slice(&slot.to_le_bytes());
            }
            None => out.push(VERSION_UNFENCED),
        }
        out.extend_from_slice(&self.partition.to_le_bytes());
        for v in [self.first_offset, self.end_offset] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.watermark_ms, self.max_event_ts_ms] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.dedup_from.to_le_bytes());
        out.extend_from_slice(&self.dedup_from_max_ts.to_le_bytes());
        out.push(u8::from(self.end_of_input));
        for v in [self.accepted, self.duplicates, self.late] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for r in &self.rows {
            out.push(r.product_id.len() as u8);
            out.extend_from_slice(r.product_id.as_bytes());
            for v in [r.hour_ms, r.count, r.revenue_cents, r.earliest_ts_ms, r.latest_ts_ms] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            if self.slot.is_some() {
                // Only the current version has dimensions (see the products below).
                let has_dims = r.dims.iter().any(|d| !d.is_empty());
                out.push(u8::from(has_dims));
                for d in r.dims.iter().filter(|_| has_dims) {
                    out.extend_from_slice(&(d.len() as u16).to_le_bytes());
                    out.extend_from_slice(d.as_bytes());
                }
            }
        }
        out.extend_from_slice(&(self.products.len() as u32).to_le_bytes());
        for p in &self.products {
            out.push(p.product_id.len() as u8);
            out.extend_from_slice(p.product_id.as_bytes());
            // Validation caps both at 256 bytes. An unfenced batch has version 2's layout,
            // names only (aggregators always write a slot; this keeps encode and decode
            // inverse for the old layout too — the fuzz target `flush_batch` found it).
            let texts: &[&Option<String>] = if self.slot.is_some() { &[&p.name, &p.category] } else { &[&p.name] };
            for text in texts {
                let t = text.as_deref().unwrap_or("");
                out.extend_from_slice(&(t.len() as u16).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
            }
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<FlushBatch, CorruptFlush> {
        let mut c = Reader::new(buf);
        let (version, mut b) = FlushBatch::decode_header(&mut c)?;
        let rows = c.u32()? as usize;
        b.rows.reserve(rows.min(buf.len() / 41));
        for _ in 0..rows {
            let n = c.u8()? as usize;
            let mut row = AggRow {
                product_id: c.str(n)?.to_string(),
                hour_ms: c.i64()?,
                count: c.i64()?,
                revenue_cents: c.i64()?,
                earliest_ts_ms: c.i64()?,
                latest_ts_ms: c.i64()?,
                dims: DimValues::default(),
            };
            if version == VERSION && c.u8()? != 0 {
                for d in &mut row.dims {
                    let n = c.u16()? as usize;
                    *d = c.str(n)?.to_string();
                }
            }
            b.rows.push(row);
        }
        let text = |c: &mut Reader<'_>| -> Result<Option<String>, CorruptFlush> {
            let n = c.u16()? as usize;
            Ok(Some(c.str(n)?).filter(|t| !t.is_empty()).map(str::to_string))
        };
        for _ in 0..c.u32()? {
            let n = c.u8()? as usize;
            let product_id = c.str(n)?.to_string();
            let name = text(&mut c)?;
            let category = if matches!(version, VERSION | VERSION_NO_DIMS) { text(&mut c)? } else { None };
            b.products.push(ProductInfo { product_id, name, category });
        }
        c.end()?;
        Ok(b)
    }

    /// The version and the fixed fields before the rows.
    fn decode_header(c: &mut Reader<'_>) -> Result<(u8, FlushBatch), CorruptFlush> {
        let version = c.u8()?;
        let slot = match version {
            VERSION | VERSION_NO_DIMS | VERSION_NAMES => Some(c.u64()?),
            VERSION_UNFENCED => None,
            version => return Err(CorruptFlush(format!("unknown flush batch version {version}"))),
        };
        let b = FlushBatch {
            slot,
            partition: c.u32()?,
            first_offset: c.u64()?,
            end_offset: c.u64()?,
            watermark_ms: c.i64()?,
            max_event_ts_ms: c.i64()?,
            dedup_from: c.u64()?,
            dedup_from_max_ts: c.i64()?,
            end_of_input: c.u8()? != 0,
            accepted: c.u64()?,
            duplicates: c.u64()?,
            late: c.u64()?,
            ..FlushBatch::default()
        };
        Ok((version, b))
    }
}

/// A flush record that does not decode: the flush log is corrupt or from another version.
#[derive(Debug, thiserror::Error)]
#[error("corrupt flush batch: {0}")]
pub struct CorruptFlush(String);

impl From<ReadError> for CorruptFlush {
    fn from(e: ReadError) -> Self {
        CorruptFlush(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let b = FlushBatch {
            slot: Some(42 << 24),
            partition: 3,
            first_offset: 10,
            end_offset: 20,
            watermark_ms: -5,
            max_event_ts_ms: 1_800_000_000_000,
            dedup_from: 4,
            dedup_from_max_ts: 7,
            end_of_input: true,
            accepted: 9,
            duplicates: 1,
            late: 2,
            rows: vec![AggRow {
                product_id: "p1".into(),
                hour_ms: 3_600_000,
                count: -2,
                revenue_cents: -500,
                earliest_ts_ms: 3_600_001,
                latest_ts_ms: 3_700_000,
                dims: ["DE".into(), String::new(), "toys".into()],
            }],
            products: vec![
                ProductInfo { product_id: "p1".into(), name: Some("Widget".into()), category: Some("tools".into()) },
                ProductInfo { product_id: "p2".into(), name: None, category: Some("toys".into()) },
            ],
        };
        let bytes = b.encode();
        assert_eq!(FlushBatch::decode(&bytes).unwrap(), b);
        assert_eq!(b.last_offset(), Some(19));
        let header = FlushBatch { rows: Vec::new(), products: Vec::new(), ..b.clone() };
        assert_eq!(FlushBatch::read_header(42 << 24, &bytes).unwrap(), Some(header));
        for cut in 0..bytes.len() {
            assert!(FlushBatch::decode(&bytes[..cut]).is_err());
        }
        let no_dims = |b: &FlushBatch| {
            let rows = b.rows.iter().map(|r| AggRow { dims: Default::default(), ..r.clone() }).collect();
            FlushBatch { rows, ..b.clone() }
        };
        let unfenced = FlushBatch { slot: None, products: Vec::new(), ..no_dims(&b) };
        assert_eq!(unfenced.encode()[0], VERSION_UNFENCED);
        assert_eq!(FlushBatch::decode(&unfenced.encode()).unwrap(), unfenced);
        // Version 2 carries names, not categories: what it decodes encodes back the same.
        let named = FlushBatch {
            slot: None,
            products: vec![ProductInfo { product_id: "p1".into(), name: Some("Widget".into()), category: None }],
            ..no_dims(&b)
        };
        assert_eq!(FlushBatch::decode(&named.encode()).unwrap(), named);
        // A version 3 batch (names, no categories) written before categories travelled here.
        // A version 4 batch (categories, rows without dimensions).
        let mut v4 = no_dims(&b).encode();
        v4[0] = VERSION_NO_DIMS;
        let at = 1 + 8 + 4 + 8 * 6 + 1 + 8 * 3 + 4 + 3 + 8 * 5;
        assert_eq!(v4.remove(at), 0, "the has_dims byte of the row");
        assert_eq!(FlushBatch::decode(&v4).unwrap(), no_dims(&b));
        let mut v3 = vec![VERSION_NAMES];
        let mut tail = FlushBatch { products: Vec::new(), rows: Vec::new(), ..b }.encode();
        tail.truncate(tail.len() - 4);
        v3.extend_from_slice(&tail[1..]);
        v3.extend_from_slice(&1u32.to_le_bytes());
        v3.extend_from_slice(&[2, b'p', b'1', 6, 0]);
        v3.extend_from_slice(b"Widget");
        let old = FlushBatch::decode(&v3).unwrap();
        assert_eq!(
            old.products,
            [ProductInfo { product_id: "p1".into(), name: Some("Widget".into()), category: None }]
        );
    }

    /// Found by the fuzz target `flush_batch`: a version 2 batch with a product decoded,
    /// but its encoding wrote a category version 2 does not have, and did not decode.
    #[test]
    fn a_decoded_batch_encodes_to_bytes_that_decode_to_it() {
        let found = [
            2u8, 0, 0, 0, 2, 46, 46, 254, 254, 254, 156, 156, 156, 156, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
        ];
        let b = FlushBatch::decode(&found).unwrap();
        assert_eq!(b.products.len(), 1);
        assert_eq!(FlushBatch::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn a_batch_found_outside_its_slot_is_skipped() {
        let at = |base_offset: u64, batch: &FlushBatch| {
            let whole = FlushBatch::read(base_offset, &batch.encode()).unwrap();
            assert_eq!(
                FlushBatch::read_header(base_offset, &batch.encode()).unwrap(),
                whole,
                "the header decides alike"
            );
            whole
        };
        let b = FlushBatch { slot: Some(7), partition: 1, first_offset: 3, end_offset: 9, ..FlushBatch::default() };
        assert_eq!(at(7, &b), Some(b.clone()));
        assert_eq!(at(8, &b), None, "another aggregator wrote offset 7");
        let unfenced = FlushBatch { slot: None, ..b };
        assert_eq!(at(8, &unfenced), Some(unfenced.clone()), "version 2 batches always count");
    }
}
