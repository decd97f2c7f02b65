//! A Ray replica's `/healthz`: polled until its program answers (it is then `ready`), then,
//! for a RealtimeAPI's replica, asked on as the local engine does (`engine/health_watch.rs`):
//! out of rotation after missed checks, back when it answers, and a new generation asked for
//! after a long silence (its actor stops the wedged program first).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::effects::append_line;
use super::handle::RayReplica;
use crate::engine::health_watch::{restarted_text, unresponsive_for, Rotation};
use crate::engine::restarts::{backoff, CRASH_LOOP_AFTER};
use crate::engine::ReplicaPhase;

/// Polls `GET /healthz` on `addr` until it answers 200 (the replica is then ready), or this
/// generation is no longer the one that runs; then watches a RealtimeAPI's replica.
pub(super) async fn check(
    http: reqwest::Client,
    replica: Arc<RayReplica>,
    generation: u64,
    addr: SocketAddr,
) {
    if !until_ready(&http, &replica, generation, addr).await || !replica.watched {
        return;
    }
    let run = Run {
        replica: &replica,
        generation,
    };
    if let Some(silent) = unresponsive_for(&http, addr, &replica.api, &run).await {
        run.restart(silent);
    }
}

/// Polls until the program answers (true) or the generation is no longer current (false).
async fn until_ready(
    http: &reqwest::Client,
    replica: &RayReplica,
    generation: u64,
    addr: SocketAddr,
) -> bool {
    let url = format!("http://{addr}/healthz");
    let started = Instant::now();
    let mut delay = Duration::from_millis(5);
    let warn_after = crate::engine::restarts::ready_warn_after();
    let mut warned = false;
    loop {
        if !warned && started.elapsed() >= warn_after {
            warned = true;
            let why = format!(
                "the replica has not answered GET /healthz on {addr} for {}s; it is still starting, or it does not serve on $CORTEX_PORT (see `cortex logs {}`)",
                warn_after.as_secs(),
                replica.api
            );
            replica.update(|t| {
                if t.desired.generation == generation && t.snapshot.phase != ReplicaPhase::Ready {
                    t.snapshot.last_error = Some(why);
                }
            });
        }
        if !replica.read(|t| t.runs(generation)) {
            return false;
        }
        let answered = matches!(http.get(&url).send().await, Ok(r) if r.status().is_success());
        if answered {
            return replica.update(|t| {
                let runs = t.runs(generation);
                if runs {
                    t.snapshot.phase = ReplicaPhase::Ready;
                    t.snapshot.last_error = None;
                    t.snapshot.out_of_memory = false;
                    t.ready_since = Some(Instant::now());
                }
                runs
            });
        }
        tokio::time::sleep(delay).await;
        if started.elapsed() >= Duration::from_secs(2) {
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }
}

/// One generation of a replica, as the health watch sees it.
struct Run<'a> {
    replica: &'a Arc<RayReplica>,
    generation: u64,
}

impl Rotation for Run<'_> {
    fn leave(&self, why: String) {
        self.replica.update(|t| {
            if t.runs(self.generation) && t.snapshot.phase == ReplicaPhase::Ready {
                t.snapshot.phase = ReplicaPhase::Initializing;
                t.snapshot.last_error = Some(why);
            }
        });
    }

    fn rejoin(&self) {
        self.replica.update(|t| {
            if t.runs(self.generation) && t.snapshot.phase == ReplicaPhase::Initializing {
                t.snapshot.phase = ReplicaPhase::Ready;
                t.snapshot.last_error = None;
            }
        });
    }

    fn current(&self) -> bool {
        self.replica.read(|t| t.runs(self.generation))
    }
}

impl Run<'_> {
    /// Its run ends for its silence, as an exit does (a crash, towards `failed`): the next
    /// generation is asked for after the back-off, and the actor stops this one first.
    fn restart(&self, silent: Duration) {
        let error = restarted_text(self.replica.noun, silent);
        let taken = self.replica.update(|t| {
            if !t.runs(self.generation) {
                return false;
            }
            t.exit_taken = Some(self.generation);
            t.ready_since = None;
            t.failures_in_a_row += 1;
            t.snapshot.restarts += 1;
            t.snapshot.port = None;
            t.snapshot.pid = None;
            t.ready_addr = None;
            t.snapshot.last_error = Some(error.clone());
            t.snapshot.phase = if t.failures_in_a_row >= CRASH_LOOP_AFTER {
                ReplicaPhase::Failed
            } else {
                ReplicaPhase::Restarting
            };
            t.restart_at = Some(Instant::now() + backoff(t.failures_in_a_row));
            true
        });
        if taken {
            let replica = self.replica.clone();
            tokio::task::spawn_blocking(move || {
                append_line(&replica, &format!("cortex: error: {error}"));
            });
        }
    }
}
