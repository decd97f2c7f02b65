//! A ready replica of a RealtimeAPI keeps being asked `GET /healthz`. One that stops
//! answering (stopped by a signal, wedged in a deadlock, its event loop blocked) is taken out
//! of the gateway's rotation after a few missed checks, saying why, so that predictions go to
//! the replicas that answer instead of waiting for their timeout; it is back in rotation as
//! soon as it answers again, and restarted when it has not answered for a long while.
//!
//! The python runtime answers `/healthz` while it answers predictions; a command predictor
//! that does not (one request at a time) is out of rotation while it answers a long one, which
//! changes nothing for that request, and is restarted only past [`restart_after`].

use std::time::{Duration, Instant};

use crate::engine::ReplicaPhase;

use super::handle::ReplicaShared;

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

/// Asks the replica on `port` for `/healthz` until it has not answered for the restart delay:
/// returns how long it went without an answer (the caller restarts it). On the way, takes it
/// out of rotation in `shared` after missed checks and puts it back when it answers.
pub(super) async fn unresponsive_for(
    http: &reqwest::Client,
    port: u16,
    api: &str,
    shared: &ReplicaShared,
) -> Duration {
    let (every, restart) = (check_every(), restart_after());
    let url = format!("http://127.0.0.1:{port}/healthz");
    let mut last_answer = Instant::now();
    let mut missed = 0u32;
    loop {
        tokio::time::sleep(every).await;
        let answered = http
            .get(&url)
            .timeout(every)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            last_answer = Instant::now();
            if missed >= MISSED_BEFORE_UNREADY {
                shared.update(|s| {
                    s.phase = ReplicaPhase::Ready;
                    s.last_error = None;
                });
            }
            missed = 0;
            continue;
        }
        missed += 1;
        let silent = last_answer.elapsed();
        if silent >= restart {
            return silent;
        }
        if missed == MISSED_BEFORE_UNREADY {
            let why = format!(
                "the replica stopped answering GET /healthz on 127.0.0.1:{port} ({missed} checks in a row, {}s): it gets no new predictions until it answers again, and is restarted if it has not answered after {}s (see `cortex logs {api}`)",
                silent.as_secs(),
                restart.as_secs()
            );
            shared.update(|s| {
                s.phase = ReplicaPhase::Initializing;
                s.last_error = Some(why);
            });
        }
    }
}
