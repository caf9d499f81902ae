//! Every metric topk exports, declared here — name, type, labels and help — and encoded
//! as OpenMetrics text by prometheus-client (counters end in `_total`, the text in
//! `# EOF`). The API's latency is counted live; everything else is read at scrape time
//! from what the components count (ingest stats, each role's positions, the store).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use topk_core::time::Granularity;
use topk_ingest::kafka_source::SourceState;
use topk_ingest::IngestStats;
use topk_store::{AccuracyRecord, RunStats};

/// Upper bounds (seconds) of the API latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The content type of [`Telemetry::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    /// The route pattern, not the raw path (which would explode the label set).
    route: String,
    status: String,
}

type Labels = Vec<(&'static str, String)>;
type LatencyFamily = Family<Route, Histogram, fn() -> Histogram>;

/// One partition's position and lag in each role this process runs (`None`: a role
/// this process does not run, or no value yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionLag {
    pub partition: u32,
    /// Events (Kafka: messages) in the events log not yet covered by a durable flush.
    pub flush_lag_events: Option<u64>,
    /// Wall clock minus the partition's event-time watermark.
    pub watermark_lag_seconds: Option<f64>,
    pub archive_lag_batches: Option<u64>,
    pub speed_lag_batches: Option<u64>,
    pub aggregated_events: Option<u64>,
    pub duplicate_events: Option<u64>,
    pub late_events: Option<u64>,
    /// Bytes the partition's dedup window has allocated.
    pub dedup_bytes: Option<u64>,
}

/// What one scrape reads.
pub struct Scrape<'a> {
    pub ingest: &'a IngestStats,
    pub lags: Vec<PartitionLag>,
    /// The Kafka source's topic and state, if this process runs one.
    pub source: Option<(&'a str, &'a SourceState)>,
    pub runs: Vec<RunStats>,
    /// Scored speed-layer buckets, newest first.
    pub accuracy: Vec<AccuracyRecord>,
    /// The last ended day's projection, scored at points of it.
    pub projections: &'a [crate::query::Backtest],
    /// Per configured breakdown set: the values it has admitted, and at most how many.
    pub breakdowns: Vec<(String, i64, usize)>,
}

/// The live metrics of a process.
pub struct Telemetry {
    api: LatencyFamily,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry { api: Family::new_with_constructor(|| Histogram::new(LATENCY_BOUNDS)) }
    }
}

impl Telemetry {
    /// One API request: its route pattern, its status, and how long it took.
    pub fn observe_request(&self, route: &str, status: u16, secs: f64) {
        self.api.get_or_create(&Route { route: route.to_string(), status: status.to_string() }).observe(secs);
    }

    /// Every metric, as OpenMetrics text.
    pub fn render(&self, scrape: &Scrape<'_>) -> String {
        let mut r = Registry::default();
        let ingested = Counter::<u64, AtomicU64>::default();
        ingested.inc_by(scrape.ingest.accepted());
        r.register("topk_ingest_events", "valid events appended to the events log by ingest", ingested);
        let skipped = Counter::<u64, AtomicU64>::default();
        skipped.inc_by(scrape.ingest.already_ingested());
        r.register("topk_ingest_already_ingested", "replayed lines skipped as already in the log", skipped);
        let rejected = Family::<Labels, Counter>::default();
        for (category, n) in scrape.ingest.rejected() {
            rejected.get_or_create(&vec![("field", category.to_string())]).inc_by(n);
        }
        r.register(
            "topk_ingest_rejected",
            "rejected input lines, by the field at fault or the kind of problem with the line",
            rejected,
        );
        r.register("topk_api_request_duration_seconds", "API request latency, by route and status", self.api.clone());

        type Pick = fn(&PartitionLag) -> Option<f64>;
        let per_partition: [(&str, &str, bool, Pick); 8] = [
            (
                "topk_flush_lag_events",
                "events (Kafka: messages) in the log not yet covered by a durable flush",
                false,
                |l| l.flush_lag_events.map(|v| v as f64),
            ),
            ("topk_watermark_lag_seconds", "wall clock minus the partition's event-time watermark", false, |l| {
                l.watermark_lag_seconds
            }),
            ("topk_archive_lag_batches", "flush batches not yet archived", false, |l| {
                l.archive_lag_batches.map(|v| v as f64)
            }),
            ("topk_speed_lag_batches", "flush batches not yet written by the speed layer", false, |l| {
                l.speed_lag_batches.map(|v| v as f64)
            }),
            ("topk_aggregated_events", "events counted by the aggregators", true, |l| {
                l.aggregated_events.map(|v| v as f64)
            }),
            ("topk_duplicate_events", "events dropped as duplicates of an earlier event_id", true, |l| {
                l.duplicate_events.map(|v| v as f64)
            }),
            ("topk_late_events", "events behind the watermark (counted as corrections)", true, |l| {
                l.late_events.map(|v| v as f64)
            }),
            (
                "topk_dedup_window_bytes",
                "bytes the dedup window's table has allocated, as of the last flush",
                false,
                |l| l.dedup_bytes.map(|v| v as f64),
            ),
        ];
        for (name, help, is_counter, pick) in per_partition {
            let samples =
                scrape.lags.iter().filter_map(|l| Some((vec![("partition", l.partition.to_string())], pick(l)?)));
            if is_counter {
                let f = Family::<Labels, Counter>::default();
                for (labels, v) in samples {
                    f.get_or_create(&labels).inc_by(v as u64);
                }
                r.register(name, help, f);
            } else {
                r.register(name, help, gauges(samples));
            }
        }

        if let Some((topic, source)) = scrape.source {
            let labels = vec![("topic", topic.to_string())];
            let paused = Family::<Labels, Gauge>::default();
            paused.get_or_create(&labels).set(i64::from(source.paused().is_some()));
            r.register("topk_source_paused", "1 while the Kafka source is paused by its reject rate", paused);
            let consumed = Family::<Labels, Counter>::default();
            consumed.get_or_create(&labels).inc_by(source.consumed.load(Ordering::Relaxed));
            r.register("topk_source_consumed", "messages read from the source topic", consumed);
            let letters = Family::<Labels, Counter>::default();
            letters.get_or_create(&labels).inc_by(source.dead_letters.load(Ordering::Relaxed));
            r.register("topk_dead_letters", "rejected source messages sent to the dead-letter topic", letters);
        }

        let runs = Family::<Labels, Counter>::default();
        let run_seconds = Family::<Labels, Counter<f64, AtomicU64>>::default();
        for run in &scrape.runs {
            let labels = vec![("task", run.task.clone()), ("status", run.status.as_str().to_string())];
            runs.get_or_create(&labels).inc_by(run.runs.max(0) as u64);
            run_seconds.get_or_create(&labels).inc_by(run.duration_ms.max(0) as f64 / 1000.0);
        }
        r.register("topk_batch_runs", "batch-layer task runs, by task and status", runs);
        r.register("topk_batch_run_seconds", "time spent in finished batch-layer runs", run_seconds);

        type Field = fn(&topk_core::accuracy::Accuracy) -> f64;
        let scores: [(&str, &str, Field); 5] = [
            ("precision_at_10", "share of the speed layer's top 10 in the true top 10", |a| a.precision_at_10),
            ("precision_at_100", "share of the speed layer's top 100 in the true top 100", |a| a.precision_at_100),
            ("max_relative_error", "largest relative error over the true top 10", |a| a.max_relative_error),
            ("mean_relative_error", "mean relative error over the true top 10", |a| a.mean_relative_error),
            ("bound_coverage", "share of reported rows whose true count lay inside the error bound", |a| {
                a.bound_coverage
            }),
        ];
        for (name, help, field) in scores {
            // Newest first: the first record of a granularity is its latest.
            let latest = Granularity::ALL.into_iter().filter_map(|g| {
                let rec = scrape.accuracy.iter().find(|rec| rec.bucket.granularity == g)?;
                Some((vec![("granularity", g.as_str().to_string())], field(&rec.accuracy)))
            });
            r.register(format!("topk_speed_{name}"), format!("{help}, latest scored bucket"), gauges(latest));
        }
        type Score = fn(&crate::query::Backtest) -> f64;
        let projection: [(&str, &str, Score); 3] = [
            ("top10_held", "share of the day's final top 10 in its projected top 10", |b| b.top_overlap),
            ("median_ape", "median absolute percentage error of the projected top 10's counts", |b| b.median_ape),
            ("interval_coverage", "share of the projected top 10 whose final count lay in its 80 % interval", |b| {
                b.coverage
            }),
        ];
        for (name, help, score) in projection {
            let samples = scrape.projections.iter().map(|b| {
                let labels =
                    vec![("granularity", b.bucket.granularity.as_str().to_string()), ("at", format!("{:.2}", b.at))];
                (labels, score(b))
            });
            r.register(
                format!("topk_projection_{name}"),
                format!("{help}, projected at `at` of the last ended day"),
                gauges(samples),
            );
        }
        let values = scrape.breakdowns.iter().map(|(set, n, _)| (vec![("set", set.clone())], *n as f64));
        r.register(
            "topk_breakdown_values",
            "values with lists of their own, per breakdown set (later values count under (other))",
            gauges(values),
        );
        let full =
            scrape.breakdowns.iter().map(|(set, n, max)| (vec![("set", set.clone())], f64::from(*n >= *max as i64)));
        r.register(
            "topk_breakdown_full",
            "1 once a breakdown set has breakdown_max_values values: new values then count under (other)",
            gauges(full),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).expect("writing to a String");
        out
    }
}

/// A gauge family with one sample per labelled value.
fn gauges(samples: impl Iterator<Item = (Labels, f64)>) -> Family<Labels, Gauge<f64, AtomicU64>> {
    let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (labels, v) in samples {
        f.get_or_create(&labels).set(v);
    }
    f
}
