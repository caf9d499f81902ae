//! `serve --demo`: generated history for an empty data directory, then live traffic,
//! both through the normal ingest path.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use topk_core::clock::now_ms;
use topk_core::Shutdown;
use topk_gen::{GenConfig, LiveTraffic};

use topk::process::Pipeline;

/// What `serve --demo` generates.
#[derive(Debug, Clone, Copy)]
pub struct Demo {
    /// Live events per second.
    pub rate: u32,
    /// Days of history first ingested into an empty events log.
    pub history_days: u32,
}

/// Live demo products: the same ids and names as `topk gen`'s.
const DEMO_PRODUCTS: u64 = topk_gen::DEFAULT_PRODUCTS;

/// Ingests `days` of generated history ending now, as a replay would, if the events log
/// is empty (a first start): the batch layer then rolls it up while live traffic flows.
fn history(pipeline: &Pipeline, days: u32) -> anyhow::Result<()> {
    let events = &pipeline.events;
    let ends = (0..events.partitions()).map(|p| events.end_offset(p)).collect::<Result<Vec<_>, _>>()?;
    if days == 0 || ends.iter().any(|&end| end > 0) {
        return Ok(());
    }
    let started = Instant::now();
    let now = now_ms();
    let cfg = GenConfig {
        // About 1,200 sales an hour: enough for stable lists, fast to roll up.
        events: u64::from(days) * 29_000,
        products: DEMO_PRODUCTS,
        seed: now as u64,
        start_ms: now - i64::from(days) * topk_core::DAY_MS,
        days: f64::from(days) - 1.0 / 24.0,
        ..GenConfig::default()
    };
    let mut sink = topk_ingest::IngestWriter::new(pipeline.ingestor());
    topk_gen::generate(&cfg, &mut sink)?;
    sink.flush()?;
    tracing::info!(days, events = sink.accepted(), ms = started.elapsed().as_millis() as u64, "demo history ingested");
    Ok(())
}

/// History first (if the data directory is new), then `rate` live events per second
/// until `stop`.
pub fn run(pipeline: Arc<Pipeline>, demo: Demo, stop: Shutdown) {
    if let Err(e) = history(&pipeline, demo.history_days) {
        tracing::error!(error = %e, "demo history could not be ingested");
    }
    let mut traffic = LiveTraffic::new(DEMO_PRODUCTS, 1.1, now_ms() as u64);
    let mut ingestor = pipeline.ingestor();
    let mut buf = Vec::new();
    let per_tick = (demo.rate / 10).max(1);
    loop {
        let tick = Instant::now();
        buf.clear();
        for _ in 0..per_tick {
            traffic.next_line(now_ms(), &mut buf);
        }
        if let Err(e) = ingestor.ingest_ndjson(&buf, 1, 0, None) {
            tracing::error!(error = %e, "demo traffic could not append");
        }
        if stop.wait(Duration::from_millis(100).saturating_sub(tick.elapsed())) {
            return;
        }
    }
}
