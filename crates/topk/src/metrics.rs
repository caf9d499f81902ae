//! Prometheus metrics of `topk serve`: counters the ingest path and the API keep, plus
//! gauges read at scrape time from the roles' progress and the store.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use topk_core::event::{FIELDS, LINE_PROBLEMS};

use crate::pipeline::IngestReport;

/// Upper bounds (seconds) of the API latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last is +Inf.
    counts: [u64; LATENCY_BOUNDS.len() + 1],
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        let i = LATENCY_BOUNDS.iter().position(|&b| secs <= b).unwrap_or(LATENCY_BOUNDS.len());
        self.counts[i] += 1;
        self.sum += secs;
    }
}

/// Counters kept while serving.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    already_ingested: AtomicU64,
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Per (route, status class).
    api: Mutex<BTreeMap<(String, u16), Histogram>>,
}

/// One line of text exposition; `labels` are `name="value"` pairs.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(out, "{sep}{k}=\"{v}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// The `# HELP` and `# TYPE` lines of a metric.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

impl Metrics {
    pub fn record_ingest(&self, report: &IngestReport) {
        self.accepted.fetch_add(report.accepted, Ordering::Relaxed);
        self.already_ingested.fetch_add(report.already_ingested, Ordering::Relaxed);
        if !report.rejected_by_field.is_empty() {
            let mut rejected = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
            for (category, n) in &report.rejected_by_field {
                // Labels from a closed set only: a client must not be able to add series.
                let known = FIELDS.iter().chain(&LINE_PROBLEMS).find(|c| **c == category);
                *rejected.entry(known.copied().unwrap_or("unknown_field").to_string()).or_default() += n;
            }
        }
    }

    /// One API request: its route pattern (not the raw path, which would explode the
    /// label set), its status, and how long it took.
    pub fn observe_request(&self, route: &str, status: u16, secs: f64) {
        let mut api = self.api.lock().unwrap_or_else(|e| e.into_inner());
        api.entry((route.to_string(), status)).or_default().observe(secs);
    }

    pub fn render(&self, out: &mut String) {
        header(out, "topk_ingest_events_total", "counter", "valid events appended to the events log by ingest");
        sample(out, "topk_ingest_events_total", &[], self.accepted.load(Ordering::Relaxed));
        header(out, "topk_ingest_already_ingested_total", "counter", "replayed lines skipped as already in the log");
        sample(out, "topk_ingest_already_ingested_total", &[], self.already_ingested.load(Ordering::Relaxed));
        header(
            out,
            "topk_ingest_rejected_total",
            "counter",
            "rejected input lines, by the field at fault or the kind of problem with the line",
        );
        for (field, n) in self.rejected.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            sample(out, "topk_ingest_rejected_total", &[("field", field)], n);
        }
        let name = "topk_api_request_duration_seconds";
        header(out, name, "histogram", "API request latency, by route and status");
        for ((route, status), h) in self.api.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let status = status.to_string();
            let mut cumulative = 0;
            for (i, n) in h.counts.iter().enumerate() {
                cumulative += n;
                let le = LATENCY_BOUNDS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
                let labels = [("route", route.as_str()), ("status", status.as_str()), ("le", le.as_str())];
                sample(out, &format!("{name}_bucket"), &labels, cumulative);
            }
            let labels = [("route", route.as_str()), ("status", status.as_str())];
            sample(out, &format!("{name}_sum"), &labels, h.sum);
            sample(out, &format!("{name}_count"), &labels, cumulative);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.observe_request("/api/v1/top", 200, 0.0004);
        m.observe_request("/api/v1/top", 200, 0.003);
        m.observe_request("/api/v1/top", 200, 9.0);
        let mut report = IngestReport::default();
        report.rejected_by_field.insert("qu\"antity".into(), 2);
        report.rejected_by_field.insert("price_cents".into(), 1);
        m.record_ingest(&report);
        let mut out = String::new();
        m.render(&mut out);
        sample(&mut out, "escaped", &[("v", "a\"b\\c\nd")], 1);
        let b = "topk_api_request_duration_seconds_bucket{route=\"/api/v1/top\",status=\"200\"";
        assert!(out.contains(&format!("{b},le=\"0.0005\"}} 1\n")), "{out}");
        assert!(out.contains(&format!("{b},le=\"0.005\"}} 2\n")), "{out}");
        assert!(out.contains(&format!("{b},le=\"2.5\"}} 2\n")), "{out}");
        assert!(out.contains(&format!("{b},le=\"+Inf\"}} 3\n")), "{out}");
        assert!(out.contains("topk_api_request_duration_seconds_count{route=\"/api/v1/top\",status=\"200\"} 3\n"));
        assert!(out.contains("topk_ingest_rejected_total{field=\"unknown_field\"} 2\n"), "{out}");
        assert!(out.contains("topk_ingest_rejected_total{field=\"price_cents\"} 1\n"), "{out}");
        assert!(out.contains("escaped{v=\"a\\\"b\\\\c\\nd\"} 1\n"), "{out}");
    }
}
