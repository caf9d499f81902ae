//! Hand-written line formatting: one reused buffer, a cached date per day (chrono or
//! `format!` per line would dominate generating tens of millions of events).

use topk_core::time::civil_from_days;
use topk_core::DAY_MS;

use crate::{category, price_cents, CITIES, COUNTRIES};

/// One event to print; `sale_ts` is set only for refunds.
pub(crate) struct Event {
    pub(crate) seq: u64,
    pub(crate) ts: i64,
    pub(crate) rank: u64,
    pub(crate) quantity: i64,
    pub(crate) country: u8,
    /// Index into the country's [`CITIES`].
    pub(crate) city: u8,
    pub(crate) sale_ts: Option<i64>,
}

/// Hand-rolled line formatting with a cached `YYYY-MM-DD` per day.
pub(crate) struct LineFormatter {
    id_prefix: Vec<u8>,
    day: i64,
    date: [u8; 10],
}

impl LineFormatter {
    pub(crate) fn new(id_prefix: String) -> Self {
        LineFormatter { id_prefix: id_prefix.into_bytes(), day: i64::MIN, date: [0; 10] }
    }

    pub(crate) fn write_ndjson(&mut self, ev: &Event, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"{\"event_id\":\"");
        self.push_event_id(ev.seq, buf);
        if ev.sale_ts.is_some() {
            buf.extend_from_slice(b"\",\"kind\":\"refund");
        }
        buf.extend_from_slice(b"\",\"ts\":\"");
        self.push_ts(ev.ts, buf);
        if let Some(sale_ts) = ev.sale_ts {
            buf.extend_from_slice(b"\",\"sale_ts\":\"");
            self.push_ts(sale_ts, buf);
        }
        buf.extend_from_slice(b"\",\"product_id\":\"p");
        push_u64(ev.rank, 7, buf);
        buf.extend_from_slice(b"\",\"quantity\":");
        push_i64(ev.quantity, buf);
        buf.extend_from_slice(b",\"price_cents\":");
        push_u64(price_cents(ev.rank), 1, buf);
        buf.extend_from_slice(b",\"country\":\"");
        buf.extend_from_slice(COUNTRIES[ev.country as usize].as_bytes());
        buf.extend_from_slice(b"\",\"city\":\"");
        buf.extend_from_slice(CITIES[ev.country as usize][ev.city as usize].as_bytes());
        buf.extend_from_slice(b"\",\"category\":\"");
        buf.extend_from_slice(category(ev.rank).as_bytes());
        buf.extend_from_slice(b"\",\"product_name\":\"Product ");
        push_u64(ev.rank, 1, buf);
        buf.extend_from_slice(b"\"}\n");
    }

    /// Columns: event_id,ts,product_id,quantity,price_cents,kind,sale_ts,country,city,category,product_name
    pub(crate) fn write_csv(&mut self, ev: &Event, buf: &mut Vec<u8>) {
        self.push_event_id(ev.seq, buf);
        buf.push(b',');
        self.push_ts(ev.ts, buf);
        buf.extend_from_slice(b",p");
        push_u64(ev.rank, 7, buf);
        buf.push(b',');
        push_i64(ev.quantity, buf);
        buf.push(b',');
        push_u64(price_cents(ev.rank), 1, buf);
        buf.push(b',');
        if let Some(sale_ts) = ev.sale_ts {
            buf.extend_from_slice(b"refund,");
            self.push_ts(sale_ts, buf);
        } else {
            buf.push(b',');
        }
        buf.push(b',');
        buf.extend_from_slice(COUNTRIES[ev.country as usize].as_bytes());
        buf.push(b',');
        buf.extend_from_slice(CITIES[ev.country as usize][ev.city as usize].as_bytes());
        buf.push(b',');
        buf.extend_from_slice(category(ev.rank).as_bytes());
        buf.extend_from_slice(b",Product ");
        push_u64(ev.rank, 1, buf);
        buf.push(b'\n');
    }

    fn push_event_id(&self, seq: u64, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.id_prefix);
        push_u64(seq, 10, buf);
    }

    /// RFC 3339 UTC with milliseconds, e.g. `2026-12-10T00:00:01.123Z`.
    pub(crate) fn push_ts(&mut self, ms: i64, buf: &mut Vec<u8>) {
        let day = ms.div_euclid(DAY_MS);
        if day != self.day {
            let (y, m, d) = civil_from_days(day);
            let mut date = [0; 10];
            put_digits(&mut date[0..4], y.clamp(0, 9999) as u64);
            date[4] = b'-';
            put_digits(&mut date[5..7], u64::from(m));
            date[7] = b'-';
            put_digits(&mut date[8..10], u64::from(d));
            self.date = date;
            self.day = day;
        }
        // Fixed-size array so the copy into `buf` is a single inlined move.
        let t = ms.rem_euclid(DAY_MS) as u64;
        let mut out = *b"YYYY-MM-DDThh:mm:ss.mmmZ";
        out[..10].copy_from_slice(&self.date);
        put_digits(&mut out[11..13], t / 3_600_000);
        put_digits(&mut out[14..16], t / 60_000 % 60);
        put_digits(&mut out[17..19], t / 1000 % 60);
        put_digits(&mut out[20..23], t % 1000);
        buf.extend_from_slice(&out);
    }
}

/// Writes the last `dst.len()` decimal digits of `v` (zero-padded) into `dst`.
fn put_digits(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Decimal digits of `v`, left-padded with zeros to at least `width`.
fn push_u64(v: u64, width: usize, buf: &mut Vec<u8>) {
    let mut digits = 1;
    let mut rest = v / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    // Digits are written in place: copying from a scratch array showed up as
    // a memmove call per number in profiles.
    let len = buf.len();
    buf.resize(len + digits.max(width), b'0');
    put_digits(&mut buf[len..], v);
}

fn push_i64(v: i64, buf: &mut Vec<u8>) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(v.unsigned_abs(), 1, buf);
}
