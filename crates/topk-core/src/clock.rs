//! The wall clock, read in one place: every role asks here what time it is.

/// Milliseconds since the Unix epoch, UTC (0 for a clock set before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
