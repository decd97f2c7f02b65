//! A worker's preparation (`ReplicaPlan::prepare`: the python shim installing
//! `requirements.txt` and running `dependencies.sh` into the API's virtualenv) runs before the
//! worker starts, in the same sandbox and as the same user, but outside its memory limit:
//! `compute.mem` limits the predictor, not `pip install`. It is held in a cgroup of its own
//! without a limit (where the engine makes cgroups), so whatever it starts ends with it. Its
//! output is in the worker's log.

use std::path::Path;

use tokio::process::Child;
use tokio::sync::watch;

use super::cgroup::Hierarchy;
use super::memory_guard::MemoryGuard;
use super::output::Capture;
use super::run_log::{append_log, describe_exit};
use super::sandbox::Jail;
use super::spawn::{or_outside, spawn, Start};
use super::stopping::stopped;
use crate::engine::{ReplicaPlan, EXIT_INIT_FAILED};

/// How a preparation ended.
pub(super) enum Prepared {
    /// Nothing to prepare, or done.
    Done,
    /// A stop came first (the preparation was killed).
    Stopped,
    /// It failed: why (with the last lines of its output), and whether that is for good (it
    /// exited with the init-failure status: a bad requirements.txt or dependencies.sh).
    Failed { error: String, for_good: bool },
}

/// Runs `plan.prepare`, if any, in `jail` and a cgroup of its own under `cgroups`, until it
/// exits or a stop comes; whatever it leaves running is killed then.
pub(super) async fn prepare(
    plan: &ReplicaPlan,
    (log_path, cgroups): (&Path, Option<&Hierarchy>),
    jail: &Jail,
    stop_rx: &mut watch::Receiver<Option<std::time::Duration>>,
) -> Prepared {
    let Some(argv) = &plan.prepare else {
        return Prepared::Done;
    };
    let run = ReplicaPlan {
        argv: argv.clone(),
        takes_socket: false,
        ..plan.clone()
    };
    let line = format!(
        "cortex: starting {} {}'s preparation (requirements.txt, dependencies.sh)",
        plan.purpose.noun(),
        plan.replica_id
    );
    append_log(log_path, &line).await;
    let how = Start {
        port: 0,
        socket_fd: None,
        jail,
        cuda_visible: None,
    };
    let name = format!("{}-prepare", plan.replica_id);
    let guard = MemoryGuard::unlimited(cgroups, &name, log_path).await;
    let spawned = spawn(&run, log_path, &how, guard.procs_file());
    let (spawned, guard) = or_outside(spawned, guard, (&run, log_path, &how)).await;
    let prepared = match spawned {
        Ok((child, capture)) => wait(child, capture, plan, log_path, stop_rx).await,
        Err(e) => Prepared::Failed {
            error: format!("cannot start the preparation `{}`: {e}", argv.join(" ")),
            for_good: false,
        },
    };
    guard.release().await;
    prepared
}

/// Waits until the preparation `child` exits (or kills its process group when a stop comes
/// first); how it went.
async fn wait(
    mut child: Child,
    capture: Capture,
    plan: &ReplicaPlan,
    log_path: &Path,
    stop_rx: &mut watch::Receiver<Option<std::time::Duration>>,
) -> Prepared {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = stopped(stop_rx) => {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on the child's own process group (it was started in one).
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let _ = child.wait().await;
            return Prepared::Stopped;
        }
    };
    capture.drained().await;
    let code = match status {
        Ok(s) if s.success() => return Prepared::Done,
        Ok(s) => s.code(),
        Err(e) => {
            return Prepared::Failed {
                error: format!("cannot wait for the preparation: {e}"),
                for_good: false,
            }
        }
    };
    let noun = plan.purpose.noun();
    let code_text = code.map_or("a signal".to_string(), |c| format!("status {c}"));
    let path = log_path.to_path_buf();
    let error = tokio::task::spawn_blocking(move || describe_exit(&path, noun, &code_text))
        .await
        .unwrap_or_else(|_| "the preparation failed".to_string());
    Prepared::Failed {
        error,
        for_good: code == Some(EXIT_INIT_FAILED),
    }
}
