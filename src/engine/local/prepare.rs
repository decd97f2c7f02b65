//! A worker's preparation (`ReplicaPlan::prepare`: the python shim installing
//! `requirements.txt` and running `dependencies.sh` into the API's virtualenv) runs before the
//! worker starts, in the same sandbox and as the same user, but outside its memory limit:
//! `compute.mem` limits the predictor, not `pip install`. Its output is in the worker's log.

use std::path::Path;

use tokio::sync::watch;

use super::run_log::{append_log, describe_exit};
use super::sandbox::Jail;
use super::spawn::{spawn, Start};
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

/// Runs `plan.prepare`, if any, in `jail`, until it exits or a stop comes.
pub(super) async fn prepare(
    plan: &ReplicaPlan,
    log_path: &Path,
    jail: &Jail,
    stop_rx: &mut watch::Receiver<Option<std::time::Duration>>,
) -> Prepared {
    let Some(argv) = &plan.prepare else {
        return Prepared::Done;
    };
    let noun = plan.purpose.noun();
    let run = ReplicaPlan {
        argv: argv.clone(),
        takes_socket: false,
        ..plan.clone()
    };
    append_log(
        log_path,
        &format!(
            "cortex: starting {noun} {}'s preparation (requirements.txt, dependencies.sh)",
            plan.replica_id
        ),
    )
    .await;
    let how = Start {
        port: 0,
        socket_fd: None,
        jail,
        cuda_visible: None,
    };
    let (mut child, capture) = match spawn(&run, log_path, &how, None) {
        Ok(c) => c,
        Err(e) => {
            return Prepared::Failed {
                error: format!("cannot start the preparation `{}`: {e}", argv.join(" ")),
                for_good: false,
            }
        }
    };
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
