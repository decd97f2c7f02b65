//! How long the client waits: `CORTEX_CLIENT_TIMEOUT`, what a wait was for, and the upload's
//! stall watchdog.
//!
//! One duration bounds every wait that should not last: connecting (at most 5 s), the answer's
//! head, each read of a body that stalls, and an upload that makes no progress. A body that
//! keeps coming, or an upload that keeps going, is never cut for its total length. A followed
//! log stream (`cortex logs -f`) has no answer timeout on its body: it may be quiet for long;
//! a server that vanishes under it is noticed by TCP keep-alive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The variable that sets the client's timeout (seconds, or a duration such as `1m30s`).
pub const VAR: &str = "CORTEX_CLIENT_TIMEOUT";

/// The timeout when `CORTEX_CLIENT_TIMEOUT` is not set.
pub const DEFAULT: Duration = Duration::from_secs(60);

/// The longest a connection may take to open, whatever the timeout.
pub const CONNECT: Duration = Duration::from_secs(5);

/// What the client was waiting for when it gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The TCP (and TLS) connection to open.
    Connecting,
    /// The server's answer (its head, or the next bytes of its body).
    Answer,
    /// The server to take more of an upload (or to answer once it has it all).
    Upload,
}

/// Parses a timeout: whole or fractional seconds (`30`, `2.5`) or a humantime duration
/// (`90s`, `1m30s`, `500ms`); zero is refused, and so is more than 100 years (a clock plus
/// it would overflow).
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => {
            Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
        }
        Ok(_) => None,
        Err(_) => humantime::parse_duration(text).ok(),
    };
    let most = Duration::from_secs(crate::spec::Duration::MAX_SECONDS);
    match parsed.filter(|d| !d.is_zero()) {
        Some(d) if d <= most => Ok(d),
        Some(_) => Err(format!(
            "{VAR}: {text:?} is too long; at most {}h (100 years)",
            most.as_secs() / 3600
        )),
        None => Err(format!(
            "{VAR}: expected a number of seconds (30) or a duration (1m30s, 500ms), got {text:?}"
        )),
    }
}

/// The timeout `CORTEX_CLIENT_TIMEOUT` asks for: `Ok(None)` when unset or empty.
pub fn from_env() -> Result<Option<Duration>, String> {
    match std::env::var(VAR) {
        Ok(v) if !v.trim().is_empty() => parse(&v).map(Some),
        _ => Ok(None),
    }
}

/// When an upload last made progress (its last chunk taken by the connection), on tokio's
/// clock.
#[derive(Debug, Clone)]
pub struct Progress {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records progress now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last progress.
    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Returns once there has been no progress for `limit`.
    pub async fn stalled(&self, limit: Duration) {
        loop {
            let idle = self.idle();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn seconds_and_durations_are_accepted() {
        assert_eq!(super::parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(super::parse(" 2.5 "), Ok(Duration::from_millis(2500)));
        assert_eq!(super::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(super::parse("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn nonsense_and_zero_are_refused_with_the_variable_named() {
        for bad in ["0", "-1", "soon", "", "0s", "inf"] {
            let e = super::parse(bad).unwrap_err();
            assert!(e.starts_with("CORTEX_CLIENT_TIMEOUT: expected"), "{e}");
        }
    }

    #[test]
    fn more_than_a_clock_can_count_is_refused_not_a_panic() {
        for long in [
            "99999999999999999999",
            "1e300",
            "2562047788015216h",
            "876001h",
        ] {
            let e = super::parse(long).unwrap_err();
            assert!(e.contains("is too long; at most 876000h"), "{e}");
        }
        assert_eq!(
            super::parse("876000h"),
            Ok(Duration::from_secs(876_000 * 3600))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_is_time_without_progress_not_total_time() {
        let p = super::Progress::new();
        let watched = p.clone();
        let start = tokio::time::Instant::now();
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(800)).await;
                watched.touch();
            }
        });
        p.stalled(Duration::from_secs(1)).await;
        feeder.await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
    }
}
