//! A worker's preparation (`ReplicaPlan::prepare`: the python shim running `dependencies.sh`
//! and installing `requirements.txt` into the API's virtualenv) runs before the
//! worker starts, in the same sandbox and as the same user, but outside its memory limit:
//! `compute.mem` limits the predictor, not `pip install`. It is held in a cgroup of its own
//! without a limit (where the engine makes cgroups), so whatever it starts ends with it. Its
//! output is in the worker's log, followed by how it ended (once: the error the replica shows
//! repeats its last lines, the log does not).

use std::path::Path;

use tokio::process::Child;
use tokio::sync::watch;

use super::cgroup::Hierarchy;
use super::memory_guard::MemoryGuard;
use super::output::Capture;
use super::process::exit_text;
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
        "cortex: starting {} {}'s preparation (dependencies.sh, requirements.txt)",
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
    let spawned = spawn(&run, log_path, &how, guard.procs_files());
    let (spawned, guard) = or_outside(spawned, guard, (&run, log_path, &how)).await;
    let prepared = match spawned {
        Ok((child, capture)) => wait(child, capture, plan, log_path, stop_rx).await,
        Err(e) => {
            let error = format!("cannot start the preparation `{}`: {e}", argv.join(" "));
            append_log(log_path, &format!("cortex: error: {error}")).await;
            Prepared::Failed {
                error,
                for_good: false,
            }
        }
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
    let (code, code_text) = match status {
        Ok(s) if s.success() => return Prepared::Done,
        Ok(s) => (s.code(), exit_text(&s)),
        Err(e) => {
            let error = format!("cannot wait for the preparation: {e}");
            append_log(log_path, &format!("cortex: error: {error}")).await;
            return Prepared::Failed {
                error,
                for_good: false,
            };
        }
    };
    let noun = plan.purpose.noun();
    // Its output (and its own `cortex: error:` line) is in the log already: only the exit is
    // added, and the error shown by `cortex get` repeats its last lines.
    let exited = format!(
        "cortex: {noun} {}'s preparation exited with {code_text}",
        plan.replica_id
    );
    append_log(log_path, &exited).await;
    let path = log_path.to_path_buf();
    let error = tokio::task::spawn_blocking(move || describe_exit(&path, noun, &code_text))
        .await
        .unwrap_or_else(|_| "the preparation failed".to_string());
    Prepared::Failed {
        error: with_hint(error),
        for_good: code == Some(EXIT_INIT_FAILED),
    }
}

/// `error` (a headline, then the output's last lines), with a hint after the headline when
/// dependencies.sh failed on a permission: it runs as the replica's unprivileged user.
fn with_hint(error: String) -> String {
    let (headline, output) = error.split_once('\n').unwrap_or((&error, ""));
    let lower = output.to_ascii_lowercase();
    let refused = lower.contains("permission denied")
        || lower.contains("are you root")
        || lower.contains("operation not permitted");
    if !headline.contains("dependencies.sh") || !refused {
        return error;
    }
    format!(
        "{headline}; dependencies.sh runs as the replica's unprivileged user, so it cannot \
         install system packages (apt-get) or write outside the API's virtualenv: install \
         them on the server's machine\n{output}"
    )
}

#[cfg(test)]
mod tests {
    use super::with_hint;

    #[test]
    fn a_permission_error_in_dependencies_sh_says_who_it_runs_as() {
        let apt = "failed to prepare the virtualenv: dependencies.sh exited with status 100; its \
                   output is above (cortex logs a)\nE: Could not open lock file \
                   /var/lib/apt/lists/lock - open (13: Permission denied)";
        let hinted = with_hint(apt.to_string());
        let (headline, output) = hinted.split_once('\n').unwrap();
        assert!(
            headline.ends_with(
                "runs as the replica's unprivileged user, so it cannot install \
                 system packages (apt-get) or write outside the API's virtualenv: install them on \
                 the server's machine"
            ),
            "{hinted}"
        );
        assert!(output.contains("Permission denied"), "{hinted}");
        for unchanged in [
            "failed to prepare the virtualenv: dependencies.sh exited with status 1; its output \
             is above (cortex logs a)\nno such file",
            "failed to prepare the virtualenv: pip exited with status 1; its output is above \
             (cortex logs a)\nPermission denied",
        ] {
            assert_eq!(with_hint(unchanged.to_string()), unchanged);
        }
    }
}
