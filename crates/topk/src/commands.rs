//! The commands beside `replay`: serving (every role, or one production role), the
//! batch layer by hand, accuracy, resume, and generated data.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use topk::config::{Config, Settings};
use topk::process::{Pipeline, Role};
use topk_batch::Batch;
use topk_core::Shutdown;
use topk_gen::{GenConfig, GenFormat};
use topk_ingest::files::Format;
use topk_store::ServingStore;

use crate::cli::BatchCommand;
use crate::demo::{self, Demo};

pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOPK_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only on a terminal: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

/// A date (`YYYY-MM-DD`) or an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_string() };
    topk_core::timestamp::parse_rfc3339(&full).map_err(anyhow::Error::msg)
}

/// One production role as its own process, over Kafka and (usually) PostgreSQL; `None`
/// is `topk api` (the HTTP API alone).
pub fn role(settings: Settings, config: Option<&Path>, role: Option<Role>) -> anyhow::Result<()> {
    init_logging("info");
    let cfg = settings.over_file(config)?;
    let name = role.map_or("api", Role::as_str);
    anyhow::ensure!(
        cfg.kafka.is_some(),
        "`topk {name}` runs one role of a multi-process deployment and needs kafka_brokers: \
         the embedded logs belong to a single process (run `topk serve` for that)"
    );
    if role == Some(Role::Source) {
        anyhow::ensure!(cfg.source.is_some(), "`topk source` needs source_topic");
    }
    serve(cfg, role.as_slice(), None)
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

/// Runs `roles` and the HTTP API (with demo traffic, if asked) until SIGINT or SIGTERM.
pub fn serve(cfg: Config, roles: &[Role], demo: Option<Demo>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (listen, data_dir, serve_cfg) = (cfg.listen, cfg.data_dir.clone(), cfg.serve.clone());
    let pipeline = Arc::new(Pipeline::start_roles(cfg, roles, true)?);
    let state = Arc::new(topk_serve::AppState::new(pipeline.clone(), serve_cfg));
    let stop = Shutdown::default();
    let mut background = Vec::new();
    if let Some(demo) = demo {
        let (pipeline, stop) = (pipeline.clone(), stop.clone());
        background.push(std::thread::spawn(move || demo::run(pipeline, demo, stop)));
    }
    {
        // Log retention, once a minute.
        let (pipeline, stop) = (pipeline.clone(), stop.clone());
        background.push(std::thread::spawn(move || {
            while !stop.wait(Duration::from_secs(60)) {
                for log in [&pipeline.events, &pipeline.flush] {
                    if let Err(e) = log.enforce_retention() {
                        tracing::warn!(error = %e, "retention failed");
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
        topk_serve::run(listener, state.clone(), shutdown_signal()).await?;
        // Ingests whose client went away may still be appending: let them finish.
        state.drained().await;
        anyhow::Ok(())
    })?;
    stop.trigger();
    for h in background {
        let _ = h.join();
    }
    drop(state);
    pipeline.shutdown()
}

/// `topk gen`: deterministic synthetic events to a file or standard output.
#[allow(clippy::too_many_arguments)]
pub fn generate(cfg: GenConfig, output: Option<&Path>) -> anyhow::Result<()> {
    let started = Instant::now();
    let stats = match output {
        Some(path) => {
            let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let stats = topk_gen::generate(&cfg, &mut w)?;
            w.flush()?;
            stats
        }
        None => topk_gen::generate(&cfg, &mut std::io::stdout().lock())?,
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

/// The generator's output format for a file format.
pub fn gen_format(f: Format) -> GenFormat {
    match f {
        Format::Ndjson => GenFormat::Ndjson,
        Format::Csv => GenFormat::Csv,
    }
}

pub fn batch(command: BatchCommand, config: Option<&Path>) -> anyhow::Result<()> {
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

pub fn resume(server: &str, token: Option<&str>) -> anyhow::Result<()> {
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

pub fn accuracy(mut store: topk_store::SqlStore, limit: usize, json: bool) -> anyhow::Result<()> {
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

/// `topk accuracy --projections`: the newest `limit` closed, exact buckets of
/// `granularity`, each projected at 25, 50 and 75 % of its time and scored (see
/// `topk_serve::query::backtest`), then a summary per point over the buckets with at
/// least a week of history.
pub fn projection_accuracy(
    mut store: topk_store::SqlStore,
    granularity: topk_core::time::Granularity,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    use topk_serve::query::{backtest, median, Backtest};
    const POINTS: [f64; 3] = [0.25, 0.5, 0.75];
    const K: usize = 10;
    let now = topk_core::clock::now_ms();
    let mut buckets: Vec<_> =
        store.exact_buckets(granularity, 0, now)?.into_iter().map(|e| e.bucket).filter(|b| b.end_ms() <= now).collect();
    buckets.sort_by_key(|b| std::cmp::Reverse(b.start_ms));
    buckets.truncate(limit);
    let mut scored: Vec<Backtest> = Vec::new();
    for &b in &buckets {
        for at in POINTS {
            match backtest(&mut store, b, at, K) {
                Ok(Some(t)) => scored.push(t),
                Ok(None) => {}
                Err(e) => anyhow::bail!("{} {b}: {e}", granularity.as_str()),
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        for t in &scored {
            let line = serde_json::json!({
                "granularity": granularity.as_str(),
                "bucket": t.bucket.to_string(),
                "at": t.at,
                "history_weeks": t.history_weeks,
                "top10_held": t.top_overlap,
                "median_ape": t.median_ape,
                "coverage": t.coverage,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    if scored.is_empty() {
        writeln!(out, "no closed, exact {} to score yet", granularity.as_str())?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:>5} {:>8} {:>10} {:>11} {:>9}",
        "bucket", "at", "history", "top10 held", "median APE", "in 80 %"
    )?;
    for t in &scored {
        writeln!(
            out,
            "{:<20} {:>4.0}% {:>7}w {:>10.1} {:>10.1}% {:>8.0}%",
            format!("{} {}", granularity.as_str(), t.bucket),
            t.at * 100.0,
            t.history_weeks,
            t.top_overlap * K as f64,
            t.median_ape * 100.0,
            t.coverage * 100.0
        )?;
    }
    writeln!(out, "with at least a week of history:")?;
    for at in POINTS {
        let of: Vec<&Backtest> = scored.iter().filter(|t| t.history_weeks >= 1 && (t.at - at).abs() < 0.05).collect();
        if of.is_empty() {
            continue;
        }
        let mut apes: Vec<f64> = of.iter().flat_map(|t| t.errors.iter().map(|e| e.0)).collect();
        apes.sort_by(f64::total_cmp);
        let rows = of.iter().map(|t| t.errors.len()).sum::<usize>().max(1);
        let covered = of.iter().flat_map(|t| &t.errors).filter(|e| e.1).count();
        writeln!(
            out,
            "  at {:>2.0} %: {} buckets, top 10 held {:.1} of 10 on average (least {:.0}), median APE {:.1} %, \
             80 % interval held {:.1} % of {} rows",
            at * 100.0,
            of.len(),
            of.iter().map(|t| t.top_overlap * K as f64).sum::<f64>() / of.len() as f64,
            of.iter().map(|t| t.top_overlap * K as f64).fold(f64::INFINITY, f64::min),
            median(&apes) * 100.0,
            100.0 * covered as f64 / rows as f64,
            rows
        )?;
    }
    Ok(())
}
