//! The `topk` command line; see the library crate docs for the layout.

mod cli;
mod commands;
mod demo;

use std::process::ExitCode;

use cli::{Cli, Command};
use commands::{init_logging, parse_time};
use topk::process::Role;
use topk::replay;

fn main() -> ExitCode {
    topk::process::tune_malloc();
    match run(cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`topk gen | head -1`) ends the command quietly.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) if replay::is_interrupted(&e) => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve { demo, demo_rate, demo_history_days, demo_products, demo_speedup, settings } => {
            init_logging("info");
            let demo = demo.then_some(demo::Demo {
                rate: demo_rate,
                history_days: demo_history_days,
                products: demo_products,
                speedup: demo_speedup,
            });
            commands::serve(settings.over_file(config)?, &Role::ALL, demo)
        }
        Command::Replay { files, server, format, settings } => {
            init_logging("warn");
            let mut cfg = settings.over_file(config)?;
            // A replay's input is history: no wall-clock watermark for idle partitions.
            cfg.aggregator.idle_timeout = None;
            match server {
                Some(url) => replay::replay_remote(&url, cfg.auth_token.as_deref(), &files).map(drop),
                None => replay::replay_local(cfg, &files, format).map(drop),
            }
        }
        Command::Batch { command: None, settings } => commands::role(settings, config, Some(Role::Batch)),
        Command::Batch { command: Some(command), .. } => {
            init_logging("warn");
            commands::batch(command, config)
        }
        Command::Aggregator { settings } => commands::role(settings, config, Some(Role::Aggregator)),
        Command::Archive { settings } => commands::role(settings, config, Some(Role::Archive)),
        Command::Speed { settings } => commands::role(settings, config, Some(Role::Speed)),
        Command::Api { settings } => commands::role(settings, config, None),
        Command::Source { settings } => commands::role(settings, config, Some(Role::Source)),
        Command::Resume { server, auth_token } => commands::resume(&server, auth_token.as_deref()),
        Command::Accuracy { limit, json, projections, granularity, store } => {
            init_logging("warn");
            if projections {
                commands::projection_accuracy(store.open(config)?, granularity, limit, json)
            } else {
                commands::accuracy(store.open(config)?, limit, json)
            }
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
            seasonality,
            format,
            output,
        } => {
            let cfg = topk_gen::GenConfig {
                events,
                products,
                zipf,
                seed,
                start_ms: parse_time(&start)?,
                days,
                refund_rate,
                duplicate_rate,
                late_rate,
                seasonality,
                format: commands::gen_format(format),
            };
            commands::generate(cfg, output.as_deref())
        }
    }
}
