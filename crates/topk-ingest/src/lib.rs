//! Ingest: input from HTTP bodies, files and another system's Kafka topic, parsed and
//! validated into the events log — exactly once, with every bad line reported.
//!
//! # Layout
//! - [`Ingestor`] (`ingestor.rs`): lines → validated events → one batch per events-log
//!   partition, appended durably; NDJSON bodies are parsed on several threads.
//! - [`IngestReport`] (`report.rs`): what one call accepted and rejected, line by line.
//! - [`SourceResume`] (`resume.rs`): how far a source (a file, a topic partition) is in the
//!   log, so a rerun skips exactly what an earlier run appended.
//! - [`files`]: replaying NDJSON and CSV files, resumable, a line too long rejected alone.
//! - [`kafka_source`]: the source role, another system's topic of JSON sale events.
//! - [`IngestStats`] (`stats.rs`): counters for the metrics.
//! - [`IngestWriter`] (`writer.rs`): an `io::Write` that ingests the NDJSON written to it.
//!
//! Product names and categories travel inside the encoded events: the catalog is the
//! speed role's to write (see `topk-speed`), as durably as the counts.

pub mod files;
mod ingestor;
pub mod kafka_source;
mod report;
mod resume;
mod stats;
mod writer;

pub use ingestor::Ingestor;
pub use report::{IngestReport, MAX_LISTED_REJECTIONS};
pub use resume::SourceResume;
pub use stats::IngestStats;
pub use writer::IngestWriter;
