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

/// How much more likely than an ordinary process a worker is to be the one the kernel kills
/// when the machine runs out of memory (`oom_score_adj`, from -1000 to 1000): a replica that
/// grows without a `compute.mem` is killed before the server is.
const OOM_SCORE_ADJ: &[u8] = b"500";

/// Makes the calling process (and what it starts, which inherits it) the kernel's first choice
/// when the machine runs out of memory. Best effort: without `/proc` it stays as it was.
///
/// # Safety
/// Only between fork and exec; calls only async-signal-safe functions (open, write, close).
pub(super) unsafe fn killed_first_for_memory() {
    let fd = libc::open(
        c"/proc/self/oom_score_adj".as_ptr(),
        libc::O_WRONLY | libc::O_CLOEXEC,
    );
    if fd >= 0 {
        libc::write(fd, OOM_SCORE_ADJ.as_ptr().cast(), OOM_SCORE_ADJ.len());
        libc::close(fd);
    }
}

/// How a process ended, for people: `status 7`, or the signal that ended it by its name
/// (`signal SIGKILL`: an operator's `kill -9`, the kernel's OOM killer...).
pub(super) fn exit_text(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("status {code}");
    }
    let Some(signal) = status.signal() else {
        return "an unknown status".to_string();
    };
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    format!("signal {name}")
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn an_exit_is_told_by_its_status_or_its_signals_name() {
        let text = |raw| exit_text(&std::process::ExitStatus::from_raw(raw));
        assert_eq!(text(7 << 8), "status 7");
        assert_eq!(text(libc::SIGKILL), "signal SIGKILL");
        assert_eq!(text(libc::SIGSEGV | 0x80), "signal SIGSEGV");
        assert_eq!(
            text(libc::SIGRTMIN() + 1),
            format!("signal {}", libc::SIGRTMIN() + 1)
        );
    }
}
