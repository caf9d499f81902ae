//! Deterministic synthetic sale events for tests, benchmarks and the live demo.
//!
//! Everything is driven by a tiny seeded RNG so that the same [`GenConfig`]
//! always produces byte-identical output (tests and benchmarks can compare
//! runs). Lines are formatted by hand into a reused buffer because chrono /
//! `format!` per line would dominate the cost of generating tens of millions
//! of events.

use std::io::{self, Write};
use topk_core::random::{Rng, Zipf};
use topk_core::DAY_MS;

mod format;
use format::{Event, LineFormatter};

/// Where generated events start unless told (`--start`).
pub const DEFAULT_START: &str = "2026-11-01T00:00:00Z";

/// Demo and `topk gen` products unless told: ids `p0000001`… ranked by popularity.
pub const DEFAULT_PRODUCTS: u64 = 100_000;

/// Small fixed list of ISO country codes, most sales first; plain ASCII so no JSON/CSV
/// escaping is needed.
const COUNTRIES: [&str; 10] = ["US", "DE", "GB", "FR", "JP", "BR", "IN", "CA", "AU", "NL"];
/// Each country's cities, most sales first.
const CITIES: [[&str; 3]; 10] = [
    ["New York", "Los Angeles", "Chicago"],
    ["Berlin", "Hamburg", "Munich"],
    ["London", "Manchester", "Birmingham"],
    ["Paris", "Lyon", "Marseille"],
    ["Tokyo", "Osaka", "Nagoya"],
    ["Sao Paulo", "Rio de Janeiro", "Brasilia"],
    ["Mumbai", "Delhi", "Bangalore"],
    ["Toronto", "Montreal", "Vancouver"],
    ["Sydney", "Melbourne", "Brisbane"],
    ["Amsterdam", "Rotterdam", "Utrecht"],
];
/// A product's category: a fixed function of its rank.
const CATEGORIES: [&str; 8] = ["books", "toys", "electronics", "fashion", "home", "garden", "sports", "beauty"];

/// The category of the product of `rank`.
fn category(rank: u64) -> &'static str {
    CATEGORIES[(rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61) as usize]
}

/// Where a sale happens. Countries and their cities are Zipf-skewed (s = 1); half of a
/// product's sales are in its home country (a fixed function of its rank), the rest spread
/// over all countries. So each country has its own favourites — its top list differs from
/// the global one — while products' global popularity stays exactly the configured Zipf.
struct Geo {
    countries: Zipf,
    cities: Zipf,
}

impl Geo {
    fn new() -> Geo {
        Geo { countries: Zipf::new(COUNTRIES.len() as u64, 1.0), cities: Zipf::new(3, 1.0) }
    }

    /// (country, city) of a sale of the product of `rank`.
    fn place(&self, rng: &mut Rng, rank: u64) -> (u8, u8) {
        let country = if rng.below(2) == 0 {
            ((rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % COUNTRIES.len() as u64) as u8
        } else {
            (self.countries.sample(rng) - 1) as u8
        };
        (country, (self.cities.sample(rng) - 1) as u8)
    }
}

/// Events are at most this far (exclusive) behind the newest one, unless made late.
const MAX_JITTER_MS: u64 = 60_000;
/// Late events are moved back by 1..=3 hours.
const LATE_MIN_MS: u64 = topk_core::HOUR_MS as u64;
const LATE_MAX_MS: u64 = 3 * LATE_MIN_MS;
/// How many of the last emitted lines a duplicate (redelivery) may copy.
const DUP_RING: usize = 100;
/// How many recent sales a refund may refer to; small so refunds stay close in time.
const SALE_RING: usize = 512;
/// Hand bytes to the writer in chunks of about this size (one syscall per chunk, not per line).
const FLUSH_AT: usize = 1 << 16;
/// Largest timestamp we can print with a 4-digit year (9999-12-31T23:59:59.999Z).
const MAX_TS_MS: i64 = 253_402_300_799_999;
/// Live traffic: probability of starting a spike per event, spike length, spike share.
const SPIKE_ONE_IN: u64 = 20_000;
const SPIKE_EVENTS: u32 = 2_000;
const SPIKE_SHARE_ONE_IN: u64 = 3;

/// Parameters of a generated event stream.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Number of lines to write (duplicates count as lines; a CSV header does not).
    pub events: u64,
    /// Number of distinct products; ranks are 1..=products.
    pub products: u64,
    /// Zipf exponent `s`: P(rank k) ∝ 1 / k^s (0 = uniform).
    pub zipf: f64,
    pub seed: u64,
    /// Start of the time range (Unix ms, UTC).
    pub start_ms: i64,
    /// Length of the time range in days; events are spread evenly over it.
    pub days: f64,
    /// Fraction of lines that are refunds of a recent sale.
    pub refund_rate: f64,
    /// Fraction of lines that are byte-identical redeliveries of a recent line.
    pub duplicate_rate: f64,
    /// Fraction of fresh events whose ts is moved back 1–3 hours.
    pub late_rate: f64,
    /// Strength of a daily and weekly rhythm of sales, 0 to 1 (see [`Rhythm`]); 0 spreads
    /// events evenly.
    pub seasonality: f64,
    pub format: GenFormat,
}

/// Output encoding of [`generate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenFormat {
    Ndjson,
    Csv,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            events: 1_000_000,
            products: DEFAULT_PRODUCTS,
            zipf: 1.1,
            seed: 1,
            start_ms: topk_core::timestamp::parse_rfc3339(DEFAULT_START).expect("a valid default"),
            days: 1.0,
            refund_rate: 0.01,
            duplicate_rate: 0.005,
            late_rate: 0.0,
            seasonality: 0.0,
            format: GenFormat::Ndjson,
        }
    }
}

/// What [`generate`] wrote; `lines == sales + refunds + duplicates`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenStats {
    pub lines: u64,
    pub sales: u64,
    pub refunds: u64,
    pub duplicates: u64,
}

/// Writes cfg.events lines (duplicates count as lines) to `out`.
///
/// For [`GenFormat::Csv`] a header line is written first (not counted).
/// Returns `InvalidInput` for a nonsensical config (no products, rates outside
/// [0, 1], empty time range, ...).
pub fn generate(cfg: &GenConfig, out: &mut dyn Write) -> io::Result<GenStats> {
    let span_ms = validate(cfg)?;
    let mut rng = Rng::new(cfg.seed);
    let zipf = Zipf::new(cfg.products, cfg.zipf);
    let geo = Geo::new();
    let mut fmt = LineFormatter::new(format!("e{}-", cfg.seed));
    let mut stats = GenStats::default();

    let mut buf: Vec<u8> = Vec::with_capacity(FLUSH_AT + 1024);
    if cfg.format == GenFormat::Csv {
        buf.extend_from_slice(
            b"event_id,ts,product_id,quantity,price_cents,kind,sale_ts,country,city,category,product_name\n",
        );
    }

    let mut dups = LineRing::new(DUP_RING);
    let mut sales = SaleRing::new(SALE_RING);
    let mut seq: u64 = 0;
    // Every ts is >= start, so start is a safe initial "max so far".
    let mut max_ts = cfg.start_ms;
    let refund_cut = cfg.duplicate_rate + cfg.refund_rate;
    let mut rhythm = (cfg.seasonality > 0.0).then(|| Rhythm::new(cfg.start_ms, span_ms, cfg.seasonality));

    for i in 0..cfg.events {
        // base is non-decreasing and always < start + span: an even spread, or the rhythm's.
        let base = match rhythm.as_mut() {
            Some(r) => r.at(i as f64 / cfg.events as f64),
            None => cfg.start_ms + ((i as u128 * span_ms as u128) / cfg.events as u128) as i64,
        };
        let roll = rng.f64();

        if roll < cfg.duplicate_rate {
            // Only copy lines that keep the "< 60 s behind the max" guarantee.
            if let Some(line) = dups.pick_recent(&mut rng, max_ts - (MAX_JITTER_MS as i64 - 1)) {
                buf.extend_from_slice(line);
                stats.duplicates += 1;
                flush_if_full(&mut buf, out)?;
                continue;
            }
        }

        let mut ts = base - rng.below(MAX_JITTER_MS) as i64;
        if cfg.late_rate > 0.0 && rng.f64() < cfg.late_rate {
            ts -= (LATE_MIN_MS + rng.below(LATE_MAX_MS - LATE_MIN_MS + 1)) as i64;
        }
        ts = ts.max(cfg.start_ms);

        let refund_of =
            if roll >= cfg.duplicate_rate && roll < refund_cut { sales.take_random(&mut rng) } else { None };

        let ev = match refund_of {
            Some(sale) => {
                stats.refunds += 1;
                Event {
                    seq,
                    // The refund never precedes the sale it refunds.
                    ts: ts.max(sale.ts),
                    rank: sale.rank,
                    quantity: -(1 + rng.below(sale.quantity as u64) as i64),
                    // A refund carries its sale's country and city (its category is the
                    // product's): it counts against the same breakdowns.
                    country: sale.country,
                    city: sale.city,
                    sale_ts: Some(sale.ts),
                }
            }
            None => {
                stats.sales += 1;
                let rank = zipf.sample(&mut rng);
                let (country, city) = geo.place(&mut rng, rank);
                let quantity = sample_quantity(&mut rng);
                sales.push(SaleRec { ts, rank, quantity, country, city });
                Event { seq, ts, rank, quantity: quantity as i64, country, city, sale_ts: None }
            }
        };
        seq += 1;
        max_ts = max_ts.max(ev.ts);

        let start = buf.len();
        match cfg.format {
            GenFormat::Ndjson => fmt.write_ndjson(&ev, &mut buf),
            GenFormat::Csv => fmt.write_csv(&ev, &mut buf),
        }
        dups.push(ev.ts, &buf[start..]);
        flush_if_full(&mut buf, out)?;
    }

    stats.lines = stats.sales + stats.refunds + stats.duplicates;
    out.write_all(&buf)?;
    out.flush()?;
    Ok(stats)
}

fn flush_if_full(buf: &mut Vec<u8>, out: &mut dyn Write) -> io::Result<()> {
    if buf.len() >= FLUSH_AT {
        out.write_all(buf)?;
        buf.clear();
    }
    Ok(())
}

/// Rejects configs that would panic or produce unprintable timestamps; returns the span in ms.
fn validate(cfg: &GenConfig) -> io::Result<i64> {
    let bad = |msg: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg.to_string()));
    let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
    if cfg.products == 0 {
        return bad("products must be >= 1");
    }
    if !cfg.zipf.is_finite() || cfg.zipf < 0.0 {
        return bad("zipf exponent must be finite and >= 0");
    }
    if !rate_ok(cfg.refund_rate) || !rate_ok(cfg.duplicate_rate) || !rate_ok(cfg.late_rate) {
        return bad("refund/duplicate/late rates must be in [0, 1]");
    }
    if !rate_ok(cfg.seasonality) {
        return bad("seasonality must be in [0, 1]");
    }
    if cfg.refund_rate + cfg.duplicate_rate > 1.0 {
        return bad("refund_rate + duplicate_rate must be <= 1");
    }
    let span = cfg.days * DAY_MS as f64;
    if !span.is_finite() || span.round() < 1.0 {
        return bad("days must be positive (at least 1 ms)");
    }
    let span_ms = span.round() as i64;
    if cfg.start_ms < 0 || cfg.start_ms > MAX_TS_MS - span_ms {
        return bad("time range must lie within 1970-01-01 .. 9999-12-31");
    }
    Ok(span_ms)
}

/// A daily and weekly rhythm: the rate of sales in an hour is proportional to
/// `(1 + a·cos(2π(h − 20)/24)) · (1 + a/2·cos(2π(d − 5.5)/7))` for the hour of the day h
/// (UTC; busiest at 20:00, quietest at 08:00) and the weekday d (Monday 0; busiest over
/// the weekend), with a the strength. Events are placed by the inverse of the rate's
/// cumulative sum, so the i-th of n falls where that sum reaches i/n of the whole.
struct Rhythm {
    start_ms: i64,
    span_ms: i64,
    /// The cumulative rate at the start of each hour of the span, and at its end.
    cumulative: Vec<f64>,
    /// The hour the last placed event fell in (events come in time order).
    hour: usize,
}

impl Rhythm {
    fn new(start_ms: i64, span_ms: i64, strength: f64) -> Rhythm {
        let hour_ms = topk_core::HOUR_MS;
        let hours = (span_ms + hour_ms - 1) / hour_ms;
        let mut cumulative = Vec::with_capacity(hours as usize + 1);
        let mut sum = 0.0;
        cumulative.push(sum);
        for h in 0..hours {
            let hour_of_week = topk_core::time::hour_of_week(start_ms + h * hour_ms);
            let (weekday, hour_of_day) = ((hour_of_week / 24) as f64, (hour_of_week % 24) as f64);
            let tau = std::f64::consts::TAU;
            let rate = (1.0 + strength * (tau * (hour_of_day - 20.0) / 24.0).cos())
                * (1.0 + strength / 2.0 * (tau * (weekday - 5.5) / 7.0).cos());
            // The last hour may be cut short by the span's end.
            let length = (span_ms - h * hour_ms).min(hour_ms) as f64 / hour_ms as f64;
            sum += rate.max(1e-9) * length;
            cumulative.push(sum);
        }
        Rhythm { start_ms, span_ms, cumulative, hour: 0 }
    }

    /// Where a share `q` (0 ≤ q < 1) of the whole rate has passed.
    fn at(&mut self, q: f64) -> i64 {
        let hour_ms = topk_core::HOUR_MS;
        let target = q * self.cumulative[self.cumulative.len() - 1];
        while self.hour + 2 < self.cumulative.len() && self.cumulative[self.hour + 1] <= target {
            self.hour += 1;
        }
        let (lo, hi) = (self.cumulative[self.hour], self.cumulative[self.hour + 1]);
        let within = if hi > lo { (target - lo) / (hi - lo) } else { 0.0 };
        let begins = self.hour as i64 * hour_ms;
        let length = (self.span_ms - begins).min(hour_ms);
        self.start_ms + begins + ((within * length as f64) as i64).min(length - 1)
    }
}

/// Live demo traffic: an endless stream of events with ts = the given clock time.
///
/// Event ids are `live{seed}-{seq}`; pass a fresh seed per run (e.g. from the
/// clock) if consumers deduplicate across restarts.
pub struct LiveTraffic {
    rng: Rng,
    zipf: Zipf,
    geo: Geo,
    fmt: LineFormatter,
    products: u64,
    seq: u64,
    spike_left: u32,
    spike_rank: u64,
}

impl LiveTraffic {
    /// # Panics
    /// If `products == 0` or `zipf` is negative / not finite.
    pub fn new(products: u64, zipf: f64, seed: u64) -> Self {
        assert!(products > 0, "products must be >= 1");
        assert!(zipf.is_finite() && zipf >= 0.0, "zipf must be finite and >= 0");
        LiveTraffic {
            rng: Rng::new(seed),
            zipf: Zipf::new(products, zipf),
            geo: Geo::new(),
            fmt: LineFormatter::new(format!("live{seed}-")),
            products,
            seq: 0,
            spike_left: 0,
            spike_rank: 0,
        }
    }

    /// Appends one NDJSON line (with trailing '\n') for a sale at `now_ms` to `buf`; occasionally (about once per 20k events) starts a spike: for the next ~2000 events, one third of them go to one randomly chosen product.
    ///
    /// The spike product is uniform over all products, so usually a tail
    /// product visibly climbs the top-K in the demo.
    pub fn next_line(&mut self, now_ms: i64, buf: &mut Vec<u8>) {
        if self.spike_left == 0 && self.rng.below(SPIKE_ONE_IN) == 0 {
            self.spike_left = SPIKE_EVENTS;
            self.spike_rank = 1 + self.rng.below(self.products);
        }
        let spiking = self.spike_left > 0 && {
            self.spike_left -= 1;
            self.rng.below(SPIKE_SHARE_ONE_IN) == 0
        };
        let rank = if spiking { self.spike_rank } else { self.zipf.sample(&mut self.rng) };
        let (country, city) = self.geo.place(&mut self.rng, rank);
        let ev = Event {
            seq: self.seq,
            ts: now_ms.clamp(0, MAX_TS_MS),
            rank,
            quantity: sample_quantity(&mut self.rng) as i64,
            country,
            city,
            sale_ts: None,
        };
        self.seq += 1;
        self.fmt.write_ndjson(&ev, buf);
    }
}

/// 1 most of the time (85%), otherwise 2..=5.
fn sample_quantity(rng: &mut Rng) -> u32 {
    if rng.below(100) < 85 {
        1
    } else {
        2 + rng.below(4) as u32
    }
}

/// Fixed per product (independent of the seed) so every sale of a product has
/// the same price across runs: `$D.99` with D in 1..=999, i.e. 199..=99999 cents.
fn price_cents(rank: u64) -> u64 {
    let h = xxhash_rust::xxh3::xxh3_64(&rank.to_le_bytes());
    (1 + h % 999) * 100 + 99
}

/// A recent sale a refund may point at.
#[derive(Clone, Copy)]
struct SaleRec {
    ts: i64,
    rank: u64,
    quantity: u32,
    country: u8,
    city: u8,
}

/// Ring of recent sales; a taken slot is emptied so a sale is refunded at most once.
struct SaleRing {
    slots: Vec<Option<SaleRec>>,
    next: usize,
}

impl SaleRing {
    fn new(cap: usize) -> Self {
        SaleRing { slots: Vec::with_capacity(cap), next: 0 }
    }

    fn push(&mut self, rec: SaleRec) {
        if self.slots.len() < self.slots.capacity() {
            self.slots.push(Some(rec));
        } else {
            self.slots[self.next] = Some(rec);
            self.next = (self.next + 1) % self.slots.len();
        }
    }

    /// A random recent sale not refunded yet (None if the chosen slot is empty).
    fn take_random(&mut self, rng: &mut Rng) -> Option<SaleRec> {
        if self.slots.is_empty() {
            return None;
        }
        let i = rng.below(self.slots.len() as u64) as usize;
        self.slots[i].take()
    }
}

/// Ring of the last emitted lines (buffers reused, so no allocation once warm).
struct LineRing {
    lines: Vec<(i64, Vec<u8>)>,
    cap: usize,
    /// Physical index of the oldest entry once full (= next slot to overwrite).
    next: usize,
}

impl LineRing {
    fn new(cap: usize) -> Self {
        LineRing { lines: Vec::with_capacity(cap), cap, next: 0 }
    }

    fn push(&mut self, ts: i64, line: &[u8]) {
        if self.lines.len() < self.cap {
            self.lines.push((ts, line.to_vec()));
        } else {
            let slot = &mut self.lines[self.next];
            slot.0 = ts;
            slot.1.clear();
            slot.1.extend_from_slice(line);
            self.next = (self.next + 1) % self.cap;
        }
    }

    /// A random stored line with ts >= `min_ts`: picks a random age, then moves
    /// towards newer lines until one qualifies.
    fn pick_recent(&self, rng: &mut Rng, min_ts: i64) -> Option<&[u8]> {
        let len = self.lines.len();
        if len == 0 {
            return None;
        }
        let oldest = if len < self.cap { 0 } else { self.next };
        let first = rng.below(len as u64) as usize;
        (first..len)
            .map(|age| &self.lines[(oldest + age) % len])
            .find(|(ts, _)| *ts >= min_ts)
            .map(|(_, line)| line.as_slice())
    }
}

#[cfg(test)]
mod tests;
