//! The serving layer (DESIGN §7): the HTTP API — the top K of any period, merging the
//! batch layer's exact rows with the speed layer's estimates — ingest over HTTP, health,
//! metrics and the dashboard.
//!
//! # Layout
//! - [`api`]: one module per area (`top`, `products`, `buckets`, `events`, `sources`,
//!   `health`, `metrics`), the router and what they share (errors, parameters, the
//!   bearer check); the OpenAPI document is generated from the handlers.
//! - [`query`]: the merge rule and the threshold algorithm, pure logic over the store.
//! - `state`: what the handlers share ([`AppState`]) and what they need of the process
//!   ([`Process`]); `cache`: the response cache; `stores`: the pool of read connections.
//! - [`telemetry`]: every metric topk exports, declared in one place.
//! - [`dashboard`]: the page at `/`, compiled in (`assets/`).
//!
//! The API knows the process it runs in only through [`Process`]: the events log to
//! ingest into, health, and the positions the metrics report. The roles and their
//! wiring are the binary's.

pub mod api;
mod cache;
pub mod dashboard;
pub mod query;
mod state;
mod stores;
pub mod telemetry;

pub use api::{router, run};
pub use state::{AppState, Process, ServeConfig, MAX_CONCURRENT_INGESTS};
