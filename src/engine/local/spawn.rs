//! Starting one run of a worker: its child process with the plan's argv, environment and
//! working directory, in its jail (user, Landlock), its memory cgroup and its own process
//! group, with its output captured into its log; and ending that group.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::cgroup;
use super::output::{Capture, OutputPaths};
use super::ports::LISTEN_FD;
use super::sandbox::Jail;
use crate::engine::ReplicaPlan;

/// SIGTERM to the process group, then SIGKILL after `grace`.
pub(super) async fn terminate(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else {
        return;
    };
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // Anything the worker left behind in its group goes too.
    signal_group(pid, libc::SIGKILL);
}

pub(super) fn signal_group(pgid: u32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    unsafe {
        libc::kill(-(pgid as i32), signal);
    }
}

/// How one run starts: its port (and the socket handed on it), and its jail.
#[derive(Clone, Copy)]
pub(super) struct Start<'a> {
    pub port: u16,
    pub socket_fd: Option<i32>,
    pub jail: &'a Jail,
    /// `CUDA_VISIBLE_DEVICES`, when the machine has GPUs.
    pub cuda_visible: Option<&'a str>,
}

/// Starts `plan`'s child as `how` says, in the memory cgroup whose `cgroup.procs` is
/// `cgroup_procs`, if any.
pub(super) fn spawn(
    plan: &ReplicaPlan,
    log_path: &Path,
    how: &Start<'_>,
    cgroup_procs: Option<std::ffi::CString>,
) -> std::io::Result<(Child, Capture)> {
    let Start {
        port,
        socket_fd,
        jail,
        cuda_visible,
    } = *how;
    let entry = jail.entry();
    let (program, args) = plan
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("the command is empty"))?;
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&plan.cwd)
        .env_clear()
        .envs(super::sandbox::inherited_env())
        .envs(jail.env())
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .env("CORTEX_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if socket_fd.is_some() {
        cmd.env("CORTEX_LISTEN_FD", LISTEN_FD.to_string());
    }
    if let Some(devices) = cuda_visible {
        cmd.env("CUDA_VISIBLE_DEVICES", devices);
    }
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, dup2, fcntl, open, write, close, setuid,
    // setgid, setgroups, syscall, _exit).
    unsafe {
        cmd.pre_exec(move || {
            // Into its memory cgroup before it runs anything: all it starts is counted too.
            if let Some(procs) = &cgroup_procs {
                cgroup::join(procs)?;
            }
            // A change of user resets the parent-death signal: first the user, then the signal.
            entry.drop_user()?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = socket_fd {
                // dup2 clears close-on-exec on the copy; when the socket already is fd 3,
                // clear it on the socket itself.
                let handed = if fd == LISTEN_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, LISTEN_FD)
                };
                if handed == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            entry.restrict()?;
            // The server may have died between fork and prctl.
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    match Capture::start(&mut child, &OutputPaths::of(log_path)) {
        Ok(capture) => Ok((child, capture)),
        Err(e) => {
            // Nothing may run whose output goes nowhere.
            if let Some(pid) = child.id() {
                signal_group(pid, libc::SIGKILL);
            }
            Err(e)
        }
    }
}
