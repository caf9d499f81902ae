//! The dedup window's cost per event and memory per remembered id, against the set of
//! 128-bit digests and queue of arrivals it replaced (kept here, as the yardstick).
//!
//! `cargo run --release -p topk-aggregator --example dedup_bench -- RATE SECONDS`
//! feeds one partition `RATE` events per second of event time, for `SECONDS` seconds,
//! with the default 10-minute window; 1 % of the events are redeliveries of a recent id.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use topk_aggregator::DedupWindow;

/// The structure before: every digest in a set, and (arrival, digest) in a queue.
struct Before {
    window_ms: i64,
    seen: HashSet<u128, foldhash::fast::RandomState>,
    arrivals: VecDeque<(i64, u128)>,
}

impl Before {
    fn is_duplicate(&mut self, digest: u128, max_ts_ms: i64) -> bool {
        let cutoff = max_ts_ms.saturating_sub(self.window_ms);
        while self.arrivals.front().is_some_and(|&(at, _)| at < cutoff) {
            let (_, d) = self.arrivals.pop_front().unwrap();
            self.seen.remove(&d);
        }
        if !self.seen.insert(digest) {
            return true;
        }
        self.arrivals.push_back((max_ts_ms, digest));
        false
    }

    fn memory_bytes(&self) -> usize {
        // hashbrown: a power of two of buckets (7/8 usable), 16-byte entries plus a control
        // byte each; the deque's slots.
        let buckets = (self.seen.capacity() * 8 / 7).next_power_of_two();
        buckets * 17 + self.arrivals.capacity() * 32
    }
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().expect("numbers"));
    let rate = args.next().unwrap_or(20_000);
    let seconds = args.next().unwrap_or(1_200);
    let window_ms = 600_000;
    let events = rate * seconds;
    let digest = |i: u64| xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
    let ts = |i: u64| 1_800_000_000_000 + (i * 1000 / rate) as i64;
    let feed = |is_dup: &mut dyn FnMut(u128, i64) -> bool| {
        let started = Instant::now();
        let mut dups = 0u64;
        for i in 0..events {
            // Every hundredth event repeats the id of the event 50 before it.
            let id = if i % 100 == 99 { i - 50 } else { i };
            dups += u64::from(is_dup(digest(id), ts(i)));
        }
        (started.elapsed().as_nanos() as f64 / events as f64, dups)
    };
    let mut after = DedupWindow::new(window_ms);
    let (after_ns, after_dups) = feed(&mut |d, t| after.is_duplicate(d, t));
    let mut before = Before { window_ms, seen: HashSet::default(), arrivals: VecDeque::new() };
    let (before_ns, before_dups) = feed(&mut |d, t| before.is_duplicate(d, t));
    assert_eq!(after_dups, before_dups, "both drop the same redeliveries");
    let per_id = |bytes: usize, ids: usize| bytes as f64 / ids.max(1) as f64;
    println!(
        "{events} events at {rate}/s of event time, window {} s: {after_dups} duplicates dropped",
        window_ms / 1000
    );
    println!(
        "compact window:  {:6.1} ns/event, {:8} ids, {:7.1} MiB, {:5.1} bytes/id",
        after_ns,
        after.len(),
        after.memory_bytes() as f64 / (1 << 20) as f64,
        per_id(after.memory_bytes(), after.len())
    );
    println!(
        "set + queue:     {:6.1} ns/event, {:8} ids, {:7.1} MiB, {:5.1} bytes/id",
        before_ns,
        before.seen.len(),
        before.memory_bytes() as f64 / (1 << 20) as f64,
        per_id(before.memory_bytes(), before.seen.len())
    );
}
