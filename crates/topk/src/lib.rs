//! `topk`: top-K products by sales, one binary for every role.
//!
//! This crate is the binary's own part: the command line, the configuration, the
//! wiring of a process's roles, and their supervision. Everything else lives in the
//! component crates, one per box of the architecture: `topk-core` (pure logic and the
//! contracts between roles), `topk-log` (embedded or Kafka), `topk-ingest`,
//! `topk-aggregator`, `topk-archive`, `topk-speed`, `topk-batch`, `topk-store` (SQLite
//! or PostgreSQL), `topk-serve` (the HTTP API and the dashboard), and `topk-gen`
//! (generated data).
//!
//! # Layout
//! - [`config`]: flags > `TOPK_*` env > TOML file > the components' defaults.
//! - [`process`]: the roles of one process ([`process::Role`]) on threads, over the logs,
//!   the store and the archive; what the API sees of the process.
//! - [`supervise`]: a role that fails restarts from its durable state.
//! - [`replay`]: `topk replay FILE...`, local or against a server.
//! - `main.rs`, `cli.rs`, `commands.rs`, `demo.rs`: the commands.

pub mod config;
pub mod process;
pub mod replay;
pub mod supervise;
