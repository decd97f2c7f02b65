//! When a worker that exited is restarted, when it counts as failed, and when a slow start is
//! worth a word: the same for every engine, so `cortex get` means the same whatever runs the
//! workers.

use std::time::Duration;

/// Exits before readiness in a row after which a worker is reported as failed.
pub const CRASH_LOOP_AFTER: u32 = 2;
const BACKOFF_START: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A worker that stayed ready this long and then exited is not crash-looping: its next start
/// is immediate-ish and does not count towards `failed`.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// After this long without an answer to `/healthz`, `cortex get` says so (the worker keeps
/// its chance: installing requirements or loading a model can take longer). The server's
/// `CORTEX_READY_WARN_SECS` changes it.
const READY_WARN_AFTER: Duration = Duration::from_secs(60);

pub fn ready_warn_after() -> Duration {
    std::env::var("CORTEX_READY_WARN_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(READY_WARN_AFTER, Duration::from_secs)
}

/// How long to wait before the next start after `failures_in_a_row` failed runs.
pub fn backoff(failures_in_a_row: u32) -> Duration {
    let factor = 1u32 << failures_in_a_row.min(10);
    (BACKOFF_START * factor).min(BACKOFF_MAX)
}

/// The failures in a row after a run that ended having been ready for `ready_for`, and
/// having finished work the server gave it (`worked`: a batch answered) or not. A run that
/// did work is not crash-looping, however soon it ended: a batch worker killed between
/// batches, or by an operator, is restarted rather than failing its job.
pub fn after_exit(failures_in_a_row: u32, ready_for: Option<Duration>, worked: bool) -> u32 {
    if worked || ready_for.is_some_and(|d| d >= HEALTHY_RUN) {
        0
    } else {
        failures_in_a_row + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) < backoff(2));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[test]
    fn a_long_healthy_run_resets_the_count() {
        assert_eq!(after_exit(3, Some(HEALTHY_RUN), false), 0);
        assert_eq!(after_exit(3, Some(Duration::from_secs(1)), false), 4);
        assert_eq!(after_exit(0, None, false), 1);
    }

    #[test]
    fn a_run_that_did_work_resets_the_count_however_short() {
        assert_eq!(after_exit(1, Some(Duration::from_secs(1)), true), 0);
    }
}
