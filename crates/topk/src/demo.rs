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
    /// Products sold (the same ids and names as `topk gen`'s).
    pub products: u64,
    /// Live event time runs this many times as fast as the clock, from a day back until
    /// it catches up with it (1: real time).
    pub speedup: u32,
}

impl Demo {
    /// Where live event time starts, behind the clock.
    fn back_ms(&self) -> i64 {
        if self.speedup > 1 {
            topk_core::DAY_MS
        } else {
            0
        }
    }
}

/// Live event time at wall time `wall_ms`, the live traffic having started at `start_ms`:
/// `back_ms` behind the clock at the start, then `speedup` times as fast until it reaches
/// the clock, then the clock.
fn event_time(wall_ms: i64, start_ms: i64, back_ms: i64, speedup: u32) -> i64 {
    let ahead = (wall_ms - start_ms).saturating_mul(i64::from(speedup) - 1);
    (wall_ms - back_ms).saturating_add(ahead).min(wall_ms)
}

/// Ingests `days` of generated history ending `back_ms` before now, as a replay would, if
/// the events log is empty (a first start): the batch layer then rolls it up while live
/// traffic flows.
fn history(pipeline: &Pipeline, days: u32, products: u64, back_ms: i64) -> anyhow::Result<()> {
    let events = &pipeline.events;
    let ends = (0..events.partitions()).map(|p| events.end_offset(p)).collect::<Result<Vec<_>, _>>()?;
    if days == 0 || ends.iter().any(|&end| end > 0) {
        return Ok(());
    }
    let started = Instant::now();
    let now = now_ms() - back_ms;
    let cfg = GenConfig {
        // About 1,200 sales an hour: enough for stable lists, fast to roll up.
        events: u64::from(days) * 29_000,
        products,
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
    let back_ms = demo.back_ms();
    if let Err(e) = history(&pipeline, demo.history_days, demo.products, back_ms) {
        tracing::error!(error = %e, "demo history could not be ingested");
    }
    let start = now_ms();
    let mut traffic = LiveTraffic::new(demo.products, 1.1, start as u64);
    let mut ingestor = pipeline.ingestor();
    let mut buf = Vec::new();
    let per_tick = (demo.rate / 10).max(1);
    loop {
        let tick = Instant::now();
        buf.clear();
        for _ in 0..per_tick {
            traffic.next_line(event_time(now_ms(), start, back_ms, demo.speedup), &mut buf);
        }
        if let Err(e) = ingestor.ingest_ndjson(&buf, 1, 0, None) {
            tracing::error!(error = %e, "demo traffic could not append");
        }
        if stop.wait(Duration::from_millis(100).saturating_sub(tick.elapsed())) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_time;

    #[test]
    fn accelerated_event_time_starts_behind_runs_faster_and_stops_at_the_clock() {
        let (start, day) = (1_000_000_000_000, topk_core::DAY_MS);
        assert_eq!(event_time(start, start, day, 60), start - day);
        // A wall-clock minute is an event-time hour.
        assert_eq!(event_time(start + 60_000, start, day, 60), start - day + 3_600_000);
        // A day back at 60x is caught up after a day / 59 of the clock, then it is the clock.
        let caught_up = start + day / 59 + 1;
        assert_eq!(event_time(caught_up, start, day, 60), caught_up);
        assert_eq!(event_time(caught_up + 5_000, start, day, 60), caught_up + 5_000);
        // Real time: the clock itself.
        assert_eq!(event_time(start + 7, start, 0, 1), start + 7);
    }
}
