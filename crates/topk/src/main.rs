//! The `topk` command line; see the library crate docs for the layout.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

use topk::config::{self, Settings};
use topk::gen::{self, GenConfig, GenFormat, LiveTraffic};
use topk::http;
use topk::pipeline::{self, Pipeline, Roles};
use topk::replay::{self, Format};
use topk_batch::Batch;
use topk_core::time::Granularity;
use topk_store::Store;

#[derive(Parser)]
#[command(name = "topk", version, about = "Top-K products by sales: ingest, aggregate, archive, serve")]
struct Cli {
    /// TOML configuration file (settings as in --help, snake_case)
    #[arg(long, global = true, env = "TOPK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run every role in one process: ingest API, aggregators, archive
    Serve {
        /// Also generate live demo traffic (Zipf over 100k products, with spikes)
        #[arg(long)]
        demo: bool,
        /// Demo events per second
        #[arg(long, default_value_t = 2000)]
        demo_rate: u32,
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
        /// Input format, when the file name does not tell
        #[arg(long, value_enum)]
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
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write deterministic synthetic sale events (NDJSON or CSV)
    Gen {
        /// Lines to write (duplicates included)
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Distinct products, ranked 1..=N by popularity
        #[arg(long, default_value_t = 100_000)]
        products: u64,
        /// Zipf exponent of product popularity (0: uniform)
        #[arg(long, default_value_t = 1.1)]
        zipf: f64,
        /// Seed of the random numbers: the same seed gives the same file
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First timestamp (RFC 3339 or YYYY-MM-DD)
        #[arg(long, default_value = "2026-11-01")]
        start: String,
        /// Days the events span
        #[arg(long, default_value_t = 1.0)]
        days: f64,
        /// Share of lines that refund a recent sale
        #[arg(long, default_value_t = 0.01)]
        refund_rate: f64,
        /// Share of lines that repeat a recent line byte for byte (redeliveries)
        #[arg(long, default_value_t = 0.005)]
        duplicate_rate: f64,
        /// Share of events arriving 1-3 hours late
        #[arg(long, default_value_t = 0.0)]
        late_rate: f64,
        /// Output format
        #[arg(long, value_enum, default_value = "ndjson")]
        format: Format,
        /// Output file (default: standard output)
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

// Parsed once per process, like `Command`.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum BatchCommand {
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
struct StoreArgs {
    /// Where the logs, the archive and the state live [default: ./topk-data]
    #[arg(long, env = "TOPK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The store: a postgres:// URL, or a SQLite file path [default: <data_dir>/store.db]
    #[arg(long, env = "TOPK_STORE", hide_env_values = true)]
    store: Option<String>,
}

impl StoreArgs {
    /// Opens the existing store (a missing SQLite file is an error, not created).
    fn open(self, config: Option<&std::path::Path>) -> anyhow::Result<topk_store::SqlStore> {
        let settings = Settings { data_dir: self.data_dir, store: self.store, ..Settings::default() };
        let cfg = settings.over_file(config)?;
        let remote = cfg.store.starts_with("postgres://") || cfg.store.starts_with("postgresql://");
        anyhow::ensure!(
            remote || std::path::Path::new(&cfg.store).exists(),
            "no store at {}: nothing has run with this data directory yet (--data-dir, or --store)",
            cfg.store
        );
        cfg.open_store()
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOPK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_string() };
    topk_core::timestamp::parse_rfc3339(&full).map_err(anyhow::Error::msg)
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A closed stdout (`topk gen | head -1`) ends the command quietly.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) if e.is::<replay::Interrupted>() => {
            eprintln!("{e}");
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { demo, demo_rate, demo_history_days, settings } => {
            init_logging("info");
            let demo = demo.then_some(Demo { rate: demo_rate, history_days: demo_history_days });
            serve(settings.over_file(cli.config.as_deref())?, Roles::ALL, demo)
        }
        Command::Replay { files, server, format, settings } => {
            init_logging("warn");
            let mut cfg = settings.over_file(cli.config.as_deref())?;
            // A replay's input is history: no wall-clock watermark for idle partitions.
            cfg.aggregator.idle_timeout = None;
            match server {
                Some(url) => replay::replay_remote(&url, cfg.auth_token.as_deref(), &files).map(drop),
                None => replay::replay_local(cfg, &files, format).map(drop),
            }
        }
        Command::Batch { command: None, settings } => role(settings, cli.config.as_deref(), "batch"),
        Command::Batch { command: Some(command), .. } => {
            init_logging("warn");
            batch_command(command, cli.config.as_deref())
        }
        Command::Aggregator { settings } => role(settings, cli.config.as_deref(), "aggregator"),
        Command::Archive { settings } => role(settings, cli.config.as_deref(), "archive"),
        Command::Speed { settings } => role(settings, cli.config.as_deref(), "speed"),
        Command::Api { settings } => role(settings, cli.config.as_deref(), "api"),
        Command::Source { settings } => role(settings, cli.config.as_deref(), "source"),
        Command::Resume { server, auth_token } => resume(&server, auth_token.as_deref()),
        Command::Accuracy { limit, json, store } => {
            init_logging("warn");
            accuracy(store.open(cli.config.as_deref())?, limit, json)
        }
        Command::Gen {
            events,
            products,
            zipf,
            seed,
            start,
            days,
            refund_rate,
            duplicate_rate,
            late_rate,
            format,
            output,
        } => {
            let cfg = GenConfig {
                events,
                products,
                zipf,
                seed,
                start_ms: parse_time(&start)?,
                days,
                refund_rate,
                duplicate_rate,
                late_rate,
                format: match format {
                    Format::Ndjson => GenFormat::Ndjson,
                    Format::Csv => GenFormat::Csv,
                },
            };
            let started = Instant::now();
            let stats = match &output {
                Some(path) => {
                    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                    let stats = gen::generate(&cfg, &mut w)?;
                    w.flush()?;
                    stats
                }
                None => gen::generate(&cfg, &mut std::io::stdout().lock())?,
            };
            eprintln!(
                "generated {} lines ({} sales, {} refunds, {} duplicates) in {:.1} s",
                stats.lines,
                stats.sales,
                stats.refunds,
                stats.duplicates,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

fn batch_command(command: BatchCommand, config: Option<&std::path::Path>) -> anyhow::Result<()> {
    match command {
        BatchCommand::Run { granularity, from, to, force, settings } => {
            let cfg = settings.over_file(config)?;
            let (from, to) = (parse_time(&from)?, parse_time(&to)?);
            anyhow::ensure!(from < to, "--from must be before --to");
            let store = cfg.open_store()?;
            let mut batch = Batch::new(store, cfg.archive_root()?, cfg.batch.clone());
            let results = batch.run_range(granularity, from, to, force)?;
            let (mut failed, mut not_ready) = (0, 0);
            let mut out = std::io::stdout().lock();
            for (bucket, result) in &results {
                match result {
                    Ok(rows) => writeln!(out, "{bucket}: ok ({rows} rows)")?,
                    Err(topk_batch::BatchError::NotReady { reason, .. }) => {
                        not_ready += 1;
                        writeln!(out, "{bucket}: not ready: {reason}")?;
                    }
                    Err(e) => {
                        failed += 1;
                        writeln!(out, "{bucket}: FAILED: {e}")?;
                    }
                }
            }
            writeln!(out, "{} bucket(s) run, {failed} failed, {not_ready} not ready", results.len())?;
            anyhow::ensure!(failed + not_ready == 0, "{failed} bucket(s) failed and {not_ready} not ready");
            Ok(())
        }
        BatchCommand::Status { limit, store } => {
            let mut store = store.open(config)?;
            let pending = store.pending()?;
            let runs = store.runs(limit)?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<8} {:<12} {:<16} {:<8} {:>7} {:>9} {:>9}  error",
                "status", "task", "bucket", "gran.", "attempt", "rows", "ms"
            )?;
            for r in &runs {
                let ms = r.finished_ms.map_or("-".to_string(), |f| (f - r.started_ms).to_string());
                let rows = r.rows.map_or("-".to_string(), |n| n.to_string());
                writeln!(
                    out,
                    "{:<8} {:<12} {:<16} {:<8} {:>7} {:>9} {:>9}  {}",
                    r.status.as_str(),
                    r.task,
                    r.bucket.to_string(),
                    r.bucket.granularity.as_str(),
                    r.attempt,
                    rows,
                    ms,
                    r.error.as_deref().unwrap_or("")
                )?;
            }
            writeln!(out, "{} bucket(s) pending", pending.len())?;
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down: flushing and committing");
}

/// What `serve --demo` generates.
#[derive(Debug, Clone, Copy)]
struct Demo {
    /// Live events per second.
    rate: u32,
    /// Days of history first ingested into an empty events log.
    history_days: u32,
}

/// Live demo products: the same ids and names as `topk gen`'s.
const DEMO_PRODUCTS: u64 = 100_000;

/// Ingests `days` of generated history ending now, as a replay would, if the events log
/// is empty (a first start): the batch layer then rolls it up while live traffic flows.
fn demo_history(state: &http::AppState, days: u32) -> anyhow::Result<()> {
    let events = &state.pipeline.events;
    let empty = (0..events.partitions()).map(|p| events.end_offset(p)).collect::<Result<Vec<_>, _>>()?;
    if days == 0 || empty.iter().any(|&end| end > 0) {
        return Ok(());
    }
    let started = Instant::now();
    let now = pipeline::now_ms();
    let cfg = GenConfig {
        // About 1,200 sales an hour: enough for stable lists, fast to roll up.
        events: u64::from(days) * 29_000,
        products: DEMO_PRODUCTS,
        seed: now as u64,
        start_ms: now - i64::from(days) * 86_400_000,
        days: f64::from(days) - 1.0 / 24.0,
        ..GenConfig::default()
    };
    struct Ingest<'a> {
        ingestor: pipeline::Ingestor,
        buf: Vec<u8>,
        accepted: &'a mut u64,
    }
    impl Ingest<'_> {
        fn send(&mut self, all: bool) -> std::io::Result<()> {
            let cut = if all { self.buf.len() } else { memchr_last_newline(&self.buf) };
            if cut > 0 {
                let report =
                    self.ingestor.ingest_ndjson(&self.buf[..cut], 1, 0, None).map_err(std::io::Error::other)?;
                *self.accepted += report.accepted;
                self.buf.drain(..cut);
            }
            Ok(())
        }
    }
    impl std::io::Write for Ingest<'_> {
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
    let mut accepted = 0;
    let mut sink = Ingest { ingestor: state.pipeline.ingestor(), buf: Vec::new(), accepted: &mut accepted };
    gen::generate(&cfg, &mut sink)?;
    sink.flush()?;
    tracing::info!(days, events = accepted, ms = started.elapsed().as_millis() as u64, "demo history ingested");
    Ok(())
}

fn memchr_last_newline(b: &[u8]) -> usize {
    b.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1)
}

/// Demo traffic: `rate` live events per second through the normal ingest path.
fn demo_traffic(state: Arc<http::AppState>, demo: Demo, stop: Arc<AtomicBool>) {
    if let Err(e) = demo_history(&state, demo.history_days) {
        tracing::error!(error = %e, "demo history could not be ingested");
    }
    let rate = demo.rate;
    let seed = pipeline::now_ms() as u64;
    let mut traffic = LiveTraffic::new(DEMO_PRODUCTS, 1.1, seed);
    let mut ingestor = state.pipeline.ingestor();
    let mut buf = Vec::new();
    let per_tick = (rate / 10).max(1);
    while !stop.load(Ordering::SeqCst) {
        let tick = Instant::now();
        buf.clear();
        for _ in 0..per_tick {
            traffic.next_line(pipeline::now_ms(), &mut buf);
        }
        if let Err(e) = ingestor.ingest_ndjson(&buf, 1, 0, None) {
            tracing::error!(error = %e, "demo traffic could not append");
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
    }
}

/// One production role as its own process, over Kafka and (usually) PostgreSQL.
fn role(settings: Settings, config: Option<&std::path::Path>, name: &str) -> anyhow::Result<()> {
    init_logging("info");
    let cfg = settings.over_file(config)?;
    anyhow::ensure!(
        cfg.kafka.is_some(),
        "`topk {name}` runs one role of a multi-process deployment and needs kafka_brokers: \
         the embedded logs belong to a single process (run `topk serve` for that)"
    );
    let none = Roles::NONE;
    let roles = match name {
        "aggregator" => Roles { aggregators: true, ..none },
        "archive" => Roles { archive: true, ..none },
        "speed" => Roles { speed: true, ..none },
        "batch" => Roles { batch: true, ..none },
        "source" => {
            anyhow::ensure!(cfg.source.is_some(), "`topk source` needs source_topic");
            Roles { source: true, ..none }
        }
        _ => none,
    };
    serve(cfg, roles, None)
}

fn serve(cfg: config::Config, roles: Roles, demo: Option<Demo>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let listen = cfg.listen;
    let data_dir = cfg.data_dir.clone();
    let pipeline = Pipeline::start_roles(cfg, roles, true)?;
    let state = Arc::new(http::AppState::new(pipeline));
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = Vec::new();
    if let Some(demo) = demo {
        let (state, stop) = (state.clone(), stop.clone());
        background.push(std::thread::spawn(move || demo_traffic(state, demo, stop)));
    }
    {
        let (state, stop) = (state.clone(), stop.clone());
        background.push(std::thread::spawn(move || {
            let mut last = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(60) {
                    last = Instant::now();
                    for log in [&state.pipeline.events, &state.pipeline.flush] {
                        if let Err(e) = log.enforce_retention() {
                            tracing::warn!(error = %e, "retention failed");
                        }
                    }
                }
            }
        }));
    }
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let _ = writeln!(std::io::stdout(), "topk serving on http://{addr} (data in {})", data_dir.display());
        tracing::info!(%addr, demo = demo.is_some(), "listening");
        http::run(listener, state.clone(), shutdown_signal()).await?;
        // Ingests whose client went away may still be appending: let them finish.
        let all = http::MAX_CONCURRENT_INGESTS as u32;
        let _drained = state.ingests.acquire_many(all).await?;
        anyhow::Ok(())
    })?;
    stop.store(true, Ordering::SeqCst);
    for h in background {
        let _ = h.join();
    }
    let state = Arc::try_unwrap(state).map_err(|_| anyhow::anyhow!("server state still in use at shutdown"))?;
    state.pipeline.shutdown()
}

fn resume(server: &str, token: Option<&str>) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/sources/kafka/resume", server.trim_end_matches('/'));
    let mut req = reqwest::blocking::Client::new().post(&url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let reply = req.send().with_context(|| format!("POST {url}"))?;
    let status = reply.status();
    let body: serde_json::Value = reply.json().unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url}: {status}: {}", body["error"].as_str().unwrap_or(""));
    let said = if body["resumed"] == true { "source resumed" } else { "the source was not paused" };
    writeln!(std::io::stdout(), "{said}")?;
    Ok(())
}

fn accuracy(mut store: topk_store::SqlStore, limit: usize, json: bool) -> anyhow::Result<()> {
    let records = store.accuracy(limit)?;
    let mut out = std::io::stdout().lock();
    if json {
        for r in &records {
            let a = &r.accuracy;
            let line = serde_json::json!({
                "granularity": r.bucket.granularity.as_str(),
                "bucket": r.bucket.to_string(),
                "precision_at_10": a.precision_at_10,
                "precision_at_100": a.precision_at_100,
                "max_relative_error": a.max_relative_error,
                "mean_relative_error": a.mean_relative_error,
                "bound_coverage": a.bound_coverage,
                "scored_at": topk_core::timestamp::format_rfc3339(r.scored_ms),
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    if records.is_empty() {
        writeln!(out, "no bucket scored yet: the batch layer scores a bucket when it replaces its speed rows")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<24} {:>6} {:>7} {:>12} {:>12} {:>9}",
        "bucket", "p@10", "p@100", "max rel err", "mean rel err", "in bound"
    )?;
    for r in &records {
        let a = &r.accuracy;
        writeln!(
            out,
            "{:<24} {:>6.2} {:>7.2} {:>12.5} {:>12.5} {:>8.1}%",
            format!("{} {}", r.bucket.granularity.as_str(), r.bucket),
            a.precision_at_10,
            a.precision_at_100,
            a.max_relative_error,
            a.mean_relative_error,
            a.bound_coverage * 100.0
        )?;
    }
    let n = records.len() as f64;
    let mean = |f: fn(&topk_store::AccuracyRecord) -> f64| records.iter().map(f).sum::<f64>() / n;
    writeln!(
        out,
        "{} buckets: mean p@10 {:.3}, mean p@100 {:.3}, lowest bound coverage {:.1}%",
        records.len(),
        mean(|r| r.accuracy.precision_at_10),
        mean(|r| r.accuracy.precision_at_100),
        records.iter().map(|r| r.accuracy.bound_coverage).fold(1.0, f64::min) * 100.0
    )?;
    Ok(())
}
