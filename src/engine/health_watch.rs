//! A ready replica of a RealtimeAPI keeps being asked `GET /healthz`. One that stops
//! answering (stopped by a signal, wedged in a deadlock, its event loop blocked) is taken out
//! of the gateway's rotation after a few missed checks, saying why, so that predictions go to
//! the replicas that answer instead of waiting for their timeout; it is back in rotation as
//! soon as it answers again, and restarted when it has not answered for a long while.
//!
//! The python runtime answers `/healthz` while it answers predictions; a command predictor
//! that does not (one request at a time) is out of rotation while it answers a long one, which
//! changes nothing for that request, and is restarted only past [`restart_after`].
//!
//! The same for every engine: each says through [`Rotation`] what leaving and rejoining the
//! rotation does to its replica's state, and restarts the replica when the watch returns.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often a ready replica is asked, and how long an answer may take.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Missed checks in a row after which the replica is out of rotation.
const MISSED_BEFORE_UNREADY: u32 = 3;
/// How long a replica may go without answering before it is restarted (longer than the
/// default `networking.timeout`, so a long prediction on a replica that answers one request
/// at a time is not cut short).
const RESTART_AFTER: Duration = Duration::from_secs(600);

/// The check period (`CORTEX_HEALTH_CHECK_SECS` changes it).
fn check_every() -> Duration {
    secs_from_env("CORTEX_HEALTH_CHECK_SECS").unwrap_or(CHECK_EVERY)
}

/// How long without an answer before a restart (`CORTEX_UNRESPONSIVE_RESTART_SECS`).
fn restart_after() -> Duration {
    secs_from_env("CORTEX_UNRESPONSIVE_RESTART_SECS").unwrap_or(RESTART_AFTER)
}

fn secs_from_env(var: &str) -> Option<Duration> {
    let secs: u64 = std::env::var(var).ok()?.parse().ok()?;
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// What the watch does to a replica: out of the gateway's rotation (phase `initializing`,
/// saying why), or back in (`ready`); and whether the run it watches is still the current one.
pub(crate) trait Rotation {
    fn leave(&self, why: String);
    fn rejoin(&self);
    /// False once the run it watches ended or was replaced: the watch then ends.
    fn current(&self) -> bool {
        true
    }
}

/// Asks the replica at `addr` for `/healthz` until it has not answered for the restart delay:
/// returns how long it went without an answer (the caller restarts it), or `None` once the
/// run is no longer current. On the way, takes it out of rotation after missed checks and
/// puts it back when it answers.
pub(crate) async fn unresponsive_for(
    http: &reqwest::Client,
    addr: SocketAddr,
    api: &str,
    rotation: &impl Rotation,
) -> Option<Duration> {
    let (every, restart) = (check_every(), restart_after());
    let url = format!("http://{addr}/healthz");
    let mut last_answer = Instant::now();
    let mut missed = 0u32;
    loop {
        tokio::time::sleep(every).await;
        if !rotation.current() {
            return None;
        }
        let answered = http
            .get(&url)
            .timeout(every)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            last_answer = Instant::now();
            if missed >= MISSED_BEFORE_UNREADY {
                rotation.rejoin();
            }
            missed = 0;
            continue;
        }
        missed += 1;
        let silent = last_answer.elapsed();
        if silent >= restart {
            return Some(silent);
        }
        if missed == MISSED_BEFORE_UNREADY {
            rotation.leave(format!(
                "the replica stopped answering GET /healthz on {addr} ({missed} checks in a row, {}s): it gets no new predictions until it answers again, and is restarted if it has not answered after {}s (see `cortex logs {api}`)",
                silent.as_secs(),
                restart.as_secs()
            ));
        }
    }
}

/// The line and error of a replica restarted for its silence.
pub(crate) fn restarted_text(noun: &str, silent: Duration) -> String {
    format!(
        "the {noun} did not answer GET /healthz for {}s (stopped by a signal, or wedged): it was stopped and starts again",
        silent.as_secs()
    )
}
