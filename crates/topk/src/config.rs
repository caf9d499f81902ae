//! Configuration: built-in defaults, then a TOML file, then `TOPK_*` environment
//! variables, then command-line flags — each later layer wins.
//!
//! [`Settings`] is both the flag set and the file format, so a setting has one name
//! everywhere: `--flush-interval-ms` / `TOPK_FLUSH_INTERVAL_MS` / `flush_interval_ms`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use std::sync::Arc;
use topk_aggregator::AggregatorConfig;
use topk_archive::Root;
use topk_batch::BatchConfig;
use topk_log::{DiskLog, FsyncPolicy, KafkaConfig, KafkaLog, Log, LogConfig};
use topk_speed::{SpeedConfig, SpeedSizing};
use topk_store::SqlStore;

/// Every setting, each optional so that layers can be merged. The doc comments are the
/// reference documentation (`topk serve --help`).
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the logs, the archive and the state live [default: ./topk-data]
    #[arg(long, env = "TOPK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the HTTP server listens on [default: 127.0.0.1:8080]
    #[arg(long, env = "TOPK_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Partitions of the events and flush logs; fixed once data exists [default: 8]
    #[arg(long, env = "TOPK_PARTITIONS")]
    pub partitions: Option<u32>,
    /// "batch": fsync before an ingest batch is acknowledged; "never": leave it to the OS [default: batch]
    #[arg(long, env = "TOPK_FSYNC")]
    pub fsync: Option<String>,
    /// Log segment size in bytes [default: 134217728]
    #[arg(long, env = "TOPK_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Hours to keep consumed log segments [default: 168]
    #[arg(long, env = "TOPK_RETENTION_HOURS")]
    pub retention_hours: Option<u64>,
    /// Aggregator flush interval in ms; bounds the speed layer's freshness [default: 1000]
    #[arg(long, env = "TOPK_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Aggregator entries per partition that force a flush (bounds memory) [default: 500000]
    #[arg(long, env = "TOPK_MAX_ENTRIES")]
    pub max_entries: Option<usize>,
    /// Allowed lateness of events behind the newest, in ms [default: 300000]
    #[arg(long, env = "TOPK_ALLOWED_LATENESS_MS")]
    pub allowed_lateness_ms: Option<i64>,
    /// With no events for this long, a partition's watermark follows the wall clock (so idle partitions do not hold hours open), in ms [default: 30000]
    #[arg(long, env = "TOPK_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Event-time window in which a repeated event_id is dropped as a duplicate, in ms [default: 600000]
    #[arg(long, env = "TOPK_DEDUP_WINDOW_MS")]
    pub dedup_window_ms: Option<i64>,
    /// How far in the future (vs. this machine's clock) a ts may lie, in ms [default: 86400000]
    #[arg(long, env = "TOPK_MAX_FUTURE_MS")]
    pub max_future_ms: Option<i64>,
    /// Largest accepted ingest request body, after gzip decompression, in bytes [default: 67108864]
    #[arg(long, env = "TOPK_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Days to keep hourly rows in batch_table; 0 keeps them forever [default: 30]
    #[arg(long, env = "TOPK_HOUR_RETENTION_DAYS")]
    pub hour_retention_days: Option<u64>,
    /// Length of the top lists kept per bucket [default: 1000]
    #[arg(long, env = "TOPK_TOP_K")]
    pub top_k: Option<usize>,
    /// "lambda": approximate speed layer + exact batch layer; "kappa": one exact stream, no batch layer [default: lambda]
    #[arg(long, env = "TOPK_ARCHITECTURE")]
    pub architecture: Option<String>,
    /// Speed layer: count-min relative error ε per bucket [default: 0.02]
    #[arg(long, env = "TOPK_SPEED_EPSILON")]
    pub speed_epsilon: Option<f64>,
    /// Speed layer: count-min failure probability δ [default: 0.05]
    #[arg(long, env = "TOPK_SPEED_DELTA")]
    pub speed_delta: Option<f64>,
    /// Speed layer: candidates kept per bucket as a multiple of top_k [default: 1.0]
    #[arg(long, env = "TOPK_SPEED_CANDIDATES")]
    pub speed_candidates: Option<f64>,
    /// Speed layer: how often open buckets are written, in ms [default: 500]
    #[arg(long, env = "TOPK_SPEED_WRITE_INTERVAL_MS")]
    pub speed_write_interval_ms: Option<u64>,
    /// Cache API answers (exact ones for 60 s, approximate ones for 1 s) [default: true]
    #[arg(long, env = "TOPK_API_CACHE")]
    pub api_cache: Option<bool>,
    /// Bearer token required by the ingest API (none: open)
    #[arg(long, env = "TOPK_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Kafka bootstrap brokers (host:port,…): the events and flush logs become Kafka topics (none: embedded logs in data_dir)
    #[arg(long, env = "TOPK_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Prefix of the Kafka topics `<prefix>events` and `<prefix>flush`, and of the consumer groups [default: topk.]
    #[arg(long, env = "TOPK_KAFKA_PREFIX")]
    pub kafka_prefix: Option<String>,
    /// Replication factor of the Kafka topics topk creates [default: 1]
    #[arg(long, env = "TOPK_KAFKA_REPLICATION")]
    pub kafka_replication: Option<i32>,
    /// Further librdkafka properties for every Kafka client, as a TOML table of strings
    /// (`security.protocol`, `sasl.*`, `ssl.*`, …); a `TOPK_KAFKA_PROPERTY_<NAME>` variable
    /// sets the property `<name>` with dots for underscores (`TOPK_KAFKA_PROPERTY_SASL_PASSWORD`
    /// is `sasl.password`) and wins over the file. Not a flag: secrets stay off command lines.
    #[arg(skip)]
    pub kafka_properties: Option<BTreeMap<String, String>>,
    /// The Parquet archive: a directory, or s3://bucket/prefix (credentials, region and endpoint from AWS_* variables) [default: <data_dir>/archive]
    #[arg(long, env = "TOPK_ARCHIVE")]
    pub archive: Option<String>,
    /// The store: a postgres:// URL, or a SQLite file path [default: <data_dir>/store.db]
    #[arg(long, env = "TOPK_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Kafka topic of sale events (JSON values) produced by another system, to ingest (the source role)
    #[arg(long, env = "TOPK_SOURCE_TOPIC")]
    pub source_topic: Option<String>,
    /// Share of rejected source events, over the last source_reject_window events, at which the source pauses [default: 0.5]
    #[arg(long, env = "TOPK_SOURCE_MAX_REJECT_RATE")]
    pub source_max_reject_rate: Option<f64>,
    /// Source events the reject rate is measured over [default: 1000]
    #[arg(long, env = "TOPK_SOURCE_REJECT_WINDOW")]
    pub source_reject_window: Option<usize>,
    /// Event-log partitions this process aggregates: "group" (Kafka: a consumer group spreads them over the aggregator processes), or a list such as "0-3" or "0,2" [default: all]
    #[arg(long, env = "TOPK_AGGREGATE_PARTITIONS")]
    pub aggregate_partitions: Option<String>,
}

/// Fills every `None` in `$a` from `$b`.
macro_rules! merge {
    ($a:ident, $b:ident, $($f:ident),+) => { $( if $a.$f.is_none() { $a.$f = $b.$f.clone(); } )+ };
}

impl Settings {
    /// Layers `self` (flags and env, already merged by clap) over a TOML file.
    pub fn over_file(mut self, file: Option<&Path>) -> anyhow::Result<Config> {
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            let f: Settings = toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
            merge!(
                self,
                f,
                data_dir,
                listen,
                partitions,
                fsync,
                segment_bytes,
                retention_hours,
                flush_interval_ms,
                max_entries,
                allowed_lateness_ms,
                idle_timeout_ms,
                dedup_window_ms,
                max_future_ms,
                max_body_bytes,
                hour_retention_days,
                top_k,
                architecture,
                speed_epsilon,
                speed_delta,
                speed_candidates,
                speed_write_interval_ms,
                api_cache,
                auth_token,
                kafka_brokers,
                kafka_prefix,
                kafka_replication,
                kafka_properties,
                store,
                archive,
                source_topic,
                source_max_reject_rate,
                source_reject_window,
                aggregate_partitions
            );
        }
        self.resolve()
    }

    fn resolve(self) -> anyhow::Result<Config> {
        let partitions = self.partitions.unwrap_or(8);
        anyhow::ensure!((1..=1024).contains(&partitions), "partitions must be between 1 and 1024, got {partitions}");
        let fsync: FsyncPolicy = self.fsync.as_deref().unwrap_or("batch").parse().map_err(anyhow::Error::msg)?;
        let flush_interval_ms = self.flush_interval_ms.unwrap_or(1_000);
        anyhow::ensure!(flush_interval_ms > 0, "flush_interval_ms must be positive");
        let max_entries = self.max_entries.unwrap_or(500_000);
        anyhow::ensure!(max_entries > 0, "max_entries must be positive");
        let non_negative = |name: &str, v: i64| {
            anyhow::ensure!(v >= 0, "{name} must not be negative, got {v}");
            Ok(v)
        };
        let kafka = self.kafka_brokers.filter(|b| !b.is_empty()).map(|brokers| KafkaSettings {
            brokers,
            prefix: self.kafka_prefix.unwrap_or_else(|| "topk.".into()),
            replication: self.kafka_replication.unwrap_or(1),
            // `vars()` would panic on a variable that is not UTF-8; such a one is not ours.
            properties: kafka_properties(
                self.kafka_properties.unwrap_or_default(),
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
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("./topk-data"));
        let source = match self.source_topic.filter(|t| !t.is_empty()) {
            None => None,
            Some(topic) => {
                let max_reject_rate = self.source_max_reject_rate.unwrap_or(0.5);
                anyhow::ensure!(
                    max_reject_rate > 0.0 && max_reject_rate <= 1.0,
                    "source_max_reject_rate must lie in (0, 1], got {max_reject_rate}"
                );
                let window = self.source_reject_window.unwrap_or(1000);
                anyhow::ensure!(window >= 10, "source_reject_window must be at least 10, got {window}");
                anyhow::ensure!(kafka.is_some(), "source_topic needs kafka_brokers");
                Some(SourceSettings { topic, max_reject_rate, window })
            }
        };
        // A location given, or the default one in the data directory.
        let located = |given: Option<String>, default: &str| {
            given.filter(|s| !s.is_empty()).unwrap_or_else(|| data_dir.join(default).display().to_string())
        };
        Ok(Config {
            kafka,
            store: located(self.store, "store.db"),
            archive: located(self.archive, "archive"),
            aggregate_partitions,
            aggregate_group,
            source,
            data_dir,
            listen: self.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            log: LogConfig {
                partitions,
                segment_bytes: self.segment_bytes.unwrap_or(128 << 20).max(1 << 16),
                fsync,
                retention: Duration::from_secs(self.retention_hours.unwrap_or(168).saturating_mul(3600)),
            },
            aggregator: AggregatorConfig {
                flush_interval: Duration::from_millis(flush_interval_ms),
                max_entries,
                allowed_lateness_ms: non_negative("allowed_lateness_ms", self.allowed_lateness_ms.unwrap_or(300_000))?,
                dedup_window_ms: non_negative("dedup_window_ms", self.dedup_window_ms.unwrap_or(600_000))?,
                idle_timeout: Some(Duration::from_millis(self.idle_timeout_ms.unwrap_or(30_000).max(1))),
            },
            max_future_ms: non_negative("max_future_ms", self.max_future_ms.unwrap_or(24 * 3_600_000))?,
            max_body_bytes: self.max_body_bytes.unwrap_or(64 << 20),
            batch: BatchConfig {
                top_k: self.top_k.unwrap_or(1000).clamp(1, 100_000),
                hour_retention: match self.hour_retention_days.unwrap_or(30) {
                    0 => None,
                    days => Some(Duration::from_secs(days.saturating_mul(24 * 3600))),
                },
                ..BatchConfig::default()
            },
            speed: {
                let sizing = SpeedSizing {
                    top_n: self.top_k.unwrap_or(1000).clamp(1, 100_000),
                    candidates_per_row: self.speed_candidates.unwrap_or(1.0),
                    epsilon: self.speed_epsilon.unwrap_or(0.02),
                    delta: self.speed_delta.unwrap_or(0.05),
                };
                let open = |x: f64| x > 0.0 && x < 1.0;
                anyhow::ensure!(open(sizing.epsilon), "speed_epsilon must lie in (0, 1), got {}", sizing.epsilon);
                anyhow::ensure!(open(sizing.delta), "speed_delta must lie in (0, 1), got {}", sizing.delta);
                anyhow::ensure!(
                    (1.0..=16.0).contains(&sizing.candidates_per_row),
                    "speed_candidates must lie in 1..=16, got {}",
                    sizing.candidates_per_row
                );
                SpeedConfig {
                    sizing,
                    architecture: self
                        .architecture
                        .as_deref()
                        .unwrap_or("lambda")
                        .parse()
                        .map_err(anyhow::Error::msg)?,
                    write_interval: Duration::from_millis(self.speed_write_interval_ms.unwrap_or(500).max(10)),
                    ..SpeedConfig::default()
                }
            },
            api_cache: self.api_cache.unwrap_or(true),
            auth_token: self.auth_token.filter(|t| !t.is_empty()),
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

/// The plain Kafka source: a topic of JSON sale events, and when to pause it.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub topic: String,
    pub max_reject_rate: f64,
    pub window: usize,
}

/// The `kafka_properties` of the file, overridden by `TOPK_KAFKA_PROPERTY_*` variables.
fn kafka_properties(
    mut file: BTreeMap<String, String>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    for (var, value) in env {
        if let Some(name) = var.strip_prefix("TOPK_KAFKA_PROPERTY_").filter(|n| !n.is_empty()) {
            file.insert(name.to_ascii_lowercase().replace('_', "."), value);
        }
    }
    file.into_iter().collect()
}

/// Where the logs live when they are Kafka topics.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub prefix: String,
    pub replication: i32,
    /// librdkafka properties for every client (may hold secrets: not in `Debug`).
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("prefix", &self.prefix)
            .field("replication", &self.replication)
            .field("properties", &self.properties.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl KafkaSettings {
    /// The client settings for `topic` with `partitions` partitions.
    pub fn topic(&self, topic: &str, partitions: u32) -> KafkaConfig {
        let mut cfg = KafkaConfig::new(&self.brokers, topic, partitions);
        cfg.replication = self.replication;
        cfg.group_prefix = self.prefix.clone();
        cfg.properties = self.properties.clone();
        cfg
    }
}

/// The resolved configuration of one process.
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
    pub source: Option<SourceSettings>,
    pub api_cache: bool,
    pub listen: SocketAddr,
    pub log: LogConfig,
    pub aggregator: AggregatorConfig,
    pub max_future_ms: i64,
    pub max_body_bytes: usize,
    pub batch: BatchConfig,
    pub speed: SpeedConfig,
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
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("topk.toml");
        std::fs::write(&file, "partitions = 4\nflush_interval_ms = 2000\nfsync = \"never\"\n").unwrap();
        let cli = Cli::parse_from(["topk", "--partitions", "2"]);
        let cfg = cli.settings.over_file(Some(&file)).unwrap();
        assert_eq!(cfg.log.partitions, 2, "flag wins over file");
        assert_eq!(cfg.aggregator.flush_interval, Duration::from_secs(2), "file wins over default");
        assert_eq!(cfg.log.fsync, FsyncPolicy::Never);
        assert_eq!(cfg.aggregator.max_entries, 500_000, "default");
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("topk.toml");
        std::fs::write(&file, "partitons = 4\n").unwrap();
        let err = format!("{:#}", Settings::default().over_file(Some(&file)).unwrap_err());
        assert!(err.contains("unknown field `partitons`"), "{err}");
        let err = Settings { fsync: Some("sometimes".into()), ..Settings::default() }.over_file(None).unwrap_err();
        assert!(err.to_string().contains("unknown fsync policy \"sometimes\""), "{err}");
        let err = Settings { partitions: Some(0), ..Settings::default() }.over_file(None).unwrap_err();
        assert!(err.to_string().contains("partitions must be between 1 and 1024"), "{err}");
        let bad = |list: &str| {
            let s = Settings { partitions: Some(4), aggregate_partitions: Some(list.into()), ..Settings::default() };
            s.over_file(None).unwrap_err().to_string()
        };
        assert!(bad("2-5").contains("\"2-5\" is not within 0-3"), "{}", bad("2-5"));
        assert!(bad("x").contains("\"x\" in \"x\" is not a partition number"), "{}", bad("x"));
    }

    #[test]
    fn kafka_properties_come_from_the_file_and_variables_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("topk.toml");
        std::fs::write(
            &file,
            "kafka_brokers = \"k:9092\"\n[kafka_properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"old\"\n",
        )
        .unwrap();
        let cfg = Settings::default().over_file(Some(&file)).unwrap();
        let kafka = cfg.kafka.unwrap();
        assert!(kafka.properties.contains(&("security.protocol".into(), "SASL_SSL".into())));
        assert!(!format!("{kafka:?}").contains("old"), "secrets stay out of Debug: {kafka:?}");
        let file_props = BTreeMap::from([("sasl.password".to_string(), "old".to_string())]);
        let env = [
            ("TOPK_KAFKA_PROPERTY_SASL_PASSWORD".to_string(), "new".to_string()),
            ("TOPK_KAFKA_PROPERTY_SSL_CA_LOCATION".into(), "/ca.pem".into()),
            ("TOPK_KAFKA_PROPERTY_".into(), "ignored".into()),
            ("HOME".into(), "/root".into()),
        ];
        assert_eq!(
            kafka_properties(file_props, env),
            [("sasl.password".to_string(), "new".to_string()), ("ssl.ca.location".into(), "/ca.pem".into())]
        );
        std::fs::write(&file, "[kafka_properties]\n\"socket.timeout.ms\" = 5000\n").unwrap();
        let err = format!("{:#}", Settings::default().over_file(Some(&file)).unwrap_err());
        assert!(err.contains("invalid type: integer `5000`, expected a string"), "{err}");
    }

    #[test]
    fn the_sample_production_config_is_valid() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prod.toml");
        let cfg = Settings::default().over_file(Some(&file)).unwrap();
        assert!(cfg.aggregate_group);
        assert_eq!(cfg.kafka.unwrap().replication, 3);
        assert!(cfg.store.starts_with("postgres://") && cfg.archive.starts_with("s3://"));
    }

    #[test]
    fn aggregate_partitions_and_store_locations() {
        let s =
            Settings { partitions: Some(8), aggregate_partitions: Some("6-7, 0,1-2".into()), ..Settings::default() };
        assert_eq!(s.over_file(None).unwrap().aggregate_partitions, [0, 1, 2, 6, 7]);
        let cfg = Settings::default().over_file(None).unwrap();
        assert_eq!(cfg.aggregate_partitions.len(), 8);
        assert_eq!(cfg.store, "./topk-data/store.db");
        assert!(cfg.kafka.is_none());
    }
}
