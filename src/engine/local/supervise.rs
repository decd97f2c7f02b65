//! The local engine's supervisor: one task per replica that starts the child, watches for
//! readiness, restarts it with back-off when it exits, and stops it on request.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::watch;

use super::capacity::{Capacity, Need, Reservation};
use super::cgroup::Hierarchy;
use super::handle::ReplicaShared;
use super::memory;
use super::memory_guard::MemoryGuard;
use super::one_run::{run, RunEnd, STRANGER_GRACE};
use super::output::Capture;
use super::ports::{PortHold, PortPool};
use super::prepare::{prepare, Prepared};
use super::run_log::{append_log, describe_exit};
use super::sandbox::{Jail, Sandbox};
use super::spare::Spares;
use super::spawn::{start, Start};
use super::stopping::{stop_requested, stopped, wait_or_stop};
use crate::engine::restarts::{after_exit, backoff, BACKOFF_MAX, CRASH_LOOP_AFTER};
use crate::engine::{ReplicaPhase, ReplicaPlan, EXIT_INIT_FAILED};

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

/// What the machine lends a replica: a port per run, and the CPU and memory it asks for;
/// `cgroups`, where the server may make cgroups, to hold each run (and enforce its memory
/// limit).
pub(super) struct Resources {
    pub ports: PortPool,
    pub capacity: Capacity,
    pub cgroups: Option<std::sync::Arc<Hierarchy>>,
    pub sandbox: std::sync::Arc<Sandbox>,
    /// Spare interpreters python replicas may start from.
    pub spares: Option<std::sync::Arc<Spares>>,
}

/// Keeps `plan`'s child running until a stop is requested; its output goes to `log_path`.
/// A replica that asks for CPU or memory first waits until the machine has them free.
pub(super) async fn supervise(
    plan: ReplicaPlan,
    log_path: PathBuf,
    shared: Arc<ReplicaShared>,
    mut stop_rx: watch::Receiver<Option<Duration>>,
    http: reqwest::Client,
    resources: Resources,
) {
    let need = Need {
        cpu_millis: plan.cpu_millis.unwrap_or(0),
        mem_bytes: plan.mem_limit.unwrap_or(0),
        gpus: plan.gpus,
    };
    let reservation = if need.is_empty() {
        None
    } else {
        match reserve(&resources.capacity, need, &shared, &mut stop_rx).await {
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
        _ => resources.capacity.has_gpus().then(String::new),
    };
    let mut supervisor = Supervisor {
        plan,
        log_path,
        shared,
        stop_rx,
        http,
        resources,
        cuda_visible,
        failures_in_a_row: 0,
        attempt: 0,
        prepared: false,
    };
    loop {
        if stop_requested(&supervisor.stop_rx) {
            break;
        }
        let pause = match supervisor.start_once().await {
            Next::Stop => break,
            Next::Again(pause) => pause,
        };
        if wait_or_stop(&mut supervisor.stop_rx, pause).await {
            break;
        }
    }
    supervisor.shared.update(|s| {
        s.phase = ReplicaPhase::Stopped;
        s.pid = None;
        s.port = None;
    });
    drop(reservation);
}

/// What comes after a start of the child.
enum Next {
    Stop,
    /// Start again after this pause.
    Again(Duration),
}

/// One replica's supervisor: what each start of its child needs, and how its starts went.
struct Supervisor {
    plan: ReplicaPlan,
    log_path: PathBuf,
    shared: Arc<ReplicaShared>,
    stop_rx: watch::Receiver<Option<Duration>>,
    http: reqwest::Client,
    resources: Resources,
    /// `CUDA_VISIBLE_DEVICES`, when the machine has GPUs.
    cuda_visible: Option<String>,
    failures_in_a_row: u32,
    attempt: u32,
    /// Whether the project's preparation (`requirements.txt`, ...) is done: once per replica.
    prepared: bool,
}

impl Supervisor {
    /// Starts the child once (a port, its sandbox, the project's preparation the first time, a
    /// memory guard), runs it until it ends, and says why it ended.
    async fn start_once(&mut self) -> Next {
        self.attempt += 1;
        let hold = match self.hold_port() {
            Ok(hold) => hold,
            Err(e) => {
                self.shared.update(|s| {
                    s.phase = ReplicaPhase::Failed;
                    s.last_error = Some(format!("cannot find a free port: {e}"));
                });
                return Next::Again(BACKOFF_MAX);
            }
        };
        let port = hold.lease.port;
        let starting = format!(
            "cortex: starting {} on port {port} (start #{})",
            what(&self.plan),
            self.attempt
        );
        append_log(&self.log_path, &starting).await;
        let jail = match self.jail().await {
            Ok(jail) => jail,
            Err(next) => return next,
        };
        if let Err(next) = self.prepared_in(&jail).await {
            jail.remove().await;
            return next;
        }
        match self.launch(&hold, &jail).await {
            Ok((child, capture, guard)) => {
                let end = self.run_child(child, capture, hold, guard, jail).await;
                self.ended(end, port).await
            }
            Err(msg) => {
                jail.remove().await;
                self.not_started(msg).await
            }
        }
    }

    /// The run's sandbox, made for it.
    async fn jail(&mut self) -> Result<Jail, Next> {
        let (sandbox, plan) = (self.resources.sandbox.clone(), self.plan.clone());
        let jail = tokio::task::spawn_blocking(move || sandbox.prepare(&plan))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match jail {
            Ok(jail) => Ok(jail),
            Err(e) => {
                let noun = self.plan.purpose.noun();
                let msg = format!("cannot prepare the {noun}'s sandbox: {e}");
                Err(self.not_started(msg).await)
            }
        }
    }

    /// The project's preparation, run in `jail` the first time only.
    async fn prepared_in(&mut self, jail: &Jail) -> Result<(), Next> {
        if self.prepared {
            return Ok(());
        }
        let cgroups = self.resources.cgroups.as_deref();
        match prepare(
            &self.plan,
            (&self.log_path, cgroups),
            jail,
            &mut self.stop_rx,
        )
        .await
        {
            Prepared::Done => {
                self.prepared = true;
                Ok(())
            }
            Prepared::Stopped => Err(Next::Stop),
            Prepared::Failed { error, for_good } => Err(self.not_prepared(error, for_good).await),
        }
    }

    /// Starts the child on `hold`'s port in `jail`, held by its memory guard (in its cgroup,
    /// or outside one that it cannot join); why not, when it cannot start.
    async fn launch(
        &self,
        hold: &PortHold,
        jail: &Jail,
    ) -> Result<(Child, Capture, MemoryGuard), String> {
        let (plan, log_path) = (&self.plan, self.log_path.as_path());
        let how = Start {
            port: hold.lease.port,
            socket_fd: hold.socket_fd(),
            jail,
            cuda_visible: self.cuda_visible.as_deref(),
        };
        let (cgroups, spares) = (
            self.resources.cgroups.as_deref(),
            self.resources.spares.as_ref(),
        );
        let (spawned, guard) = start(plan, (log_path, &how), cgroups, spares).await;
        match spawned {
            Ok((child, capture)) => Ok((child, capture, guard)),
            Err(e) => {
                guard.release().await;
                Err(format!("cannot start `{}`: {e}", plan.argv.join(" ")))
            }
        }
    }

    /// Runs the started child on `hold`'s port until it ends; then what the run leaves is
    /// cleaned up (whatever is left in its cgroup, its port, its sandbox) and its output
    /// drained.
    async fn run_child(
        &mut self,
        child: Child,
        capture: Capture,
        hold: PortHold,
        guard: MemoryGuard,
        jail: Jail,
    ) -> RunEnd {
        let PortHold { lease, socket } = hold;
        let (pid, port) = (child.id(), lease.port);
        self.shared.update(|s| {
            s.pid = pid;
            s.port = Some(port);
            if s.phase != ReplicaPhase::Failed {
                s.phase = ReplicaPhase::Initializing;
            }
        });
        // A handed socket lives on in the child: the server's copy must not keep the port
        // bound once the child is gone. The lease is held while the child runs.
        drop(socket);
        let end = run(
            child,
            (port, &guard),
            &self.plan,
            &self.shared,
            &mut self.stop_rx,
            &self.http,
        )
        .await;
        // What left the replica's process group (or session) is in its cgroup all the same.
        guard.release().await;
        drop(lease);
        jail.remove().await;
        // The last words of the run are in the log before it is read for the error.
        capture.drained().await;
        end
    }

    /// A port for this start: bound by the engine and handed over, or leased for the child to
    /// bind.
    fn hold_port(&self) -> std::io::Result<PortHold> {
        if self.plan.takes_socket {
            self.resources
                .ports
                .bound()
                .map(|(lease, socket)| PortHold {
                    lease,
                    socket: Some(socket),
                })
        } else {
            self.resources.ports.lease().map(|lease| PortHold {
                lease,
                socket: None,
            })
        }
    }

    /// The project's preparation failed: restarting, or failed for good (or once it
    /// crash-loops). The preparation has said in the log how it ended.
    async fn not_prepared(&mut self, error: String, for_good: bool) -> Next {
        self.failures_in_a_row += 1;
        let failed = for_good || self.failures_in_a_row >= CRASH_LOOP_AFTER;
        self.shared.update(|s| {
            s.last_error = Some(error);
            s.phase = restarting_unless(failed);
        });
        Next::Again(backoff(self.failures_in_a_row))
    }

    /// A start that failed before the child ran: said in the log and the replica's status.
    async fn not_started(&mut self, msg: String) -> Next {
        self.failures_in_a_row += 1;
        append_log(&self.log_path, &format!("cortex: error: {msg}")).await;
        self.shared.update(|s| {
            s.phase = ReplicaPhase::Failed;
            s.pid = None;
            s.port = None;
            s.last_error = Some(msg);
        });
        Next::Again(backoff(self.failures_in_a_row))
    }

    /// Why a run on `port` ended, in the log and the replica's status (restarting, or failed
    /// once it crash-loops or its initialisation failed).
    async fn ended(&mut self, end: RunEnd, port: u16) -> Next {
        let plan = &self.plan;
        let noun = plan.purpose.noun();
        let worked = self.shared.take_worked();
        let mut out_of_memory = false;
        let (error, failed) = match end {
            RunEnd::Stopped => return Next::Stop,
            RunEnd::OutOfMemory { used, by_kernel } => {
                self.failures_in_a_row += 1;
                out_of_memory = true;
                let limit = plan.mem_limit.unwrap_or_default();
                let error = format!(
                    "out of memory: the {noun}'s processes used {} while compute.mem allows {}, so {}; raise compute.mem in cortex.yaml or make the predictor use less memory",
                    memory::mib(used),
                    memory::mib(limit),
                    if by_kernel { "the kernel killed them" } else { "it was killed" },
                );
                append_log(&self.log_path, &format!("cortex: error: {error}")).await;
                (error, self.failures_in_a_row >= CRASH_LOOP_AFTER)
            }
            RunEnd::Unresponsive { silent } => {
                self.failures_in_a_row += 1;
                let error = crate::engine::health_watch::restarted_text(noun, silent);
                append_log(&self.log_path, &format!("cortex: error: {error}")).await;
                (error, self.failures_in_a_row >= CRASH_LOOP_AFTER)
            }
            RunEnd::PortTaken => {
                self.failures_in_a_row += 1;
                let error = format!(
                    "127.0.0.1:{port} answered GET /healthz from a process outside the replica's process group for {}s (another program took the port, or the replica's server left its group, e.g. with setsid); starting again on another port",
                    STRANGER_GRACE.as_secs()
                );
                append_log(&self.log_path, &format!("cortex: error: {error}")).await;
                (error, self.failures_in_a_row >= CRASH_LOOP_AFTER)
            }
            RunEnd::Exited {
                code,
                how: code_text,
                ready_for,
                pids_refused,
            } => {
                let exited = format!("cortex: {noun} {} exited with {code_text}", plan.replica_id);
                append_log(&self.log_path, &exited).await;
                if let Some(line) = pids_refused.map(|refused| too_many_pids(noun, refused)) {
                    append_log(&self.log_path, &line).await;
                }
                // Exiting soon after readiness is crash-looping too; a long healthy run is not.
                self.failures_in_a_row = after_exit(self.failures_in_a_row, ready_for, worked);
                let init_failed = code == Some(EXIT_INIT_FAILED);
                let error = {
                    let (path, text) = (self.log_path.clone(), code_text.clone());
                    tokio::task::spawn_blocking(move || describe_exit(&path, noun, &text))
                        .await
                        .unwrap_or_else(|_| format!("the {noun} exited with {code_text}"))
                };
                (
                    error,
                    init_failed || self.failures_in_a_row >= CRASH_LOOP_AFTER,
                )
            }
        };
        self.shared.update(|s| {
            s.restarts += 1;
            s.pid = None;
            s.port = None;
            s.last_error = Some(error);
            s.out_of_memory = out_of_memory;
            s.phase = restarting_unless(failed);
        });
        Next::Again(backoff(self.failures_in_a_row))
    }
}

/// What the log says of a run that was refused `times` forks or thread starts for its limit
/// of `max` processes and threads.
fn too_many_pids(noun: &str, (times, max): (u64, u64)) -> String {
    format!(
        "cortex: error: the {noun}'s processes were refused {times} fork(s) or new thread(s): they reached the server's limit of {max} processes and threads per run (cortex server --max-replica-pids); start fewer, or ask the server's operator for a higher limit"
    )
}

/// A replica's phase after a failed start or run: restarting, or failed for good.
fn restarting_unless(failed: bool) -> ReplicaPhase {
    if failed {
        ReplicaPhase::Failed
    } else {
        ReplicaPhase::Restarting
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
