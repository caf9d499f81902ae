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
const DEMO_PRODUCTS: u64 = 100_000;

/// Generated lines, ingested in batches of whole lines as they are written.
struct Ingest<'a> {
    ingestor: topk_ingest::Ingestor,
    buf: Vec<u8>,
    accepted: &'a mut u64,
}

impl Ingest<'_> {
    fn send(&mut self, all: bool) -> std::io::Result<()> {
        let cut = if all { self.buf.len() } else { self.buf.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1) };
        if cut > 0 {
            let report = self.ingestor.ingest_ndjson(&self.buf[..cut], 1, 0, None).map_err(std::io::Error::other)?;
            *self.accepted += report.accepted;
            self.buf.drain(..cut);
        }
        Ok(())
    }
}

impl Write for Ingest<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 8 << 20 {
            self.send(false)?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send(true)
    }
}

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
        start_ms: now - i64::from(days) * 86_400_000,
        days: f64::from(days) - 1.0 / 24.0,
        ..GenConfig::default()
    };
    let mut accepted = 0;
    let mut sink = Ingest { ingestor: pipeline.ingestor(), buf: Vec::new(), accepted: &mut accepted };
    topk_gen::generate(&cfg, &mut sink)?;
    sink.flush()?;
    tracing::info!(days, events = accepted, ms = started.elapsed().as_millis() as u64, "demo history ingested");
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
