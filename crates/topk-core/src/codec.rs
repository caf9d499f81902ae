//! The binary form of a validated event inside a log batch.
//!
//! Ingest parses JSON once; everything downstream reads this fixed little-endian layout,
//! which decodes with no allocation:
//!
//! ```text
//! u8 flags (1 = refund, 2 = has price, 4 = has sale_ts)
//! u128 event-id digest | i64 ts | i64 bucket ts | i64 quantity | i64 price_cents
//! u8 len + product_id | u16 len + country | u16 len + city | u16 len + category | u16 len + product_name
//! ```

use crate::event::{Event, Kind};
use crate::partition::event_id_digest;

const REFUND: u8 = 1;
const HAS_PRICE: u8 = 2;
const HAS_SALE_TS: u8 = 4;

/// Appends the encoded event to `out`.
pub fn encode(e: &Event<'_>, out: &mut Vec<u8>) {
    let mut flags = 0;
    if e.kind == Kind::Refund {
        flags |= REFUND;
    }
    if e.price_cents.is_some() {
        flags |= HAS_PRICE;
    }
    if e.sale_ts_ms.is_some() {
        flags |= HAS_SALE_TS;
    }
    out.push(flags);
    out.extend_from_slice(&event_id_digest(e.event_id.as_bytes()).to_le_bytes());
    for v in [e.ts_ms, e.bucket_ts_ms(), e.quantity, e.price_cents.unwrap_or(0)] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // Validation caps product_id at 128 bytes and texts at 256, so these lengths fit.
    debug_assert!(e.product_id.len() <= u8::MAX as usize);
    out.push(e.product_id.len() as u8);
    out.extend_from_slice(e.product_id.as_bytes());
    for text in [&e.country, &e.city, &e.category, &e.product_name] {
        let t = text.as_deref().unwrap_or("");
        out.extend_from_slice(&(t.len() as u16).to_le_bytes());
        out.extend_from_slice(t.as_bytes());
    }
}

/// An encoded event, borrowed from a log batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub id_digest: u128,
    pub ts_ms: i64,
    /// The time whose buckets the event counts in (a refund's sale_ts when given).
    pub bucket_ts_ms: i64,
    pub quantity: i64,
    pub price_cents: Option<i64>,
    pub refund: bool,
    pub product_id: &'a [u8],
    pub country: &'a [u8],
    pub city: &'a [u8],
    pub category: &'a [u8],
    pub product_name: &'a [u8],
}

impl EventRef<'_> {
    pub fn revenue_cents(&self) -> i64 {
        self.quantity * self.price_cents.unwrap_or(0)
    }
}

/// A batch payload that does not decode: only possible if the log is corrupt.
#[derive(Debug, thiserror::Error)]
#[error("corrupt event record at byte {at} of the batch")]
pub struct CorruptRecord {
    pub at: usize,
}

/// Iterates the events of one batch payload.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn text(&mut self) -> Option<&'a [u8]> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        self.take(n)
    }

    fn decode(&mut self) -> Option<EventRef<'a>> {
        let flags = *self.take(1)?.first()?;
        let id_digest = u128::from_le_bytes(self.take(16)?.try_into().ok()?);
        let (ts_ms, bucket_ts_ms, quantity, price) = (self.i64()?, self.i64()?, self.i64()?, self.i64()?);
        let plen = *self.take(1)?.first()? as usize;
        let product_id = self.take(plen)?;
        Some(EventRef {
            id_digest,
            ts_ms,
            bucket_ts_ms,
            quantity,
            price_cents: (flags & HAS_PRICE != 0).then_some(price),
            refund: flags & REFUND != 0,
            product_id,
            country: self.text()?,
            city: self.text()?,
            category: self.text()?,
            product_name: self.text()?,
        })
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Result<EventRef<'a>, CorruptRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let at = self.pos;
        match self.decode() {
            Some(e) => Some(Ok(e)),
            None => {
                self.pos = self.buf.len();
                Some(Err(CorruptRecord { at }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn round_trips_every_field() {
        let sale = Event {
            event_id: "e1".into(),
            ts_ms: 1_800_000_000_000,
            product_id: "p1".into(),
            quantity: 3,
            kind: Kind::Sale,
            sale_ts_ms: None,
            price_cents: Some(999),
            country: Some(Cow::Borrowed("DE")),
            city: None,
            category: Some("books".into()),
            product_name: Some("A Book".into()),
        };
        let refund = Event {
            kind: Kind::Refund,
            quantity: -1,
            sale_ts_ms: Some(1_799_000_000_000),
            price_cents: None,
            event_id: "r1".into(),
            ..sale.clone()
        };
        let mut buf = Vec::new();
        encode(&sale, &mut buf);
        encode(&refund, &mut buf);
        let got: Vec<_> = Decoder::new(&buf).map(Result::unwrap).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].product_id, b"p1");
        assert_eq!((got[0].quantity, got[0].price_cents, got[0].refund), (3, Some(999), false));
        assert_eq!(got[0].revenue_cents(), 2997);
        assert_eq!((got[0].country, got[0].city, got[0].product_name), (&b"DE"[..], &b""[..], &b"A Book"[..]));
        assert_eq!((got[1].bucket_ts_ms, got[1].ts_ms, got[1].refund), (1_799_000_000_000, 1_800_000_000_000, true));
        assert_eq!(got[1].price_cents, None);
        assert_ne!(got[0].id_digest, got[1].id_digest);
    }

    #[test]
    fn truncated_payload_is_an_error_not_a_panic() {
        let e = Event {
            event_id: "e1".into(),
            ts_ms: 1,
            product_id: "p".into(),
            quantity: 1,
            kind: Kind::Sale,
            sale_ts_ms: None,
            price_cents: None,
            country: None,
            city: None,
            category: None,
            product_name: None,
        };
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        for cut in 1..buf.len() {
            let items: Vec<_> = Decoder::new(&buf[..cut]).collect();
            assert!(matches!(items.as_slice(), [Err(CorruptRecord { at: 0 })]), "cut {cut}");
        }
    }
}
