//! How a replica's `compute.mem` is enforced on one run: by the kernel, in a memory cgroup of
//! its own, or by the engine sampling its resident memory where no cgroup can be made.

use std::path::Path;
use std::time::Duration;

use super::cgroup::{Cgroup, Hierarchy};
use super::run_log::append_log;
use crate::engine::ReplicaPlan;

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
    pub(super) fn procs_file(&self) -> Option<std::ffi::CString> {
        match self {
            MemoryGuard::Cgroup(cgroup, _) => Some(cgroup.procs_file()),
            _ => None,
        }
    }

    /// A new cgroup for a run of `plan` where one can be made, else sampling (saying why in
    /// the log).
    pub(super) async fn for_plan(
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

/// Removes a run's cgroup once the processes killed in it are gone (the kernel frees a cgroup
/// only when its last process has exited); one still busy after a few seconds is left for the
/// next server's clean-up.
pub(super) async fn remove_cgroup(cgroup: &Cgroup) {
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
