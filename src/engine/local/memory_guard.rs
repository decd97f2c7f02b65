//! How one run of a worker is held in: the cgroup of its own every process it starts is in
//! (whatever session or process group it makes), emptied and removed when the run ends; and
//! how its `compute.mem` is enforced: by the kernel, as that cgroup's limit, or by the engine
//! sampling its process group's resident memory where no cgroup can be made.

use std::path::Path;
use std::time::Duration;

use super::cgroup::{Cgroup, Hierarchy};
use super::run_log::append_log;
use crate::engine::ReplicaPlan;

/// How a run's `compute.mem` is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    None,
    /// By the kernel: the run's cgroup is limited to this many bytes.
    Kernel(u64),
    /// By the engine, sampling the run's resident memory against this many bytes.
    Sampled(u64),
}

/// What holds one run in.
pub(super) struct MemoryGuard {
    /// The run's own cgroup; `None` where none can be made: then only the run's process group
    /// is stopped with it (a process that left it, e.g. with `setsid`, outlives the run).
    pub cgroup: Option<Cgroup>,
    pub limit: Limit,
}

impl MemoryGuard {
    /// The `cgroup.procs` files a child joins its cgroup through (none without one).
    pub(super) fn procs_files(&self) -> Vec<std::ffi::CString> {
        self.cgroup
            .as_ref()
            .map(Cgroup::procs_files)
            .unwrap_or_default()
    }

    /// A new cgroup for a run of `plan` where one can be made, limited to its `compute.mem`;
    /// else sampling for a plan with `compute.mem` (saying why in the log).
    pub(super) async fn for_plan(
        plan: &ReplicaPlan,
        cgroups: Option<&Hierarchy>,
        log_path: &Path,
    ) -> MemoryGuard {
        let cgroup = make(cgroups, &plan.replica_id, plan.mem_limit, log_path).await;
        let limit = match (plan.mem_limit, &cgroup) {
            (None, _) => Limit::None,
            (Some(bytes), Some(_)) => Limit::Kernel(bytes),
            (Some(bytes), None) => Limit::Sampled(bytes),
        };
        MemoryGuard { cgroup, limit }
    }

    /// The guard of a run a spare interpreter became: the spare's cgroup (`None` where the
    /// engine makes none); a `compute.mem` is then sampled (a spare never becomes a run whose
    /// limit is a cgroup's).
    pub(super) fn of_spare(plan: &ReplicaPlan, cgroup: Option<Cgroup>) -> MemoryGuard {
        let limit = plan.mem_limit.map_or(Limit::None, Limit::Sampled);
        MemoryGuard { cgroup, limit }
    }

    /// A new cgroup without a limit for what runs outside `compute.mem` (a preparation), where
    /// one can be made.
    pub(super) async fn unlimited(
        cgroups: Option<&Hierarchy>,
        name: &str,
        log_path: &Path,
    ) -> MemoryGuard {
        MemoryGuard {
            cgroup: make(cgroups, name, None, log_path).await,
            limit: Limit::None,
        }
    }

    /// The guard for a run whose child could not join its cgroup (`why`): the cgroup removed,
    /// its limit sampled instead, said in the log.
    pub(super) async fn without_cgroup(self, log_path: &Path, why: &std::io::Error) -> MemoryGuard {
        let Some(cgroup) = self.cgroup else {
            return self;
        };
        let sampled = match self.limit {
            Limit::Kernel(_) => ", its memory sampled",
            _ => "",
        };
        let line = format!("cortex: cannot start the process in its cgroup ({why}); it starts outside, held by its process group only{sampled}");
        append_log(log_path, &line).await;
        empty_and_remove(&cgroup).await;
        let limit = match self.limit {
            Limit::Kernel(bytes) => Limit::Sampled(bytes),
            other => other,
        };
        MemoryGuard {
            cgroup: None,
            limit,
        }
    }

    /// Kills whatever is left in the run's cgroup and removes it (see [`empty_and_remove`]).
    pub(super) async fn release(&self) {
        if let Some(cgroup) = &self.cgroup {
            empty_and_remove(cgroup).await;
        }
    }
}

/// A cgroup named after `name` limited to `limit` where `cgroups` allows, else `None` (a
/// failure said in the log).
async fn make(
    cgroups: Option<&Hierarchy>,
    name: &str,
    limit: Option<u64>,
    log_path: &Path,
) -> Option<Cgroup> {
    let hierarchy = cgroups?.clone();
    let name = name.to_string();
    let made = tokio::task::spawn_blocking(move || hierarchy.create(&name, limit))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    match made {
        Ok(cgroup) => Some(cgroup),
        Err(e) => {
            let instead = if limit.is_some() {
                "its memory is sampled and "
            } else {
                ""
            };
            let line = format!("cortex: cannot make a cgroup for the process ({e}); {instead}it is held by its process group only");
            append_log(log_path, &line).await;
            None
        }
    }
}

/// Kills every process in `cgroup`, again and again until it is empty (one forking while it
/// is killed adds one the next round finds), and removes it once they are gone (the kernel
/// frees a cgroup only when its last process has exited). One still busy after a few seconds
/// is left for the next server's clean-up, which kills what is in it.
pub(super) async fn empty_and_remove(cgroup: &Cgroup) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(1);
    loop {
        let cgroup = cgroup.clone();
        let removed = tokio::task::spawn_blocking(move || {
            cgroup.kill_all();
            cgroup.remove()
        })
        .await
        .unwrap_or(false);
        if removed || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
