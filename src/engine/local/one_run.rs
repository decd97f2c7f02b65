//! One run of a replica's child: ready once its `/healthz` answers 200 from its own process
//! group; over when it exits, uses more memory than its plan allows, leaves its port to a
//! stranger, stops answering for long (`health_watch.rs`), or a stop comes.

use std::time::Duration;

use tokio::process::Child;
use tokio::sync::watch;

use super::handle::ReplicaShared;
use super::memory;
use super::memory_guard::{Limit, MemoryGuard};
use super::port_owner::{listener_owner, Owner};
use super::process::{exit_text, signal_group, terminate};
use super::stopping::stopped;
use crate::engine::health_watch;
use crate::engine::restarts::ready_warn_after;
use crate::engine::{Purpose, ReplicaPhase, ReplicaPlan};

/// How long a replica's group gets after SIGTERM when the engine itself stops it (its port was
/// taken), or when a stop came without a grace period.
const STRANGER_STOP_GRACE: Duration = Duration::from_secs(5);

/// Why a run of the child ended.
pub(super) enum RunEnd {
    /// The child exited; `ready_for` is how long it had been ready (`None`: never).
    Exited {
        code: Option<i32>,
        /// How it ended, for people (`status 7`, `signal SIGKILL`).
        how: String,
        ready_for: Option<Duration>,
        /// Forks or thread starts refused for the run's limit on its number of processes and
        /// threads, and that limit.
        pids_refused: Option<(u64, u64)>,
    },
    /// `/healthz` kept being answered by a process outside the replica: it was stopped.
    PortTaken,
    /// Its processes used more memory than the plan allows (`used` bytes): they were killed,
    /// by the kernel (`by_kernel`, its cgroup's limit) or by the engine (sampling).
    OutOfMemory {
        used: u64,
        by_kernel: bool,
    },
    /// A ready replica went this long without answering `/healthz`: it was stopped.
    Unresponsive {
        silent: Duration,
    },
    Stopped,
}

/// Runs one child until it exits or a stop is requested, marking it ready on the way.
pub(super) async fn run(
    mut child: Child,
    (port, guard): (u16, &MemoryGuard),
    plan: &ReplicaPlan,
    shared: &ReplicaShared,
    stop_rx: &mut watch::Receiver<Option<Duration>>,
    http: &reqwest::Client,
) -> RunEnd {
    let (api, handed) = (plan.api.as_str(), plan.takes_socket);
    let mut ready_since: Option<std::time::Instant> = None;
    let pid = child.id();
    // Once ready, a replica of a RealtimeAPI keeps being asked (a job's worker is watched by
    // its job: a batch may take long on a worker that answers one request at a time).
    let watched = plan.purpose == Purpose::Realtime;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let unresponsive = health_watch::unresponsive_for(http, addr, api, shared);
    tokio::pin!(unresponsive);
    // A socket the engine bound and handed over cannot have been taken by another program:
    // who answers on it needs no check.
    let ready = wait_ready(http, port, pid.filter(|_| !handed));
    tokio::pin!(ready);
    let warn_after = ready_warn_after();
    let slow = tokio::time::sleep(warn_after);
    tokio::pin!(slow);
    let mut warned = false;
    let over_memory = async {
        match (pid, guard.limit) {
            (Some(pgid), Limit::Sampled(limit)) => memory::exceeded(pgid, limit).await,
            _ => std::future::pending().await,
        }
    };

    tokio::pin!(over_memory);
    loop {
        tokio::select! {
            status = child.wait() => {
                // What the replica started must not outlive it: its group now, its cgroup next.
                if let Some(pid) = pid {
                    signal_group(pid, libc::SIGKILL);
                }
                // The kernel killed one of its processes for memory: the replica ended for that.
                // (The cgroup is this run's own: any kill it counts is this run's.)
                if let (Some(cgroup), Limit::Kernel(limit)) = (&guard.cgroup, guard.limit) {
                    if cgroup.oom_kills() > 0 {
                        let used = cgroup.peak().unwrap_or(limit);
                        return RunEnd::OutOfMemory { used, by_kernel: true };
                    }
                }
                let code = status.as_ref().ok().and_then(|s| s.code());
                let how = status.as_ref().map_or_else(|e| format!("an unknown status ({e})"), exit_text);
                let ready_for = ready_since.map(|t| t.elapsed());
                let pids_refused = guard.cgroup.as_ref().and_then(|c| c.pids_refused());
                return RunEnd::Exited { code, how, ready_for, pids_refused };
            }
            answer = &mut ready, if ready_since.is_none() => {
                if answer == Answer::Stranger {
                    terminate(&mut child, STRANGER_STOP_GRACE).await;
                    return RunEnd::PortTaken;
                }
                ready_since = Some(std::time::Instant::now());
                shared.update(|s| {
                    s.phase = ReplicaPhase::Ready;
                    s.last_error = None;
                    s.out_of_memory = false;
                });
            }
            _ = &mut slow, if ready_since.is_none() && !warned => {
                warned = true;
                let why = format!(
                    "the replica has not answered GET /healthz on 127.0.0.1:{port} for {}s; it is still starting, or it does not serve on $CORTEX_PORT (see `cortex logs {api}`)",
                    warn_after.as_secs()
                );
                shared.update(|s| s.last_error = Some(why));
            }
            silent = &mut unresponsive, if watched && ready_since.is_some() => {
                // A local run is current until this loop returns.
                let silent = silent.unwrap_or_default();
                terminate(&mut child, STRANGER_STOP_GRACE).await;
                return RunEnd::Unresponsive { silent };
            }
            used = &mut over_memory => {
                if let Some(pid) = pid {
                    signal_group(pid, libc::SIGKILL);
                }
                let _ = child.wait().await;
                return RunEnd::OutOfMemory { used, by_kernel: false };
            }
            _ = stopped(stop_rx) => {
                let grace = stop_rx.borrow().unwrap_or(STRANGER_STOP_GRACE);
                terminate(&mut child, grace).await;
                return RunEnd::Stopped;
            }
        }
    }
}

/// Who answered the replica's `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The replica itself (or `/proc` cannot tell otherwise).
    Replica,
    /// A process outside the replica's group, for [`STRANGER_GRACE`]: another program took the
    /// port between its lease and the replica's `bind`, or the replica's listener left the group.
    Stranger,
}

/// How long `/healthz` may be answered by a stranger before the replica gives the port up and
/// starts again on another one (the replica itself usually exits first: its `bind` failed).
pub(super) const STRANGER_GRACE: Duration = Duration::from_secs(3);

/// How often a starting replica's `/healthz` is asked, for how long, before backing off: every
/// millisecond at first (a replica from a spare interpreter is up in a few), then every 5 ms.
const READY_POLL_FIRST: Duration = Duration::from_millis(1);
const READY_POLL_FIRST_FOR: Duration = Duration::from_millis(250);
const READY_POLL_FAST: Duration = Duration::from_millis(5);
const READY_POLL_FAST_FOR: Duration = Duration::from_secs(2);

/// Polls `GET /healthz` until it answers 200 from a process of the replica's group (`pgid`),
/// or a stranger has held the port for [`STRANGER_GRACE`]. Never returns otherwise.
async fn wait_ready(http: &reqwest::Client, port: u16, pgid: Option<u32>) -> Answer {
    let url = format!("http://127.0.0.1:{port}/healthz");
    let started = std::time::Instant::now();
    let mut delay = READY_POLL_FIRST;
    let mut stranger_since: Option<std::time::Instant> = None;
    loop {
        let answered = match http.get(&url).send().await {
            Ok(resp) => resp.status().is_success(),
            Err(_) => false,
        };
        if answered {
            let owner = match pgid {
                Some(pgid) => tokio::task::spawn_blocking(move || listener_owner(port, pgid))
                    .await
                    .unwrap_or(Owner::Unknown),
                None => Owner::Unknown,
            };
            if owner != Owner::Stranger {
                return Answer::Replica;
            }
            let since = *stranger_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= STRANGER_GRACE {
                return Answer::Stranger;
            }
        } else {
            stranger_since = None;
        }
        tokio::time::sleep(delay).await;
        // Checked often at first: a cold start waits on this (a refused connection costs
        // microseconds); a replica that takes longer is asked less and less often.
        let elapsed = started.elapsed();
        if elapsed >= READY_POLL_FAST_FOR {
            delay = (delay * 2).min(Duration::from_millis(100));
        } else if elapsed >= READY_POLL_FIRST_FOR {
            delay = READY_POLL_FAST;
        }
    }
}
