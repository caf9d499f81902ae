//! What ingest has done since the process started, for the metrics (which expose it;
//! see topk-serve's telemetry module).

use std::sync::atomic::{AtomicU64, Ordering};

use topk_core::event::{FIELDS, LINE_PROBLEMS};

use crate::IngestReport;

/// Counters of every ingest path of a process (HTTP, Kafka source, replay, demo).
#[derive(Debug, Default)]
pub struct IngestStats {
    accepted: AtomicU64,
    already_ingested: AtomicU64,
    /// Per rejection category: the fields of [`FIELDS`], then [`LINE_PROBLEMS`].
    rejected: [AtomicU64; FIELDS.len() + LINE_PROBLEMS.len()],
}

impl IngestStats {
    pub fn record(&self, report: &IngestReport) {
        self.accepted.fetch_add(report.accepted, Ordering::Relaxed);
        self.already_ingested.fetch_add(report.already_ingested, Ordering::Relaxed);
        for (category, n) in &report.rejected_by_field {
            // A closed set of categories: anything else (a remote report) is an unknown field.
            let i = categories().position(|c| c == category).unwrap_or(FIELDS.len());
            self.rejected[i].fetch_add(*n, Ordering::Relaxed);
        }
    }

    /// Valid events appended.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Replayed lines skipped as already in the log.
    pub fn already_ingested(&self) -> u64 {
        self.already_ingested.load(Ordering::Relaxed)
    }

    /// Rejected lines by category ([`topk_core::event::Rejection::category`]), those seen.
    pub fn rejected(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        categories().zip(&self.rejected).map(|(c, n)| (c, n.load(Ordering::Relaxed))).filter(|(_, n)| *n > 0)
    }
}

fn categories() -> impl Iterator<Item = &'static str> {
    FIELDS.into_iter().chain(LINE_PROBLEMS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_counted_in_a_closed_set_of_categories() {
        let stats = IngestStats::default();
        let mut report = IngestReport { accepted: 3, already_ingested: 1, ..IngestReport::default() };
        report.rejected_by_field.insert("price_cents".into(), 2);
        report.rejected_by_field.insert("qu\"antity".into(), 5);
        report.rejected_by_field.insert("json".into(), 1);
        stats.record(&report);
        stats.record(&report);
        assert_eq!((stats.accepted(), stats.already_ingested()), (6, 2));
        let rejected: Vec<_> = stats.rejected().collect();
        assert_eq!(rejected, [("price_cents", 4), ("unknown_field", 10), ("json", 2)]);
    }
}
