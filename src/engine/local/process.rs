//! What every worker process is run with, whether it starts anew (`spawn.rs`) or from a
//! spare interpreter (`spare.rs`): its command, the descriptors handed to it, and the end of
//! its process group.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

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

/// A command run the way every worker process is: in `cwd`, with nothing of the server's
/// environment (the caller adds what it gets), no stdin, its output piped, in a process group
/// of its own, killed when its handle is dropped.
pub(super) fn worker_command(program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Makes `fd` the child's descriptor `at`, kept across exec (dup2 clears close-on-exec on the
/// copy; when `fd` already is `at`, it is cleared on `fd` itself).
///
/// # Safety
/// Only between fork and exec; calls only async-signal-safe functions (dup2, fcntl).
pub(super) unsafe fn hand_over(fd: i32, at: i32) -> std::io::Result<()> {
    let handed = if fd == at {
        libc::fcntl(fd, libc::F_SETFD, 0)
    } else {
        libc::dup2(fd, at)
    };
    if handed == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
