//! Configuration: built-in defaults, then a TOML file, then `TOPK_*` environment
//! variables, then command-line flags — each later layer wins (figment merges them).
//!
//! A setting has one name everywhere: `--flush-interval-ms` / `TOPK_FLUSH_INTERVAL_MS` /
//! `flush_interval_ms`. Its default is written once, in the component's config type
//! (`AggregatorConfig::default()` and so on); [`FileSettings::default`] gathers them, and
//! `--help` shows them from there (see [`help_defaults`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use topk_aggregator::AggregatorConfig;
use topk_archive::Root;
use topk_batch::BatchConfig;
use topk_core::breakdown::Breakdowns;
use topk_ingest::kafka_source::SourceConfig;
use topk_log::{DiskLog, FsyncPolicy, KafkaConfig, KafkaLog, Log, LogConfig};
use topk_serve::ServeConfig;
use topk_speed::{Architecture, SpeedConfig, SpeedSizing};
use topk_store::SqlStore;

mod kafka;
use kafka::kafka_properties;
pub use kafka::KafkaSettings;

/// The settings as flags (and `TOPK_*` variables, which clap reads into the same
/// fields): each `None` unless given, so that only what was given overrides the file.
/// The doc comments are the reference documentation (`topk serve --help`).
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct Settings {
    /// Where the logs, the archive and the state live
    #[arg(long, env = "TOPK_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Address the HTTP server listens on
    #[arg(long, env = "TOPK_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Partitions of the events and flush logs; fixed once data exists
    #[arg(long, env = "TOPK_PARTITIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// "batch": fsync before an ingest batch is acknowledged; "never": leave it to the OS
    #[arg(long, env = "TOPK_FSYNC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsync: Option<FsyncPolicy>,
    /// Log segment size in bytes
    #[arg(long, env = "TOPK_SEGMENT_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_bytes: Option<u64>,
    /// Hours to keep consumed log segments
    #[arg(long, env = "TOPK_RETENTION_HOURS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_hours: Option<u64>,
    /// Aggregator flush interval in ms; bounds the speed layer's freshness
    #[arg(long, env = "TOPK_FLUSH_INTERVAL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
    /// Aggregator entries per partition that force a flush (bounds memory)
    #[arg(long, env = "TOPK_MAX_ENTRIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<usize>,
    /// Allowed lateness of events behind the newest, in ms
    #[arg(long, env = "TOPK_ALLOWED_LATENESS_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_lateness_ms: Option<i64>,
    /// With no events for this long, a partition's watermark follows the wall clock (so idle partitions do not hold hours open), in ms
    #[arg(long, env = "TOPK_IDLE_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Event-time window in which a repeated event_id is dropped as a duplicate, in ms (rounded up to a sixteenth of it)
    #[arg(long, env = "TOPK_DEDUP_WINDOW_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_window_ms: Option<i64>,
    /// How far in the future (vs. this machine's clock) a ts may lie, in ms
    #[arg(long, env = "TOPK_MAX_FUTURE_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_future_ms: Option<i64>,
    /// Largest accepted ingest request body, after gzip decompression, in bytes
    #[arg(long, env = "TOPK_MAX_BODY_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    /// Days to keep hourly rows in batch_table; 0 keeps them forever
    #[arg(long, env = "TOPK_HOUR_RETENTION_DAYS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hour_retention_days: Option<u64>,
    /// Length of the top lists kept per bucket
    #[arg(long, env = "TOPK_TOP_K")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// "lambda": approximate speed layer + exact batch layer; "kappa": one exact stream, no batch layer
    #[arg(long, env = "TOPK_ARCHITECTURE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    /// Speed layer: count-min relative error ε per bucket
    #[arg(long, env = "TOPK_SPEED_EPSILON")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_epsilon: Option<f64>,
    /// Speed layer: count-min failure probability δ
    #[arg(long, env = "TOPK_SPEED_DELTA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_delta: Option<f64>,
    /// Speed layer: candidates kept per bucket as a multiple of top_k
    #[arg(long, env = "TOPK_SPEED_CANDIDATES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_candidates: Option<f64>,
    /// Speed layer: how often open buckets are written, in ms
    #[arg(long, env = "TOPK_SPEED_WRITE_INTERVAL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_write_interval_ms: Option<u64>,
    /// Cache API answers (exact ones for 60 s, approximate ones for 1 s)
    #[arg(long, env = "TOPK_API_CACHE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_cache: Option<bool>,
    /// Queries waiting for a store connection beyond which the API answers 503 (load shedding)
    #[arg(long, env = "TOPK_MAX_QUEUED_QUERIES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued_queries: Option<usize>,
    /// Bearer token required by the ingest API (none: open)
    #[arg(long, env = "TOPK_AUTH_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// Kafka bootstrap brokers (host:port,…): the events and flush logs become Kafka topics (none: embedded logs in data_dir)
    #[arg(long, env = "TOPK_KAFKA_BROKERS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_brokers: Option<String>,
    /// Prefix of the Kafka topics `<prefix>events` and `<prefix>flush`, and of the consumer groups
    #[arg(long, env = "TOPK_KAFKA_PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_prefix: Option<String>,
    /// Replication factor of the Kafka topics topk creates
    #[arg(long, env = "TOPK_KAFKA_REPLICATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka_replication: Option<i32>,
    /// The Parquet archive: a directory, or s3://bucket/prefix (credentials, region and endpoint from AWS_* variables) [default: <data_dir>/archive]
    #[arg(long, env = "TOPK_ARCHIVE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// The store: a postgres:// URL, or a SQLite file path [default: <data_dir>/store.db]
    #[arg(long, env = "TOPK_STORE", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Kafka topic of sale events (JSON values) produced by another system, to ingest (the source role)
    #[arg(long, env = "TOPK_SOURCE_TOPIC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_topic: Option<String>,
    /// Share of rejected source events, over the last source_reject_window events, at which the source pauses
    #[arg(long, env = "TOPK_SOURCE_MAX_REJECT_RATE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_max_reject_rate: Option<f64>,
    /// Source events the reject rate is measured over
    #[arg(long, env = "TOPK_SOURCE_REJECT_WINDOW")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_reject_window: Option<usize>,
    /// Event-log partitions this process aggregates: "group" (Kafka: a consumer group spreads them over the aggregator processes), or a list such as "0-3" or "0,2" [default: all]
    #[arg(long, env = "TOPK_AGGREGATE_PARTITIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_partitions: Option<String>,
    /// Dimension sets that get their own top lists, separated by ";": e.g. "country;category;country,category" (dimensions: country, city, category); "" for none
    #[arg(long, env = "TOPK_BREAKDOWNS", value_parser = parse_breakdown_list)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdowns: Option<BreakdownList>,
    /// Distinct values per breakdown set that get their own lists; the rest count under "(other)"
    #[arg(long, env = "TOPK_BREAKDOWN_MAX_VALUES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown_max_values: Option<usize>,
    /// Speed layer: most memory the breakdowns' sketches may take, in MiB; past it a value new to an open bucket counts under "(other)" there until the batch layer's exact answer
    #[arg(long, env = "TOPK_SPEED_BREAKDOWN_MEMORY_MB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_breakdown_memory_mb: Option<usize>,
}

/// The breakdown sets as a flag gives them, one list (a plain `Vec` would be clap's
/// "many values").
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct BreakdownList(Vec<String>);

/// `"country;country,category"` → `["country", "country,category"]`; `""` → none.
fn parse_breakdown_list(s: &str) -> Result<BreakdownList, String> {
    Ok(BreakdownList(s.split(';').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()))
}

/// Every setting with its value: the layers merged. The file format is this, so an
/// unknown key is an error. `kafka_properties` has no flag: a table of librdkafka
/// properties for every Kafka client (`security.protocol`, `sasl.*`, `ssl.*`, …), which a
/// `TOPK_KAFKA_PROPERTY_<NAME>` variable overrides (`TOPK_KAFKA_PROPERTY_SASL_PASSWORD` is
/// `sasl.password`): secrets stay off command lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub partitions: u32,
    pub fsync: FsyncPolicy,
    pub segment_bytes: u64,
    pub retention_hours: u64,
    pub flush_interval_ms: u64,
    pub max_entries: usize,
    pub allowed_lateness_ms: i64,
    pub idle_timeout_ms: u64,
    pub dedup_window_ms: i64,
    pub max_future_ms: i64,
    pub max_body_bytes: usize,
    pub hour_retention_days: u64,
    pub top_k: usize,
    pub architecture: Architecture,
    pub speed_epsilon: f64,
    pub speed_delta: f64,
    pub speed_candidates: f64,
    pub speed_write_interval_ms: u64,
    pub api_cache: bool,
    pub max_queued_queries: usize,
    pub auth_token: Option<String>,
    pub kafka_brokers: Option<String>,
    pub kafka_prefix: String,
    pub kafka_replication: i32,
    pub kafka_properties: BTreeMap<String, String>,
    pub archive: Option<String>,
    pub store: Option<String>,
    pub source_topic: Option<String>,
    pub source_max_reject_rate: f64,
    pub source_reject_window: usize,
    pub aggregate_partitions: Option<String>,
    pub breakdowns: Vec<String>,
    pub breakdown_max_values: usize,
    pub speed_breakdown_memory_mb: usize,
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Default for FileSettings {
    /// The components' own defaults, gathered: none is written here.
    fn default() -> Self {
        let (log, agg, speed, batch) =
            (LogConfig::default(), AggregatorConfig::default(), SpeedConfig::default(), BatchConfig::default());
        let (serve, source, kafka) = (ServeConfig::default(), SourceConfig::default(), KafkaConfig::new("", "", 1));
        FileSettings {
            data_dir: PathBuf::from("./topk-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            partitions: log.partitions,
            fsync: log.fsync,
            segment_bytes: log.segment_bytes,
            retention_hours: log.retention.as_secs() / 3600,
            flush_interval_ms: ms(agg.flush_interval),
            max_entries: agg.max_entries,
            allowed_lateness_ms: agg.allowed_lateness_ms,
            idle_timeout_ms: agg.idle_timeout.map_or(0, ms),
            dedup_window_ms: agg.dedup_window_ms,
            max_future_ms: topk_core::event::Limits::DEFAULT_MAX_FUTURE_MS,
            max_body_bytes: serve.max_body_bytes,
            hour_retention_days: batch.hour_retention.map_or(0, |d| d.as_secs() / 86_400),
            top_k: batch.top_k,
            architecture: speed.architecture,
            speed_epsilon: speed.sizing.epsilon,
            speed_delta: speed.sizing.delta,
            speed_candidates: speed.sizing.candidates_per_row,
            speed_write_interval_ms: ms(speed.write_interval),
            api_cache: serve.api_cache,
            max_queued_queries: serve.max_queued_queries,
            auth_token: serve.auth_token,
            kafka_brokers: None,
            kafka_prefix: topk_log::kafka::DEFAULT_PREFIX.to_string(),
            kafka_replication: kafka.replication,
            kafka_properties: BTreeMap::new(),
            archive: None,
            store: None,
            source_topic: None,
            source_max_reject_rate: source.max_reject_rate,
            source_reject_window: source.window,
            aggregate_partitions: None,
            breakdowns: batch.breakdowns.names(),
            breakdown_max_values: batch.breakdowns.max_values,
            speed_breakdown_memory_mb: speed.breakdown_memory_bytes >> 20,
        }
    }
}

/// Each setting's default as `--help` shows it (`[default: …]`), by flag name; the ones
/// whose default depends on another setting say so in their own help.
pub fn help_defaults() -> Vec<(String, String)> {
    let defaults = serde_json::to_value(FileSettings::default()).expect("settings serialise");
    let mut out = Vec::new();
    for (key, value) in defaults.as_object().expect("a table") {
        let shown = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(_) => continue,
            other => other.to_string(),
        };
        out.push((key.replace('_', "-"), shown));
    }
    out
}

impl Settings {
    /// Layers `self` (flags and env, merged by clap) over a TOML file over the defaults.
    pub fn over_file(self, file: Option<&Path>) -> anyhow::Result<Config> {
        let mut layers = Figment::from(Serialized::defaults(FileSettings::default()));
        if let Some(path) = file {
            anyhow::ensure!(path.exists(), "reading config file {}: no such file", path.display());
            layers = layers.merge(Toml::file_exact(path));
        }
        let merged: FileSettings = layers.merge(Serialized::defaults(self)).extract().map_err(|e| {
            let file = file.map_or(String::new(), |p| format!("config file {}: ", p.display()));
            anyhow::anyhow!("{file}{}", e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
        })?;
        merged.resolve()
    }
}

impl FileSettings {
    fn resolve(self) -> anyhow::Result<Config> {
        let partitions = self.partitions;
        anyhow::ensure!((1..=1024).contains(&partitions), "partitions must be between 1 and 1024, got {partitions}");
        anyhow::ensure!(self.flush_interval_ms > 0, "flush_interval_ms must be positive");
        anyhow::ensure!(self.max_entries > 0, "max_entries must be positive");
        let non_negative = |name: &str, v: i64| {
            anyhow::ensure!(v >= 0, "{name} must not be negative, got {v}");
            Ok(v)
        };
        let kafka = self.kafka_brokers.filter(|b| !b.is_empty()).map(|brokers| KafkaSettings {
            brokers,
            prefix: self.kafka_prefix,
            replication: self.kafka_replication,
            // `vars()` would panic on a variable that is not UTF-8; such a one is not ours.
            properties: kafka_properties(
                self.kafka_properties,
                std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            ),
        });
        let aggregate_group = self.aggregate_partitions.as_deref() == Some("group");
        let aggregate_partitions = match self.aggregate_partitions.as_deref() {
            None | Some("group") => (0..partitions).collect(),
            Some(list) => parse_partitions(list, partitions)?,
        };
        anyhow::ensure!(
            !aggregate_group || kafka.is_some(),
            "aggregate_partitions = \"group\" needs kafka_brokers (a Kafka consumer group)"
        );
        let data_dir = self.data_dir;
        let source = match self.source_topic.filter(|t| !t.is_empty()) {
            None => None,
            Some(topic) => {
                let source = SourceConfig {
                    topic,
                    max_reject_rate: self.source_max_reject_rate,
                    window: self.source_reject_window,
                };
                source.validate().map_err(anyhow::Error::msg)?;
                anyhow::ensure!(kafka.is_some(), "source_topic needs kafka_brokers");
                Some(source)
            }
        };
        // A location given, or the default one in the data directory.
        let located = |given: Option<String>, default: &str| {
            given.filter(|s| !s.is_empty()).unwrap_or_else(|| data_dir.join(default).display().to_string())
        };
        let store = located(self.store, "store.db");
        let top_k = self.top_k.clamp(1, 100_000);
        let sizing = SpeedSizing {
            top_n: top_k,
            candidates_per_row: self.speed_candidates,
            epsilon: self.speed_epsilon,
            delta: self.speed_delta,
        };
        let open = |x: f64| x > 0.0 && x < 1.0;
        anyhow::ensure!(open(sizing.epsilon), "speed_epsilon must lie in (0, 1), got {}", sizing.epsilon);
        anyhow::ensure!(open(sizing.delta), "speed_delta must lie in (0, 1), got {}", sizing.delta);
        anyhow::ensure!(
            (1.0..=16.0).contains(&sizing.candidates_per_row),
            "speed_candidates must lie in 1..=16, got {}",
            sizing.candidates_per_row
        );
        let auth_token = self.auth_token.filter(|t| !t.is_empty());
        let breakdowns = Breakdowns::parse(&self.breakdowns, self.breakdown_max_values).map_err(anyhow::Error::msg)?;
        Ok(Config {
            kafka,
            archive: located(self.archive, "archive"),
            aggregate_partitions,
            aggregate_group,
            source,
            listen: self.listen,
            log: LogConfig {
                partitions,
                segment_bytes: self.segment_bytes.max(1 << 16),
                fsync: self.fsync,
                retention: Duration::from_secs(self.retention_hours.saturating_mul(3600)),
            },
            aggregator: AggregatorConfig {
                flush_interval: Duration::from_millis(self.flush_interval_ms),
                max_entries: self.max_entries,
                allowed_lateness_ms: non_negative("allowed_lateness_ms", self.allowed_lateness_ms)?,
                dedup_window_ms: non_negative("dedup_window_ms", self.dedup_window_ms)?,
                idle_timeout: Some(Duration::from_millis(self.idle_timeout_ms.max(1))),
                dims: breakdowns.kept(),
            },
            max_future_ms: non_negative("max_future_ms", self.max_future_ms)?,
            batch: BatchConfig {
                top_k,
                hour_retention: match self.hour_retention_days {
                    0 => None,
                    days => Some(Duration::from_secs(days.saturating_mul(24 * 3600))),
                },
                breakdowns: breakdowns.clone(),
                ..BatchConfig::default()
            },
            speed: SpeedConfig {
                sizing,
                architecture: self.architecture,
                write_interval: Duration::from_millis(self.speed_write_interval_ms.max(10)),
                breakdowns: breakdowns.clone(),
                breakdown_memory_bytes: self.speed_breakdown_memory_mb.saturating_mul(1 << 20),
                ..SpeedConfig::default()
            },
            serve: ServeConfig {
                max_body_bytes: self.max_body_bytes,
                auth_token: auth_token.clone(),
                api_cache: self.api_cache,
                max_queued_queries: self.max_queued_queries.max(1),
                store: store.clone(),
                lambda: self.architecture == Architecture::Lambda,
                breakdowns,
            },
            auth_token,
            store,
            data_dir,
        })
    }
}

/// `"0-3,6"` → `[0, 1, 2, 3, 6]`, each below `partitions`.
fn parse_partitions(list: &str, partitions: u32) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let parse = |x: &str| -> anyhow::Result<u32> {
            x.trim()
                .parse()
                .with_context(|| format!("aggregate_partitions: {x:?} in {list:?} is not a partition number"))
        };
        let (a, b) = (parse(a)?, parse(b)?);
        anyhow::ensure!(a <= b && b < partitions, "aggregate_partitions: {part:?} is not within 0-{}", partitions - 1);
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    anyhow::ensure!(!out.is_empty(), "aggregate_partitions: {list:?} names no partition");
    Ok(out)
}

/// The resolved configuration of one process: each component's config, and where things
/// live.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `None`: the embedded logs in `data_dir`.
    pub kafka: Option<KafkaSettings>,
    /// A `postgres://` URL or a SQLite path.
    pub store: String,
    /// A directory or an `s3://bucket/prefix` URL.
    pub archive: String,
    /// The event-log partitions this process's aggregators own (unless `aggregate_group`).
    pub aggregate_partitions: Vec<u32>,
    /// The aggregators' partitions come from a Kafka consumer group.
    pub aggregate_group: bool,
    /// Another system's Kafka topic to ingest, if any.
    pub source: Option<SourceConfig>,
    pub listen: SocketAddr,
    pub log: LogConfig,
    pub aggregator: AggregatorConfig,
    pub max_future_ms: i64,
    pub batch: BatchConfig,
    pub speed: SpeedConfig,
    pub serve: ServeConfig,
    pub auth_token: Option<String>,
}

impl Config {
    pub fn events_dir(&self) -> PathBuf {
        self.data_dir.join("events")
    }
    pub fn flush_dir(&self) -> PathBuf {
        self.data_dir.join("flush")
    }
    /// The archive: a directory, or an object-store prefix.
    pub fn archive_root(&self) -> anyhow::Result<Root> {
        Root::parse(&self.archive).with_context(|| format!("opening the archive {}", self.archive))
    }
    /// Opens the store (PostgreSQL or SQLite, per `store`).
    pub fn open_store(&self) -> anyhow::Result<SqlStore> {
        SqlStore::open(&self.store).with_context(|| format!("opening the store {}", topk_store::redact(&self.store)))
    }

    /// Opens the Kafka topic `<prefix><name>`.
    pub fn kafka_log(&self, kafka: &KafkaSettings, name: &str) -> anyhow::Result<KafkaLog> {
        let cfg = kafka.topic(&format!("{}{name}", kafka.prefix), self.log.partitions);
        KafkaLog::open(cfg).with_context(|| format!("opening the {name} topic"))
    }

    /// Opens the events and flush logs: Kafka topics, or the embedded logs.
    pub fn open_logs(&self) -> anyhow::Result<(Arc<dyn Log>, Arc<dyn Log>)> {
        let open = |name: &str, dir: PathBuf| -> anyhow::Result<Arc<dyn Log>> {
            Ok(match &self.kafka {
                Some(k) => Arc::new(self.kafka_log(k, name)?),
                None => {
                    Arc::new(DiskLog::open(&dir, self.log.clone()).with_context(|| format!("opening the {name} log"))?)
                }
            })
        };
        Ok((open("events", self.events_dir())?, open("flush", self.flush_dir())?))
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
