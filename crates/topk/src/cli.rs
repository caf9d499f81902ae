//! The command line: every command and flag, with the settings' defaults shown in
//! `--help` from the code that owns them (`config::help_defaults`).

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use topk::config::{help_defaults, Settings};
use topk_core::time::Granularity;
use topk_gen::GenConfig;
use topk_ingest::files::Format;

fn format_arg() -> impl clap::builder::TypedValueParser<Value = Format> {
    clap::builder::PossibleValuesParser::new(["ndjson", "csv"]).map(|s| s.parse::<Format>().expect("a listed value"))
}

/// The parsed command line.
pub fn parse() -> Cli {
    let matches = with_defaults(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The command with every setting's default added to its help, recursively.
pub fn with_defaults(mut cmd: clap::Command) -> clap::Command {
    let defaults = help_defaults();
    let ids: Vec<String> = cmd.get_arguments().map(|a| a.get_id().to_string()).collect();
    for id in ids {
        let flag = id.replace('_', "-");
        if let Some((_, default)) = defaults.iter().find(|(f, _)| *f == flag) {
            let default = default.clone();
            cmd = cmd.mut_arg(&id, move |a| {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                a.help(format!("{help} [default: {default}]"))
            });
        }
    }
    let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in subs {
        cmd = cmd.mut_subcommand(&name, with_defaults);
    }
    cmd
}

#[derive(Parser)]
#[command(name = "topk", version, about = "Top-K products by sales: ingest, aggregate, archive, serve")]
pub struct Cli {
    /// TOML configuration file (settings as in --help, snake_case)
    #[arg(long, global = true, env = "TOPK_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run every role in one process: ingest API, aggregators, archive
    Serve {
        /// Also generate live demo traffic (Zipf over 100k products, with spikes)
        #[arg(long)]
        demo: bool,
        /// Demo events per second
        #[arg(long, default_value_t = 2000)]
        demo_rate: u32,
        /// Products the demo sells (history and live traffic)
        #[arg(long, default_value_t = topk_gen::DEFAULT_PRODUCTS)]
        demo_products: u64,
        /// Accelerated event time (N > 1): live events start a day back and their time runs
        /// N times as fast as the clock until it catches up with it, so hours end every
        /// 3600/N s (the history, if any, ends where they start)
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        demo_speedup: u32,
        /// Days of history the demo first fills an empty data directory with, through the
        /// same pipeline (0: none), so exact past periods and trends show at once
        #[arg(long, default_value_t = 21)]
        demo_history_days: u32,
        #[command(flatten)]
        settings: Settings,
    },
    /// Production role: aggregate the events log's partitions (aggregate_partitions) into
    /// the flush log (needs kafka_brokers; also serves the HTTP API, health and metrics)
    Aggregator {
        #[command(flatten)]
        settings: Settings,
    },
    /// Production role: archive the flush log as Parquet files (needs kafka_brokers)
    Archive {
        #[command(flatten)]
        settings: Settings,
    },
    /// Production role: the approximate speed layer, flush log → store (needs kafka_brokers)
    Speed {
        #[command(flatten)]
        settings: Settings,
    },
    /// Production role: ingest another system's Kafka topic of JSON sale events
    /// (source_topic), pausing when too many are rejected
    Source {
        #[command(flatten)]
        settings: Settings,
    },
    /// Resume a Kafka source paused by its reject rate
    Resume {
        /// The HTTP address of the process running the source
        #[arg(long)]
        server: String,
        /// Bearer token, if the server requires one
        #[arg(long, env = "TOPK_AUTH_TOKEN", hide_env_values = true)]
        auth_token: Option<String>,
    },
    /// Production role: the HTTP API alone: ingest into the events log, queries, dashboard
    /// (needs kafka_brokers)
    Api {
        #[command(flatten)]
        settings: Settings,
    },
    /// Run NDJSON or CSV files through the pipeline; resumes after a crash
    Replay {
        /// Input files (.csv is CSV, anything else NDJSON)
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Send to a running `topk serve` at this URL instead of the local data directory
        #[arg(long)]
        server: Option<String>,
        /// Input format, when the file name does not tell (.csv is CSV, anything else NDJSON)
        #[arg(long, value_parser = format_arg())]
        format: Option<Format>,
        #[command(flatten)]
        settings: Settings,
    },
    /// The batch layer: with no subcommand, the production role (the scheduler: archive →
    /// store, needs kafka_brokers); `run` and `status` for external orchestration (Airflow)
    Batch {
        #[command(subcommand)]
        command: Option<BatchCommand>,
        #[command(flatten)]
        settings: Settings,
    },
    /// How the speed layer's approximate answers compared with the exact ones, per closed
    /// bucket (scored by the batch layer when it replaces them)
    Accuracy {
        /// How many buckets to list, newest first
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table
        #[arg(long)]
        json: bool,
        /// Score projections instead: each closed, exact bucket of `--granularity` projected
        /// at 25, 50 and 75 % of its time from the exact hours before, against its end
        #[arg(long)]
        projections: bool,
        /// The buckets whose projections are scored
        #[arg(long, default_value = "day", requires = "projections")]
        granularity: Granularity,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write deterministic synthetic sale events (NDJSON or CSV)
    Gen {
        /// Lines to write (duplicates included)
        #[arg(long, default_value_t = GenConfig::default().events)]
        events: u64,
        /// Distinct products, ranked 1..=N by popularity
        #[arg(long, default_value_t = GenConfig::default().products)]
        products: u64,
        /// Zipf exponent of product popularity (0: uniform)
        #[arg(long, default_value_t = GenConfig::default().zipf)]
        zipf: f64,
        /// Seed of the random numbers: the same seed gives the same file
        #[arg(long, default_value_t = GenConfig::default().seed)]
        seed: u64,
        /// First timestamp (RFC 3339 or YYYY-MM-DD)
        #[arg(long, default_value = topk_gen::DEFAULT_START)]
        start: String,
        /// Days the events span
        #[arg(long, default_value_t = GenConfig::default().days)]
        days: f64,
        /// Share of lines that refund a recent sale
        #[arg(long, default_value_t = GenConfig::default().refund_rate)]
        refund_rate: f64,
        /// Share of lines that repeat a recent line byte for byte (redeliveries)
        #[arg(long, default_value_t = GenConfig::default().duplicate_rate)]
        duplicate_rate: f64,
        /// Share of events arriving 1-3 hours late
        #[arg(long, default_value_t = GenConfig::default().late_rate)]
        late_rate: f64,
        /// Strength of a daily and weekly rhythm of sales, 0 (even) to 1: busiest at 20:00
        /// UTC and at weekends
        #[arg(long, default_value_t = GenConfig::default().seasonality)]
        seasonality: f64,
        /// Output format
        #[arg(long, value_parser = format_arg(), default_value = "ndjson")]
        format: Format,
        /// Output file (default: standard output)
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

// Parsed once per process, like `Command`.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum BatchCommand {
    /// Run the DAG (check, rollup, clean_speed, top_lists) of every bucket in a range;
    /// exits non-zero if any bucket failed or was not ready
    Run {
        #[arg(long)]
        granularity: Granularity,
        /// Range start (RFC 3339 or YYYY-MM-DD)
        #[arg(long)]
        from: String,
        /// Range end, exclusive
        #[arg(long)]
        to: String,
        /// Re-run buckets that are already up to date
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        settings: Settings,
    },
    /// Show the batch runs, failures first
    Status {
        /// How many runs to list
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The settings of the commands that only read the store.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// Where the logs, the archive and the state live
    #[arg(long, env = "TOPK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The store: a postgres:// URL, or a SQLite file path [default: <data_dir>/store.db]
    #[arg(long, env = "TOPK_STORE", hide_env_values = true)]
    store: Option<String>,
}

impl StoreArgs {
    /// Opens the existing store (a missing SQLite file is an error, not created).
    pub fn open(self, config: Option<&std::path::Path>) -> anyhow::Result<topk_store::SqlStore> {
        let settings = Settings { data_dir: self.data_dir, store: self.store, ..Settings::default() };
        let cfg = settings.over_file(config)?;
        anyhow::ensure!(
            topk_store::is_postgres(&cfg.store) || std::path::Path::new(&cfg.store).exists(),
            "no store at {}: nothing has run with this data directory yet (--data-dir, or --store)",
            cfg.store
        );
        cfg.open_store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `topk serve --help` shows each setting's default as the code has it (the README's
    /// table is held to the same defaults by a test of `config`).
    #[test]
    fn help_shows_the_defaults_the_code_uses() {
        let mut cmd = with_defaults(Cli::command());
        let help = cmd.find_subcommand_mut("serve").expect("serve").render_long_help().to_string();
        let defaults = help_defaults();
        assert!(defaults.len() >= 25, "{defaults:?}");
        for (flag, default) in defaults {
            let at = help.find(&format!("--{flag} ")).unwrap_or_else(|| panic!("--{flag} is not in serve --help"));
            let entry = &help[at..];
            let entry = &entry[..entry[2..].find("\n  -").map_or(entry.len(), |end| end + 2)];
            let entry = entry.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(entry.contains(&format!("[default: {default}]")), "--{flag}: {entry}");
        }
    }
}
