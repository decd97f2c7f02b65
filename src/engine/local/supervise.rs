//! The local engine's supervisor: one task per replica that starts the child, watches for
//! readiness, restarts it with back-off when it exits, and stops it on request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::watch;

use super::capacity::{Capacity, Need, Reservation};
use super::cgroup::{Cgroup, Hierarchy};
use super::handle::ReplicaShared;
use super::memory;
use super::port_owner::{listener_owner, Owner};
use super::ports::{PortHold, PortPool};
use super::prepare::{prepare, Prepared};
use super::process::{signal_group, terminate};
use super::run_log::{append_log, describe_exit};
use super::sandbox::Sandbox;
use super::spare::Spares;
use super::spawn::{spawn, start, Start};
use super::stopping::{stop_requested, stopped, wait_or_stop};
use crate::engine::restarts::{
    after_exit, backoff, ready_warn_after, BACKOFF_MAX, CRASH_LOOP_AFTER,
};
use crate::engine::{ReplicaPhase, ReplicaPlan, EXIT_INIT_FAILED};

/// How long a replica's group gets after SIGTERM when the engine itself stops it (its port was
/// taken), or when a stop came without a grace period.
const STRANGER_STOP_GRACE: Duration = Duration::from_secs(5);

/// What a plan starts, for log lines: `replica iris-1a2b3c4d-0 of iris`, or
/// `worker w-0 of job 69d6… of sum`.
fn what(plan: &ReplicaPlan) -> String {
    let noun = plan.purpose.noun();
    match &plan.purpose {
        crate::engine::Purpose::Realtime => format!("{noun} {} of {}", plan.replica_id, plan.api),
        crate::engine::Purpose::BatchWorker { job_id } => {
            format!("{noun} {} of job {job_id} of {}", plan.replica_id, plan.api)
        }
    }
}

/// Why a run of the child ended.
enum RunEnd {
    /// The child exited; `ready_for` is how long it had been ready (`None`: never).
    Exited {
        code: Option<i32>,
        ready_for: Option<Duration>,
    },
    /// `/healthz` kept being answered by a process outside the replica: it was stopped.
    PortTaken,
    /// Its processes used more memory than the plan allows (`used` bytes): they were killed,
    /// by the kernel (`by_kernel`, its cgroup's limit) or by the engine (sampling).
    OutOfMemory {
        used: u64,
        by_kernel: bool,
    },
    Stopped,
}

/// What the machine lends a replica: a port per run, and the CPU and memory it asks for;
/// `cgroups`, where the server may make memory cgroups, to enforce its memory limit.
pub(super) struct Resources {
    pub ports: PortPool,
    pub capacity: Capacity,
    pub cgroups: Option<std::sync::Arc<Hierarchy>>,
    pub sandbox: std::sync::Arc<Sandbox>,
    /// Spare interpreters python replicas may start from.
    pub spares: Option<std::sync::Arc<Spares>>,
}

/// How a replica's `compute.mem` is enforced.
pub(super) enum MemoryGuard {
    Unlimited,
    /// By the kernel: this run of the replica is in this cgroup, limited to this many bytes.
    Cgroup(Cgroup, u64),
    /// By the engine, sampling the replica's resident memory against this many bytes.
    Sampled(u64),
}

impl MemoryGuard {
    /// The `cgroup.procs` file a child joins its cgroup through.
    fn procs_file(&self) -> Option<std::ffi::CString> {
        match self {
            MemoryGuard::Cgroup(cgroup, _) => Some(cgroup.procs_file()),
            _ => None,
        }
    }

    /// A new cgroup for a run of `plan` where one can be made, else sampling (saying why in
    /// the log).
    async fn for_plan(
        plan: &ReplicaPlan,
        cgroups: Option<&Hierarchy>,
        log_path: &Path,
    ) -> MemoryGuard {
        let Some(limit) = plan.mem_limit else {
            return MemoryGuard::Unlimited;
        };
        let Some(hierarchy) = cgroups.cloned() else {
            return MemoryGuard::Sampled(limit);
        };
        let name = plan.replica_id.clone();
        let made = tokio::task::spawn_blocking(move || hierarchy.create(&name, limit)).await;
        match made {
            Ok(Ok(cgroup)) => MemoryGuard::Cgroup(cgroup, limit),
            Ok(Err(e)) => {
                append_log(
                    log_path,
                    &format!("cortex: cannot make a memory cgroup for the replica ({e}); its memory is sampled instead"),
                )
                .await;
                MemoryGuard::Sampled(limit)
            }
            Err(_) => MemoryGuard::Sampled(limit),
        }
    }
}

/// Keeps `plan`'s child running until a stop is requested; its output goes to `log_path`.
/// A replica that asks for CPU or memory first waits until the machine has them free.
pub(super) async fn supervise(
    plan: ReplicaPlan,
    log_path: PathBuf,
    shared: std::sync::Arc<ReplicaShared>,
    mut stop_rx: watch::Receiver<Option<Duration>>,
    http: reqwest::Client,
    resources: Resources,
) {
    let Resources {
        ports,
        capacity,
        cgroups,
        sandbox,
        spares,
    } = resources;
    let need = Need {
        cpu_millis: plan.cpu_millis.unwrap_or(0),
        mem_bytes: plan.mem_limit.unwrap_or(0),
        gpus: plan.gpus,
    };
    let reservation = if need.is_empty() {
        None
    } else {
        match reserve(&capacity, need, &shared, &mut stop_rx).await {
            Some(r) => Some(r),
            None => {
                shared.update(|s| s.phase = ReplicaPhase::Stopped);
                return;
            }
        }
    };
    // Its GPUs; none visible to a replica that asked for none on a machine that has some.
    let cuda_visible = match &reservation {
        Some(r) if !r.gpus.is_empty() => Some(r.gpus.join(",")),
        _ => capacity.has_gpus().then(String::new),
    };
    let mut failures_in_a_row: u32 = 0;
    let mut attempt: u32 = 0;
    let mut prepared = false;
    loop {
        if stop_requested(&stop_rx) {
            break;
        }
        attempt += 1;
        let hold = if plan.takes_socket {
            ports.bound().map(|(lease, socket)| PortHold {
                lease,
                socket: Some(socket),
            })
        } else {
            ports.lease().map(|lease| PortHold {
                lease,
                socket: None,
            })
        };
        let hold = match hold {
            Ok(h) => h,
            Err(e) => {
                shared.update(|s| {
                    s.phase = ReplicaPhase::Failed;
                    s.last_error = Some(format!("cannot find a free port: {e}"));
                });
                if wait_or_stop(&mut stop_rx, BACKOFF_MAX).await {
                    break;
                }
                continue;
            }
        };
        let port = hold.lease.port;
        append_log(
            &log_path,
            &format!(
                "cortex: starting {} on port {port} (start #{attempt})",
                what(&plan)
            ),
        )
        .await;
        let jail = {
            let (sandbox, plan) = (sandbox.clone(), plan.clone());
            tokio::task::spawn_blocking(move || sandbox.prepare(&plan))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        let jail = match jail {
            Ok(jail) => jail,
            Err(e) => {
                failures_in_a_row += 1;
                let msg = format!("cannot prepare the {}'s sandbox: {e}", plan.purpose.noun());
                append_log(&log_path, &format!("cortex: error: {msg}")).await;
                shared.update(|s| {
                    s.phase = ReplicaPhase::Failed;
                    s.last_error = Some(msg);
                });
                if wait_or_stop(&mut stop_rx, backoff(failures_in_a_row)).await {
                    break;
                }
                continue;
            }
        };
        if !prepared {
            match prepare(&plan, &log_path, &jail, &mut stop_rx).await {
                Prepared::Done => prepared = true,
                Prepared::Stopped => {
                    jail.remove().await;
                    break;
                }
                Prepared::Failed { error, for_good } => {
                    jail.remove().await;
                    failures_in_a_row += 1;
                    append_log(&log_path, &format!("cortex: error: {error}")).await;
                    let failed = for_good || failures_in_a_row >= CRASH_LOOP_AFTER;
                    shared.update(|s| {
                        s.last_error = Some(error);
                        s.phase = if failed {
                            ReplicaPhase::Failed
                        } else {
                            ReplicaPhase::Restarting
                        };
                    });
                    if wait_or_stop(&mut stop_rx, backoff(failures_in_a_row)).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let mut guard = MemoryGuard::for_plan(&plan, cgroups.as_deref(), &log_path).await;
        let how = Start {
            port,
            socket_fd: hold.socket_fd(),
            jail: &jail,
            cuda_visible: cuda_visible.as_deref(),
        };
        let mut spawned = start(&plan, &log_path, &how, guard.procs_file(), spares.as_ref()).await;
        if let (Err(e), MemoryGuard::Cgroup(cgroup, limit)) = (&spawned, &guard) {
            // It could not join its cgroup: sampled instead, rather than not run at all.
            let limit = *limit;
            append_log(
                &log_path,
                &format!("cortex: cannot start the replica in its memory cgroup ({e}); its memory is sampled instead"),
            )
            .await;
            remove_cgroup(cgroup).await;
            guard = MemoryGuard::Sampled(limit);
            spawned = spawn(&plan, &log_path, &how, None);
        }
        let (child, capture) = match spawned {
            Ok(c) => c,
            Err(e) => {
                jail.remove().await;
                failures_in_a_row += 1;
                let msg = format!("cannot start `{}`: {e}", plan.argv.join(" "));
                append_log(&log_path, &format!("cortex: error: {msg}")).await;
                shared.update(|s| {
                    s.phase = ReplicaPhase::Failed;
                    s.pid = None;
                    s.port = None;
                    s.last_error = Some(msg);
                });
                if wait_or_stop(&mut stop_rx, backoff(failures_in_a_row)).await {
                    break;
                }
                continue;
            }
        };
        let pid = child.id();
        shared.update(|s| {
            s.pid = pid;
            s.port = Some(port);
            if s.phase != ReplicaPhase::Failed {
                s.phase = ReplicaPhase::Initializing;
            }
        });
        // A handed socket lives on in the child: the server's copy must not keep the port
        // bound once the child is gone. The lease is held while the child runs.
        let PortHold { lease, socket } = hold;
        drop(socket);
        let end = run(
            child,
            (port, plan.takes_socket, &guard),
            &plan.api,
            &shared,
            &mut stop_rx,
            &http,
        )
        .await;
        if let MemoryGuard::Cgroup(cgroup, _) = &guard {
            // What left the replica's process group is in its cgroup all the same.
            cgroup.kill_all();
            remove_cgroup(cgroup).await;
        }
        drop(lease);
        jail.remove().await;
        // The last words of the run are in the log before it is read for the error.
        capture.drained().await;
        let mut out_of_memory = false;
        let (error, failed) = match end {
            RunEnd::Stopped => break,
            RunEnd::OutOfMemory { used, by_kernel } => {
                failures_in_a_row += 1;
                out_of_memory = true;
                let limit = plan.mem_limit.unwrap_or_default();
                let error = format!(
                    "out of memory: the {noun}'s processes used {} while compute.mem allows {}, so {}; raise compute.mem in cortex.yaml or make the predictor use less memory",
                    memory::mib(used),
                    memory::mib(limit),
                    if by_kernel { "the kernel killed them" } else { "it was killed" },
                    noun = plan.purpose.noun(),
                );
                append_log(&log_path, &format!("cortex: error: {error}")).await;
                (error, failures_in_a_row >= CRASH_LOOP_AFTER)
            }
            RunEnd::PortTaken => {
                failures_in_a_row += 1;
                let error = format!(
                    "127.0.0.1:{port} answered GET /healthz from a process outside the replica's process group for {}s (another program took the port, or the replica's server left its group, e.g. with setsid); starting again on another port",
                    STRANGER_GRACE.as_secs()
                );
                append_log(&log_path, &format!("cortex: error: {error}")).await;
                (error, failures_in_a_row >= CRASH_LOOP_AFTER)
            }
            RunEnd::Exited { code, ready_for } => {
                let code_text = code.map_or("a signal".to_string(), |c| format!("status {c}"));
                append_log(
                    &log_path,
                    &format!(
                        "cortex: {} {} exited with {code_text}",
                        plan.purpose.noun(),
                        plan.replica_id
                    ),
                )
                .await;
                // Exiting soon after readiness is crash-looping too; a long healthy run is not.
                failures_in_a_row = after_exit(failures_in_a_row, ready_for);
                let init_failed = code == Some(EXIT_INIT_FAILED);
                let error = {
                    let (path, text) = (log_path.clone(), code_text.clone());
                    let noun = plan.purpose.noun();
                    tokio::task::spawn_blocking(move || describe_exit(&path, noun, &text))
                        .await
                        .unwrap_or_else(|_| format!("the replica exited with {code_text}"))
                };
                (error, init_failed || failures_in_a_row >= CRASH_LOOP_AFTER)
            }
        };
        shared.update(|s| {
            s.restarts += 1;
            s.pid = None;
            s.port = None;
            s.last_error = Some(error);
            s.out_of_memory = out_of_memory;
            s.phase = if failed {
                ReplicaPhase::Failed
            } else {
                ReplicaPhase::Restarting
            };
        });
        if wait_or_stop(&mut stop_rx, backoff(failures_in_a_row)).await {
            break;
        }
    }
    shared.update(|s| {
        s.phase = ReplicaPhase::Stopped;
        s.pid = None;
        s.port = None;
    });
}

/// Removes a run's cgroup once the processes killed in it are gone (the kernel frees a cgroup
/// only when its last process has exited); one still busy after a few seconds is left for the
/// next server's clean-up.
async fn remove_cgroup(cgroup: &Cgroup) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let dir = cgroup.dir().to_path_buf();
        let removed =
            tokio::task::spawn_blocking(move || std::fs::remove_dir(&dir).is_ok() || !dir.exists())
                .await
                .unwrap_or(false);
        if removed || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `need` fits the machine (the replica is `pending` meanwhile, saying why); `None`
/// when a stop came first.
async fn reserve(
    capacity: &Capacity,
    need: Need,
    shared: &ReplicaShared,
    stop_rx: &mut watch::Receiver<Option<Duration>>,
) -> Option<Reservation> {
    loop {
        // Subscribed before trying, so a reservation given back in between is not missed.
        let freed = capacity.freed();
        tokio::pin!(freed);
        freed.as_mut().enable();
        match capacity.try_reserve(need) {
            Ok(r) => {
                shared.update(|s| {
                    s.phase = ReplicaPhase::Initializing;
                    s.last_error = None;
                });
                return Some(r);
            }
            Err(why) => shared.update(|s| {
                s.phase = ReplicaPhase::Pending;
                s.last_error = Some(why);
            }),
        }
        tokio::select! {
            _ = &mut freed => {}
            _ = stopped(stop_rx) => return None,
        }
    }
}

/// Runs one child until it exits or a stop is requested, marking it ready on the way.
async fn run(
    mut child: Child,
    (port, handed, guard): (u16, bool, &MemoryGuard),
    api: &str,
    shared: &ReplicaShared,
    stop_rx: &mut watch::Receiver<Option<Duration>>,
    http: &reqwest::Client,
) -> RunEnd {
    let mut ready_since: Option<std::time::Instant> = None;
    let pid = child.id();
    // A socket the engine bound and handed over cannot have been taken by another program:
    // who answers on it needs no check.
    let ready = wait_ready(http, port, pid.filter(|_| !handed));
    tokio::pin!(ready);
    let warn_after = ready_warn_after();
    let slow = tokio::time::sleep(warn_after);
    tokio::pin!(slow);
    let mut warned = false;
    let over_memory = async {
        match (pid, guard) {
            (Some(pgid), MemoryGuard::Sampled(limit)) => memory::exceeded(pgid, *limit).await,
            _ => std::future::pending().await,
        }
    };

    tokio::pin!(over_memory);
    loop {
        tokio::select! {
            status = child.wait() => {
                // What the replica started in its group must not outlive it.
                if let Some(pid) = pid {
                    signal_group(pid, libc::SIGKILL);
                }
                // The kernel killed one of its processes for memory: the replica ended for that.
                // (The cgroup is this run's own: any kill it counts is this run's.)
                if let MemoryGuard::Cgroup(cgroup, limit) = guard {
                    if cgroup.oom_kills() > 0 {
                        let used = cgroup.peak().unwrap_or(*limit);
                        return RunEnd::OutOfMemory { used, by_kernel: true };
                    }
                }
                let code = status.ok().and_then(|s| s.code());
                let ready_for = ready_since.map(|t| t.elapsed());
                return RunEnd::Exited { code, ready_for };
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
const STRANGER_GRACE: Duration = Duration::from_secs(3);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_description_prefers_the_workers_own_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("r.log");
        std::fs::write(
            &log,
            "old run\ncortex: starting replica r of a on port 1 (start #2)\n\
             cortex: error: failed to initialise the predictor: ValueError: boom\n\
             Traceback ...\ncortex: replica r exited with status 3\n",
        )
        .unwrap();
        let d = describe_exit(&log, "replica", "status 3");
        assert!(d.starts_with("failed to initialise the predictor: ValueError: boom\n"));
        assert_eq!(d.matches("ValueError: boom").count(), 1, "{d}");
        assert!(!d.contains("old run"));
        assert!(!d.contains("exited with"));
    }
}
