//! Supervision: each role runs on a thread of its own; a server's role that fails is
//! restarted from its durable state (as after a crash), with a growing pause, and the
//! process reports itself unhealthy until it has run a while without an error.

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use topk_core::Shutdown;

/// How long a restarted role must run without an error before the process is healthy.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// The first and the longest wait between two restarts of a failing role.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The roles' errors. A replay stops at the first (`retry` off); a server's roles restart
/// after an error and the process is unhealthy until [`HEALTHY_AFTER`] passes without one.
#[derive(Default)]
pub struct Failures {
    retry: bool,
    last: Mutex<Option<(String, Instant)>>,
}

impl Failures {
    pub fn new(retry: bool) -> Self {
        Failures { retry, last: Mutex::default() }
    }

    pub fn record(&self, message: String) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if self.retry || last.is_none() {
            *last = Some((message, Instant::now()));
        }
    }

    /// The error that makes the process unhealthy now, if any.
    pub fn current(&self) -> Option<String> {
        self.since(Instant::now().checked_sub(HEALTHY_AFTER))
    }

    /// The last failure if it happened at or after `start` (`None`: ever), or without
    /// retries at all: then a failed role stays failed.
    pub fn since(&self, start: Option<Instant>) -> Option<String> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((m, at)) if !self.retry || start.is_none_or(|s| *at >= s) => Some(m.clone()),
            _ => None,
        }
    }
}

/// Runs a role on a thread of its own until it returns, or until `stop`. `run` opens the
/// role's state and runs it; with retries on, an error is logged and the role started
/// again (after a growing pause, which `stop` cuts short) until the process stops.
pub fn spawn_role(
    name: String,
    failures: &std::sync::Arc<Failures>,
    stop: &Shutdown,
    mut run: impl FnMut() -> anyhow::Result<()> + Send + 'static,
) -> JoinHandle<()> {
    let (failures, stop) = (failures.clone(), stop.clone());
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let started = Instant::now();
                let Err(e) = run() else { return };
                let error = format!("{e:#}");
                failures.record(format!("{name}: {error}"));
                if !failures.retry || stop.is_triggered() {
                    tracing::error!(role = %name, %error, "role failed");
                    return;
                }
                if started.elapsed() > MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                }
                tracing::error!(role = %name, %error, retry_in_ms = backoff.as_millis() as u64, "role failed; restarting it");
                if stop.wait(backoff) {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tracing::info!(role = %name, "restarting role");
            }
        })
        .expect("spawning a role thread")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_failing_role_is_restarted_until_it_runs_and_a_stop_cuts_the_pause_short() {
        let failures = Arc::new(Failures::new(true));
        let stop = Shutdown::default();
        let attempts = Arc::new(AtomicU32::new(0));
        let a = attempts.clone();
        let h = spawn_role("flaky".into(), &failures, &stop, move || match a.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => anyhow::bail!("not yet"),
            _ => Ok(()),
        });
        h.join().unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 3, "two failures, then it ran");
        assert_eq!(failures.current().as_deref(), Some("flaky: not yet"), "unhealthy for a while after");
        // A role that keeps failing: the stop wakes its pause and it ends at once.
        let h = spawn_role("broken".into(), &failures, &stop, || anyhow::bail!("always"));
        std::thread::sleep(Duration::from_millis(100));
        let asked = Instant::now();
        stop.trigger();
        h.join().unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(350),
            "stopped after {:?}, not after its pause",
            asked.elapsed()
        );
        // Without retries, the first failure stays.
        let once = Arc::new(Failures::new(false));
        spawn_role("replay".into(), &once, &Shutdown::default(), || anyhow::bail!("first")).join().unwrap();
        once.record("second".into());
        assert_eq!(once.since(Some(Instant::now())).as_deref(), Some("replay: first"));
    }
}
