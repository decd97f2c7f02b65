//! The local engine: each replica is a child process of the server.
//!
//! A replica runs in its own process group and, where the server may make cgroups, in a cgroup
//! of its own that holds whatever it starts (`memory_guard.rs`); it gets
//! `PR_SET_PDEATHSIG(SIGKILL)` so it dies with the server (even when the server is SIGKILLed),
//! appends stdout and stderr to its log file (read back through `file_logs.rs`), is ready once
//! `GET /healthz` answers 200 from a process of its own group (`port_owner.rs`), and is
//! restarted with exponential back-off when it exits (`supervise.rs` does all of that). Ports
//! come from `ports.rs`; `handle.rs` is what the server holds.

mod capacity;
mod cgroup;
pub(crate) mod file_logs;
mod gpus;
mod handle;
pub(crate) mod memory;
mod memory_guard;
mod one_run;
pub(crate) mod output;
mod port_owner;
mod ports;
mod prepare;
mod process;
pub mod rotating;
pub(crate) mod run_log;
pub mod sandbox;
mod spare;
mod spawn;
mod stopping;
mod supervise;

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{Engine, Replica, ReplicaLogs, ReplicaPlan};
use file_logs::FileLogs;
use handle::LocalReplica;
use ports::PortPool;

/// Runs replicas as local child processes.
#[derive(Debug, Clone)]
pub struct LocalEngine {
    http: reqwest::Client,
    /// Ports handed to live replicas of this engine, so two never get the same one.
    ports: PortPool,
    /// Set as `CORTEX_ENGINE_OWNER` in every replica's environment (inherited by whatever the
    /// replica starts), so a later server can find what an earlier one left behind.
    owner: String,
    /// Where replica logs are kept: `<log_root>/<api>/<replica id>.log`.
    log_root: PathBuf,
    /// The CPUs and memory replicas that ask for them reserve.
    capacity: capacity::Capacity,
    /// Where each run's cgroup is made (`None`: runs are held by their process group only,
    /// and memory limits are sampled).
    cgroups: Option<Arc<cgroup::Hierarchy>>,
    /// What replicas may reach and who they run as.
    sandbox: Arc<sandbox::Sandbox>,
    /// Spare interpreters python replicas start from (`None`: each starts anew).
    spares: Option<Arc<spare::Spares>>,
}

/// The environment variable that marks a process as started by one server (its data dir).
const OWNER_VAR: &str = "CORTEX_ENGINE_OWNER";

impl LocalEngine {
    /// An engine whose replicas are marked as belonging to `owner` (the server's data dir),
    /// keeping their logs under `log_root`, confined by `sandbox`, each run limited to
    /// `max_pids` processes and threads where the kernel can hold it to that.
    pub fn new(
        owner: &str,
        log_root: PathBuf,
        sandbox: Arc<sandbox::Sandbox>,
        max_pids: Option<u64>,
    ) -> LocalEngine {
        LocalEngine {
            http: super::readiness_client(),
            ports: PortPool::default(),
            owner: owner.to_string(),
            log_root,
            capacity: capacity::Capacity::of_this_machine(),
            cgroups: run_cgroups(max_pids),
            sandbox,
            spares: None,
        }
    }

    /// Keeps `keep` spare interpreters (`python` running the shim at `shim`) ready for python
    /// replicas (0: none), the first ones started in the background once `after` is done.
    pub fn with_spares(
        mut self,
        (python, shim): (&str, &std::path::Path),
        keep: usize,
        after: impl std::future::Future + Send + 'static,
    ) -> LocalEngine {
        if keep == 0 {
            return self;
        }
        let spares = spare::Spares::new(
            (python.to_string(), shim.to_path_buf()),
            (OWNER_VAR.to_string(), self.owner.clone()),
            &self.sandbox,
            keep,
            self.cgroups.clone(),
        );
        self.spares = Some(spares.clone());
        tokio::spawn(async move {
            after.await;
            spares.fill();
        });
        self
    }

    fn log_path(&self, api: &str, replica_id: &str) -> PathBuf {
        self.log_root.join(api).join(format!("{replica_id}.log"))
    }

    /// Kills processes a previous server left behind: a replica's own children survive a
    /// SIGKILLed server (only the direct child gets PR_SET_PDEATHSIG). Those in the cgroups of
    /// servers that are gone (whatever their environment), and those marked with this
    /// server's owner. Call before launching anything. Returns how many were killed. Blocking
    /// (reads /proc, waits a little for the cgroups to empty).
    pub fn reap_orphans(&self) -> usize {
        let in_cgroups = self.cgroups.as_ref().map_or(0, |h| h.clear_stale());
        in_cgroups + self.reap_marked()
    }

    /// Kills the processes marked with this server's owner (`CORTEX_ENGINE_OWNER`).
    fn reap_marked(&self) -> usize {
        let marker = format!("{OWNER_VAR}={}", self.owner).into_bytes();
        let me = std::process::id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return 0;
        };
        let mut killed = 0;
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            if pid as u32 == me {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|var| var == marker.as_slice())
            {
                // SAFETY: kill(2) sends a signal; it touches no memory.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                killed += 1;
            }
        }
        killed
    }
}

/// The hierarchy each run's cgroup is made in, said once in the server's log with the limit
/// on each run's processes and threads.
fn run_cgroups(max_pids: Option<u64>) -> Option<Arc<cgroup::Hierarchy>> {
    let found = cgroup::Hierarchy::detect(max_pids);
    match &found {
        Some(h) => {
            let version = match h.version() {
                cgroup::Version::V1 => "v1",
                cgroup::Version::V2 => "v2",
            };
            tracing::info!(
                "replicas are held in cgroups: each run of a replica or batch worker is in a cgroup of its own (cgroup {version}, under {}), and whatever it starts is stopped with it",
                h.parent().display()
            );
            tracing::info!("memory limits (compute.mem) are enforced by the kernel");
            match (h.max_pids(), max_pids) {
                (Some(max), _) => tracing::info!(
                    "each run may have at most {max} processes and threads (--max-replica-pids)"
                ),
                (None, Some(_)) => tracing::warn!(
                    "runs' processes and threads are not limited in number: no pids cgroup can be made here (--max-replica-pids needs the pids controller, delegated to the server's cgroup on cgroup v2)"
                ),
                (None, None) => tracing::info!(
                    "runs' processes and threads are not limited in number (--max-replica-pids 0)"
                ),
            }
        }
        None => {
            tracing::warn!(
                "replicas are held by their process group only (no cgroup can be made here: the server is not root and has no delegated memory cgroup, or CORTEX_MEMORY_LIMITS=sample): a process a replica moves out of its group (setsid) outlives the replica, and the next start of this server kills it only if it kept CORTEX_ENGINE_OWNER in its environment"
            );
            tracing::info!(
                "memory limits (compute.mem) are enforced by sampling each replica's memory: no memory cgroup can be made here"
            );
            if max_pids.is_some() {
                tracing::warn!("runs' processes and threads are not limited in number: --max-replica-pids needs the cgroups this server cannot make");
            }
        }
    }
    found.map(Arc::new)
}

impl Engine for LocalEngine {
    fn start(&self, mut plan: ReplicaPlan) -> Arc<dyn Replica> {
        plan.env.push((OWNER_VAR.to_string(), self.owner.clone()));
        let log_path = self.log_path(&plan.api, &plan.replica_id);
        let logs = Arc::new(FileLogs {
            path: log_path.clone(),
        });
        let (replica, ends) = LocalReplica::new(plan.replica_id.clone(), logs);
        let (http, ports, capacity, cgroups, sandbox, spares) = (
            self.http.clone(),
            self.ports.clone(),
            self.capacity.clone(),
            self.cgroups.clone(),
            self.sandbox.clone(),
            self.spares.clone(),
        );
        tokio::spawn(async move {
            let resources = supervise::Resources {
                ports,
                capacity,
                cgroups,
                sandbox,
                spares,
            };
            supervise::supervise(plan, log_path, ends.shared, ends.stop_rx, http, resources).await;
            ends.done_tx.send_replace(true);
        });
        Arc::new(replica)
    }

    fn logs(&self, api: &str, replica_id: &str) -> Arc<dyn ReplicaLogs> {
        Arc::new(FileLogs {
            path: self.log_path(api, replica_id),
        })
    }

    fn spare_interpreters(&self) -> Option<(usize, usize)> {
        self.spares.as_ref().map(|s| s.counts())
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let spares = self.spares.clone();
        Box::pin(async move {
            if let Some(spares) = spares {
                spares.stop().await;
            }
        })
    }

    fn remove_logs(&self, api: &str) -> BoxFuture<'static, ()> {
        crate::engine::log_files::remove_dir(self.log_root.join(api))
    }

    fn prune_logs(&self, api: &str, sets: Vec<String>) -> BoxFuture<'static, ()> {
        crate::engine::log_files::prune_dir(self.log_root.join(api), sets)
    }
}
