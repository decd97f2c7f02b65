//! Starting one run of a worker: its child process with the plan's argv, environment and
//! working directory, in its jail (user, Landlock), its cgroup and its own process group, with
//! its output captured into its log; and ending that group.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

use tokio::process::Child;

use super::cgroup::{self, Hierarchy};
use super::memory_guard::MemoryGuard;
use super::output::{Capture, OutputPaths};
use super::ports::LISTEN_FD;
use super::process::{hand_over, killed_first_for_memory, signal_group, worker_command};
use super::sandbox::Jail;
use super::spare::{Becoming, Spares};
use crate::engine::ReplicaPlan;

/// How one run starts: its port (and the socket handed on it), and its jail.
#[derive(Clone, Copy)]
pub(super) struct Start<'a> {
    pub port: u16,
    pub socket_fd: Option<i32>,
    pub jail: &'a Jail,
    /// `CUDA_VISIBLE_DEVICES`, when the machine has GPUs.
    pub cuda_visible: Option<&'a str>,
}

/// The environment of `plan`'s child: the harmless part of the server's, the jail's, the
/// plan's, then the run's own (a later one wins).
fn child_env(plan: &ReplicaPlan, how: &Start<'_>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = super::sandbox::inherited_env().into_iter().collect();
    env.extend(how.jail.env());
    env.extend(plan.env.iter().cloned());
    env.insert("CORTEX_PORT".into(), how.port.to_string());
    if how.socket_fd.is_some() {
        env.insert("CORTEX_LISTEN_FD".into(), LISTEN_FD.to_string());
    }
    if let Some(devices) = how.cuda_visible {
        env.insert("CUDA_VISIBLE_DEVICES".into(), devices.to_string());
    }
    env
}

/// Starts `plan`'s child as `how` says and the guard that holds it: a spare interpreter becomes
/// it when one fits and the plan's memory is not to be limited by a cgroup (a spare's memory
/// so far is counted elsewhere), the run then held by the spare's own cgroup; otherwise, or
/// when the spare fails, a new process in a new cgroup under `cgroups` ([`spawn`], and
/// [`or_outside`] when it cannot join it).
pub(super) async fn start(
    plan: &ReplicaPlan,
    (log_path, how): (&Path, &Start<'_>),
    cgroups: Option<&Hierarchy>,
    spares: Option<&Arc<Spares>>,
) -> (std::io::Result<(Child, Capture)>, MemoryGuard) {
    let kernel_limit = plan.mem_limit.is_some() && cgroups.is_some();
    let fitting = spares.filter(|_| !kernel_limit).and_then(|spares| {
        let env = child_env(plan, how);
        (spares.fit(&plan.argv, &env) && spares.reaches(&plan.access)).then_some((spares, env))
    });
    if let Some((spares, env)) = fitting {
        match spares.make_replica(|| becoming(plan, how, env)).await {
            Some(Ok(became)) => {
                let guard = MemoryGuard::of_spare(plan, became.cgroup);
                let child = became.child;
                return (
                    log_dir(log_path).and_then(|()| capture(child, log_path)),
                    guard,
                );
            }
            Some(Err(e)) => tracing::warn!(
                "a spare interpreter could not become {}: {e}; starting it anew",
                plan.replica_id
            ),
            None => {}
        }
    }
    let guard = MemoryGuard::for_plan(plan, cgroups, log_path).await;
    let spawned = spawn(plan, log_path, how, guard.procs_files());
    or_outside(spawned, guard, (plan, log_path, how)).await
}

/// A run that could not start in `guard`'s cgroup: started again outside it, held by its
/// process group only (`guard` then without its cgroup, said in the log), rather than not at
/// all. When it cannot start outside either, the cgroup was not the cause: the first error
/// stands, and `guard` is left as it was (for its caller to release).
pub(super) async fn or_outside(
    spawned: std::io::Result<(Child, Capture)>,
    guard: MemoryGuard,
    (plan, log_path, how): (&ReplicaPlan, &Path, &Start<'_>),
) -> (std::io::Result<(Child, Capture)>, MemoryGuard) {
    let Err(e) = &spawned else {
        return (spawned, guard);
    };
    if guard.cgroup.is_none() {
        return (spawned, guard);
    }
    match spawn(plan, log_path, how, Vec::new()) {
        Err(_) => (spawned, guard),
        outside => (outside, guard.without_cgroup(log_path, e).await),
    }
}

/// What a spare is told to become: what the exec of `plan.argv` in its jail would have been.
fn becoming(
    plan: &ReplicaPlan,
    how: &Start<'_>,
    env: BTreeMap<String, String>,
) -> std::io::Result<Becoming> {
    let entry = how.jail.entry();
    let mut fds = Vec::new();
    let mut index_of = |fd: Option<i32>| -> std::io::Result<Option<usize>> {
        let Some(fd) = fd else {
            return Ok(None);
        };
        // SAFETY: the socket and the ruleset are open while `how` lives; the copy is owned.
        fds.push(unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?);
        Ok(Some(fds.len() - 1))
    };
    let listen_fd = index_of(how.socket_fd)?;
    let ruleset_fd = index_of(entry.ruleset_fd())?;
    let message = serde_json::json!({
        "argv": plan.argv,
        "cwd": plan.cwd,
        "env": env,
        "user": entry.user().map(|(uid, gid)| [uid, gid]),
        "parent": std::process::id(),
        "listen_fd": listen_fd,
        "ruleset_fd": ruleset_fd,
    });
    Ok(Becoming { message, fds })
}

/// Starts `plan`'s child as `how` says, in the cgroup whose `cgroup.procs` files are
/// `cgroup_procs` (none: outside any).
pub(super) fn spawn(
    plan: &ReplicaPlan,
    log_path: &Path,
    how: &Start<'_>,
    cgroup_procs: Vec<std::ffi::CString>,
) -> std::io::Result<(Child, Capture)> {
    let Start {
        socket_fd, jail, ..
    } = *how;
    let entry = jail.entry();
    let shared_dirs = jail.shared_dirs().cloned();
    let (program, args) = plan
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("the command is empty"))?;
    log_dir(log_path)?;
    let mut cmd = worker_command(program, &plan.cwd);
    cmd.args(args).envs(child_env(plan, how));
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // async-signal-safe functions (prctl, getppid, dup2, fcntl, open, write, close, setuid,
    // setgid, setgroups, unshare, mount, syscall, _exit).
    unsafe {
        cmd.pre_exec(move || {
            // Into its cgroup before it runs anything: all it starts is held (and counted) too.
            cgroup::join(&cgroup_procs)?;
            killed_first_for_memory();
            // Its own /dev/shm, /tmp... while it may still mount.
            if let Some(dirs) = &shared_dirs {
                dirs.enter()?;
            }
            // A change of user resets the parent-death signal: first the user, then the signal.
            entry.drop_user()?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = socket_fd {
                hand_over(fd, LISTEN_FD)?;
            }
            entry.restrict()?;
            // The server may have died between fork and prctl.
            if libc::getppid() == 1 {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    capture(cmd.spawn()?, log_path)
}

/// Makes the directory of a worker's log.
fn log_dir(log_path: &Path) -> std::io::Result<()> {
    match log_path.parent() {
        Some(dir) => std::fs::create_dir_all(dir),
        None => Ok(()),
    }
}

/// Starts copying `child`'s output into the run's log; kills it when that cannot be done.
fn capture(mut child: Child, log_path: &Path) -> std::io::Result<(Child, Capture)> {
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
