//! Where a replica's output goes: stdout and stderr each to a file of their own, and both, in
//! the order their lines end, to the replica's log (which also holds the engine's own lines).
//! Copied by one thread per stream, so the async runtime never writes to disk. Every file is
//! capped and rotated (`rotating.rs`).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Child;

/// The files of one replica's output.
#[derive(Debug, Clone)]
pub(crate) struct OutputPaths {
    /// Both streams and the engine's lines: what `cortex logs` shows.
    pub(crate) combined: PathBuf,
    pub(crate) stdout: PathBuf,
    pub(crate) stderr: PathBuf,
}

impl OutputPaths {
    /// The files beside `<replica>.log`: `<replica>.stdout.log` and `<replica>.stderr.log`.
    pub(crate) fn of(combined: &Path) -> OutputPaths {
        OutputPaths {
            combined: combined.to_path_buf(),
            stdout: combined.with_extension("stdout.log"),
            stderr: combined.with_extension("stderr.log"),
        }
    }
}

/// The copying of one run's output; it ends when every holder of the pipes (the replica and
/// what it started) is gone.
pub(super) struct Capture {
    /// One per copying thread, sent when it has copied everything.
    done: Vec<tokio::sync::oneshot::Receiver<()>>,
}

/// How long an exit waits for the last output to be copied (a process that left the replica's
/// group may keep a pipe open for ever).
const DRAIN: Duration = Duration::from_secs(2);

impl Capture {
    /// Starts copying `child`'s piped stdout and stderr.
    pub(super) fn start(child: &mut Child, paths: &OutputPaths) -> std::io::Result<Capture> {
        let mut done = Vec::new();
        if let Some(out) = child.stdout.take() {
            let pipe = File::from(out.into_owned_fd()?);
            let files = (paths.stdout.clone(), paths.combined.clone());
            done.push(copy_thread("stdout", pipe, files)?);
        }
        if let Some(err) = child.stderr.take() {
            let pipe = File::from(err.into_owned_fd()?);
            let files = (paths.stderr.clone(), paths.combined.clone());
            done.push(copy_thread("stderr", pipe, files)?);
        }
        Ok(Capture { done })
    }

    /// Waits (a bounded time) until everything the replica wrote is in the files. A copy
    /// that goes on (a pipe kept open by a process that left the group) is left to its thread,
    /// which ends with the pipe.
    pub(super) async fn drained(self) {
        let all = futures_util::future::join_all(self.done);
        let _ = tokio::time::timeout(DRAIN, all).await;
    }
}

fn copy_thread(
    stream: &str,
    pipe: File,
    files: (PathBuf, PathBuf),
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("replica-{stream}"))
        .spawn(move || {
            copy(pipe, files);
            let _ = done_tx.send(());
        })?;
    Ok(done_rx)
}

/// How long a line begun on one stream may wait for its end before the log takes it as it
/// is (a prompt, a progress bar).
const LINE_WAIT: Duration = Duration::from_millis(200);

/// The most of a line begun that is held back for its end.
const MAX_HELD: usize = 16 * 1024;

/// Copies `pipe` to its own file as it comes, and to the combined log in whole lines: a line
/// the other stream writes meanwhile goes before or after it, never into it.
fn copy(mut pipe: File, (own, combined): (PathBuf, PathBuf)) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut held: Vec<u8> = Vec::new();
    // When the line held began: it waits for its end at most LINE_WAIT in all.
    let mut held_since = std::time::Instant::now();
    loop {
        if !held.is_empty() {
            let left = LINE_WAIT.saturating_sub(held_since.elapsed());
            if left.is_zero() || !readable_within(&pipe, left) {
                let _ = super::rotating::append(&combined, &held);
                held.clear();
                continue;
            }
        }
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = super::rotating::append(&own, &buf[..n]);
                if held.is_empty() {
                    held_since = std::time::Instant::now();
                }
                held.extend_from_slice(&buf[..n]);
                let whole = match held.iter().rposition(|&b| b == b'\n') {
                    Some(last) => last + 1,
                    None if held.len() >= MAX_HELD => held.len(),
                    None => 0,
                };
                if whole > 0 {
                    let _ = super::rotating::append(&combined, &held[..whole]);
                    held.drain(..whole);
                    held_since = std::time::Instant::now();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if !held.is_empty() {
        let _ = super::rotating::append(&combined, &held);
    }
}

/// Whether `pipe` has something to read (or has ended) within `wait`.
fn readable_within(pipe: &File, wait: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let ms = i32::try_from(wait.as_millis().max(1)).unwrap_or(i32::MAX);
    let mut fd = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, for a descriptor `pipe` keeps open.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        if n >= 0 {
            return n > 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return true; // let the read say what is wrong
        }
    }
}
