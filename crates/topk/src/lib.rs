//! `topk`: top-K products by sales, one binary for every role.
//!
//! # Layout
//! - [`config`]: flags > `TOPK_*` env > TOML file > defaults.
//! - [`pipeline`]: the roles of one process on threads (all of them in `topk serve`, one
//!   in each production role process), and the ingestor.
//! - [`source`]: the plain Kafka source (another system's topic of JSON events).
//! - [`http`]: the HTTP API of `topk serve`; [`query`] its merge rule; [`dashboard`] the
//!   page at `/`; [`metrics`] the Prometheus counters.
//! - [`replay`]: `topk replay FILE...`, local or against a server.
//! - [`gen`]: deterministic synthetic events, and the live demo traffic.
//!
//! The roles themselves live in their own crates: `topk-log` (embedded or Kafka),
//! `topk-aggregator`, `topk-archive`, `topk-speed`, `topk-batch`, `topk-store` (SQLite or
//! PostgreSQL); pure logic in `topk-core`.

pub mod config;
pub mod dashboard;
pub mod gen;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod replay;
pub mod source;
