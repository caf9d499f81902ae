//! A day of generated sales broken down by country, fed through the speed layer as the
//! aggregators would flush it, and its approximate per-country top lists scored against
//! the exact ones: what the breakdown test and `examples/breakdown_accuracy.rs` measure.
//!
//! Countries are Zipf-skewed (s = 1); each has its own popularity over the products (a
//! permutation of them, Zipf 1.1 in even countries and 0.8 in odd ones). The events are
//! partitioned by product as the logs are, and each partition flushes every
//! `flush_events` events.

use std::collections::HashMap;
use std::time::Instant;

use topk_core::breakdown::{Breakdowns, DimSet, Dimension};
use topk_core::flush::{AggRow, FlushBatch};
use topk_core::partition::partition_of;
use topk_core::random::{Rng, Zipf};
use topk_core::time::{Bucket, Granularity};
use topk_store::SpeedStore;

use crate::{score, Accuracy, Speed, SpeedConfig, SpeedError};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Day {
    pub products: u64,
    pub countries: u64,
    pub events: u64,
    pub partitions: u32,
    pub flush_events: u64,
    /// The day, epoch ms.
    pub start_ms: i64,
    pub seed: u64,
}

/// One country's scored top list.
#[derive(Debug, Clone)]
pub struct ValueScore {
    pub country: String,
    /// Its share of the day's volume.
    pub share: f64,
    /// Its exact top 10 by quantity.
    pub exact_top: Vec<(String, i64)>,
    pub accuracy: Accuracy,
    /// The widest error bound among its listed rows' top 10.
    pub max_bound: i64,
    /// Bytes of its sketches.
    pub memory_bytes: usize,
}

/// Generates `day`, feeds it to a speed layer over `store`, writes, and scores each
/// country's daily list; returns the scores (biggest country first) and the bytes the
/// open sketches hold (the global lists', the breakdowns').
pub fn countries<S: SpeedStore>(
    store: S,
    day: &Day,
    cfg: SpeedConfig,
) -> Result<(Vec<ValueScore>, (usize, usize)), SpeedError> {
    let cfg = SpeedConfig {
        breakdowns: Breakdowns { sets: vec![DimSet::of(&[Dimension::Country])], ..Breakdowns::default() },
        ..cfg
    };
    let mut speed = Speed::open(store, day.partitions, cfg)?;
    let mut rng = Rng::new(day.seed);
    let pick_country = Zipf::new(day.countries, 1.0);
    let popularity = [Zipf::new(day.products, 1.1), Zipf::new(day.products, 0.8)];
    let ids: Vec<String> = (0..day.products).map(|i| format!("p{i:07}")).collect();
    let part: Vec<u32> = ids.iter().map(|id| partition_of(id.as_bytes(), day.partitions)).collect();
    // (country, product) -> units, exact.
    let mut truth: HashMap<(u32, u32), i64> = HashMap::new();
    let mut pending: Vec<HashMap<(u32, u32, i64), i64>> = vec![HashMap::new(); day.partitions as usize];
    let mut events_in: Vec<u64> = vec![0; day.partitions as usize];
    let mut offsets = vec![0u64; day.partitions as usize];
    let span = topk_core::DAY_MS;
    let flush = |speed: &mut Speed<S>, p: usize, sums: &mut HashMap<(u32, u32, i64), i64>, offset: &mut u64| {
        let rows = sums
            .drain()
            .map(|((country, i, hour_ms), count)| AggRow {
                product_id: ids[i as usize].clone(),
                hour_ms,
                count,
                revenue_cents: count * 100,
                earliest_ts_ms: hour_ms,
                latest_ts_ms: hour_ms,
                dims: [format!("C{country:02}"), String::new(), String::new()],
            })
            .collect();
        // The watermark stays inside the day: it is open, the speed layer's to answer.
        let batch = FlushBatch { partition: p as u32, watermark_ms: day.start_ms, rows, ..FlushBatch::default() };
        let absorbed = speed.absorb(*offset, &batch);
        *offset += 1;
        absorbed.map(drop)
    };
    for n in 0..day.events {
        let country = pick_country.sample(&mut rng) as u32 - 1;
        let rank = popularity[country as usize % 2].sample(&mut rng) - 1;
        // The country's own favourites: a permutation of the products (an odd multiplier
        // coprime with 5 and a shift, modulo a power of ten times a power of two).
        let i = ((rank * (2 * u64::from(country) + 3) * 7 + u64::from(country) * 7919) % day.products) as u32;
        let ts = day.start_ms + (n as i64 * span) / day.events as i64;
        *truth.entry((country, i)).or_default() += 1;
        let p = part[i as usize] as usize;
        *pending[p].entry((country, i, ts - ts.rem_euclid(topk_core::HOUR_MS))).or_default() += 1;
        events_in[p] += 1;
        if events_in[p] == day.flush_events {
            events_in[p] = 0;
            flush(&mut speed, p, &mut pending[p], &mut offsets[p])?;
        }
    }
    for p in 0..day.partitions as usize {
        flush(&mut speed, p, &mut pending[p], &mut offsets[p])?;
    }
    speed.write(Instant::now())?;
    let bucket = Bucket::containing(Granularity::Day, day.start_ms);
    let mut per_country: HashMap<u32, Vec<(String, i64)>> = HashMap::new();
    for ((country, i), count) in truth {
        per_country.entry(country).or_default().push((ids[i as usize].clone(), count));
    }
    let mut scores = Vec::new();
    for (country, mut exact) in per_country {
        exact.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total: i64 = exact.iter().map(|e| e.1).sum();
        let key = format!("country=C{country:02}");
        speed.store().set_breakdown(&key);
        let rows = speed.store().speed_rows(bucket);
        speed.store().set_breakdown("");
        let approx: Vec<(String, i64, i64)> = rows?.into_iter().map(|r| (r.product_id, r.count, r.error)).collect();
        scores.push(ValueScore {
            country: format!("C{country:02}"),
            share: total as f64 / day.events as f64,
            max_bound: approx.iter().take(10).map(|r| r.2).max().unwrap_or(0),
            accuracy: score(&exact, &approx),
            exact_top: exact.into_iter().take(10).collect(),
            memory_bytes: speed.bucket_memory(bucket, &key).unwrap_or(0),
        });
    }
    scores.sort_by(|a, b| b.share.total_cmp(&a.share));
    Ok((scores, speed.memory_bytes()))
}
