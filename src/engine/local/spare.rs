//! Spare interpreters: python processes started before any replica needs one, which have paid
//! for the interpreter's start and the runtime's imports (most of a python replica's start),
//! and each become exactly one replica when it starts (`cortex_runtime/spare.py` is the other
//! side and says how).
//!
//! A spare runs as the server's user until it is given a replica, in a cgroup of its own where
//! the engine makes cgroups (moved there while it starts, so the replica it becomes pays
//! nothing for it): that cgroup, without a memory limit, is the run's, and holds whatever the
//! replica starts. So a spare never becomes a replica whose `compute.mem` is a cgroup's
//! limit. Given a replica, the spare enters the same confinement a replica started the usual
//! way enters between fork and exec (user, parent-death signal, no new privileges, the run's
//! Landlock ruleset, which the server made and hands over as a descriptor), and says so
//! before it takes the replica's environment and runs user code. No spare is used twice, so
//! replicas never share an interpreter's memory, address layout or hash seed.

use std::collections::BTreeMap;
use std::io::{IoSlice, Read};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use tokio::process::Child;

use super::cgroup::{Cgroup, Hierarchy};
use super::memory_guard::empty_and_remove;
use super::process::{hand_over, killed_first_for_memory, worker_command};
use super::sandbox::{Sandbox, SharedDirs};
use crate::engine::ReplicaAccess;

/// The descriptor a spare finds its socket to the server on (fd 3 is the replica's listening
/// socket, later).
const CONTROL_FD: RawFd = 4;

/// How long a spare may take to import the runtime and say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// How long a run waits for a starting spare before it starts anew.
const WAIT_AT_MOST: Duration = Duration::from_secs(2);

/// How long a spare may take to enter a replica's confinement.
const ENTER_WITHIN: Duration = Duration::from_secs(5);

/// Failed spares in a row after which no more are started.
const GIVE_UP_AFTER: u32 = 3;

/// The spares of one engine, and how to make more.
pub(super) struct Spares {
    /// The interpreter replicas run, and so the spares.
    python: String,
    /// The shim's entry file.
    shim: PathBuf,
    /// What spares start with: the part of the server's environment replicas get, the
    /// engine's owner marker, and a bytecode cache to read from.
    env: Vec<(String, String)>,
    /// What a replica's command must be for a spare to become it: `python -u <shim>`.
    argv: [String; 3],
    /// The start-time settings of `env` a replica's environment must match (see `fit`).
    settings: BTreeMap<String, String>,
    /// The machine's shared directories each spare gets its own of (see `SharedDirs`).
    shared_dirs: Option<SharedDirs>,
    /// How many are kept ready.
    keep: usize,
    /// Where each spare's cgroup is made (`None`: spares, like runs, are in none).
    cgroups: Option<Arc<Hierarchy>>,
    slot: Mutex<Slot>,
    /// Told each time a spare is ready or failed to start.
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct Slot {
    ready: Vec<Spare>,
    starting: usize,
    /// Runs waiting for a starting spare (each waits for one of its own).
    waiting: usize,
    failures: u32,
    /// The server is stopping: no more are started.
    closed: bool,
}

impl Slot {
    /// A ready spare that is still alive (the cgroups of dead ones are emptied and removed).
    fn pop_alive(&mut self) -> Option<Spare> {
        while let Some(mut spare) = self.ready.pop() {
            if matches!(spare.child.try_wait(), Ok(None)) {
                return Some(spare);
            }
            if let Some(cgroup) = spare.cgroup {
                cgroup.kill_all();
                cgroup.remove();
            }
        }
        None
    }
}

/// One started spare, ready to become a replica.
struct Spare {
    child: Child,
    control: UnixStream,
    /// Its cgroup, which becomes the run's.
    cgroup: Option<Cgroup>,
}

/// What a spare becomes: the run's start, as JSON, and the descriptors it names (copies,
/// so that they outlive a start that is given up half-way).
pub(super) struct Becoming {
    pub message: serde_json::Value,
    pub fds: Vec<OwnedFd>,
}

/// A spare become a replica: its process, and the cgroup it has been in since it started.
pub(super) struct Became {
    pub child: Child,
    pub cgroup: Option<Cgroup>,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spares")
            .field("python", &self.python)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl Spares {
    /// Spares of `python` running the shim at `shim`, `keep` of them ready at a time, each in
    /// a cgroup of its own under `cgroups`, reading `sandbox`'s bytecode cache and with its
    /// own shared directories.
    pub(super) fn new(
        (python, shim): (String, PathBuf),
        owner: (String, String),
        sandbox: &Sandbox,
        keep: usize,
        cgroups: Option<Arc<Hierarchy>>,
    ) -> Arc<Spares> {
        let mut env = super::sandbox::inherited_env();
        env.push(owner);
        // No user site directory, as for a replica (whose HOME is new and empty).
        env.push(("HOME".into(), "/nonexistent".into()));
        if let Some(seed) = sandbox.pycache_seed() {
            env.push(("PYTHONPYCACHEPREFIX".into(), seed.display().to_string()));
        }
        let argv = [python.clone(), "-u".into(), shim.display().to_string()];
        let settings = start_settings(env.iter().map(|(k, v)| (k, v)));
        Arc::new(Spares {
            python,
            shim,
            env,
            argv,
            settings,
            shared_dirs: sandbox.shared_dirs().cloned(),
            keep,
            cgroups,
            slot: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        })
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a spare can become the replica that `argv` with `env` would start: the same
    /// program, and the same settings read from the environment when a process starts (by the
    /// interpreter, the dynamic loader, libc's allocator and locale), but for those the spare
    /// takes on when it becomes the replica.
    pub(super) fn fit(&self, argv: &[String], env: &BTreeMap<String, String>) -> bool {
        argv == self.argv && start_settings(env.iter()) == self.settings
    }

    /// Whether a spare's own shared directories (`/tmp`...) hide none of what a run with
    /// `access` must reach (a `--data-root` under `/tmp`): else the run starts anew, keeping
    /// the machine's.
    pub(super) fn reaches(&self, access: &ReplicaAccess) -> bool {
        self.shared_dirs
            .as_ref()
            .is_none_or(|dirs| !dirs.hide_any(access.read.iter().chain(access.write.iter())))
    }

    /// How many are ready, and how many starting.
    pub(super) fn counts(&self) -> (usize, usize) {
        let slot = self.slot();
        (slot.ready.len(), slot.starting)
    }

    /// A spare (see [`Spares::take`]) become the run `run` makes: `None` when there is none.
    /// Failures are counted, and the next spare starts once this one is the replica (or
    /// gone), so that its start does not compete with the replica's.
    pub(super) async fn make_replica(
        self: &Arc<Self>,
        run: impl FnOnce() -> std::io::Result<Becoming>,
    ) -> Option<std::io::Result<Became>> {
        let became = match self.take().await {
            Some(spare) => Some(match run() {
                Ok(run) => spare.become_replica(run).await,
                Err(e) => Err(e),
            }),
            None => None,
        };
        match &became {
            // Failures so far were not in a row.
            Some(Ok(_)) => self.slot().failures = 0,
            Some(Err(e)) => self.failed(e),
            None => {}
        }
        self.fill();
        became
    }

    /// Counts a spare that would not start or become its replica: after [`GIVE_UP_AFTER`] in a
    /// row, no more are started.
    fn failed(&self, why: &std::io::Error) {
        let mut slot = self.slot();
        slot.failures += 1;
        if slot.failures == GIVE_UP_AFTER {
            tracing::warn!(
                "python replicas start without spare interpreters from now on: spares of {} failed {GIVE_UP_AFTER} times in a row (the last: {why})",
                self.python
            );
        }
    }

    /// Starts spares until `keep` are ready or starting (in the background).
    pub(super) fn fill(self: &Arc<Self>) {
        let wanted = {
            let mut slot = self.slot();
            if slot.failures >= GIVE_UP_AFTER || slot.closed {
                return;
            }
            let wanted = self.keep.saturating_sub(slot.ready.len() + slot.starting);
            slot.starting += wanted;
            wanted
        };
        for _ in 0..wanted {
            let spares = self.clone();
            tokio::spawn(async move {
                let made = spares.start().await;
                let _told = Told(&spares.changed);
                let mut slot = spares.slot();
                slot.starting -= 1;
                match made {
                    Ok(spare) => slot.ready.push(spare),
                    Err(e) => {
                        drop(slot);
                        spares.failed(&e);
                    }
                }
            });
        }
    }

    /// Stops the ready spares (and removes their cgroups) and starts no more: the server is
    /// stopping.
    pub(super) async fn stop(&self) {
        let ready = {
            let mut slot = self.slot();
            slot.closed = true;
            std::mem::take(&mut slot.ready)
        };
        for mut spare in ready {
            let _ = spare.child.start_kill();
            let _ = spare.child.wait().await;
            if let Some(cgroup) = &spare.cgroup {
                empty_and_remove(cgroup).await;
            }
        }
    }

    /// A ready spare that is still alive; else, when one is starting that no other run waits
    /// for, that one once it is ready (it has a head start on a process started now); else
    /// none.
    async fn take(&self) -> Option<Spare> {
        let deadline = tokio::time::Instant::now() + WAIT_AT_MOST;
        let mut waits = false;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut slot = self.slot();
                if let Some(spare) = slot.pop_alive() {
                    slot.waiting -= usize::from(waits);
                    return Some(spare);
                }
                if !waits && slot.starting > slot.waiting {
                    slot.waiting += 1;
                    waits = true;
                } else if waits && slot.starting < slot.waiting {
                    // The one waited for failed to start.
                    slot.waiting -= 1;
                    return None;
                } else if !waits {
                    return None;
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let mut slot = self.slot();
                if let Some(spare) = slot.pop_alive() {
                    slot.waiting -= 1;
                    return Some(spare);
                }
                slot.waiting -= 1;
                return None;
            }
        }
    }

    /// Starts one spare in a cgroup of its own (where the engine makes them) and waits until it
    /// has imported the runtime.
    async fn start(&self) -> std::io::Result<Spare> {
        let cgroup = match self.cgroups.clone() {
            Some(hierarchy) => Some(
                tokio::task::spawn_blocking(move || hierarchy.create("spare", None))
                    .await
                    .map_err(std::io::Error::other)??,
            ),
            None => None,
        };
        match self.start_in(cgroup.as_ref()).await {
            Ok((child, control)) => Ok(Spare {
                child,
                control,
                cgroup,
            }),
            Err(e) => {
                if let Some(cgroup) = &cgroup {
                    empty_and_remove(cgroup).await;
                }
                Err(e)
            }
        }
    }

    /// Starts one spare, moves it into `cgroup` while its interpreter starts (a move costs the
    /// kernel a grace period, milliseconds no run waits for this way; the spare runs only the
    /// runtime's imports until it is given a replica) and waits until it has imported the
    /// runtime (a spare that does not is killed). Called on the runtime's worker threads
    /// (which live as long as the server): the parent-death signal is tied to the thread that
    /// forks.
    async fn start_in(&self, cgroup: Option<&Cgroup>) -> std::io::Result<(Child, UnixStream)> {
        let (ours, theirs) = UnixStream::pair()?;
        let handed = theirs.as_raw_fd();
        let mut cmd = worker_command(&self.python, Path::new("/"));
        cmd.arg("-u")
            .arg(&self.shim)
            .arg("--spare")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("CORTEX_SPARE_FD", CONTROL_FD.to_string());
        let shared_dirs = self.shared_dirs.clone();
        // SAFETY: the closure runs in the child between fork and exec and only calls
        // async-signal-safe functions (open, write, close, unshare, mount, prctl, fcntl, dup2,
        // getppid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                killed_first_for_memory();
                // Its own /dev/shm, /tmp...: the replica it becomes keeps them.
                if let Some(dirs) = &shared_dirs {
                    dirs.enter()?;
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                hand_over(handed, CONTROL_FD)?;
                if libc::getppid() == 1 {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the spare exited at once"))?;
        let cgroup = cgroup.cloned();
        let control = tokio::task::spawn_blocking(move || {
            if let Some(cgroup) = &cgroup {
                cgroup.adopt(pid)?;
            }
            expect_byte(&ours, b'R', READY_WITHIN)?;
            Ok::<_, std::io::Error>(ours)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok((child, control))
    }
}

/// Wakes every run waiting for a spare when dropped (after the slot's lock, which is taken
/// later, is released).
struct Told<'a>(&'a tokio::sync::Notify);

impl Drop for Told<'_> {
    fn drop(&mut self) {
        self.0.notify_waiters();
    }
}

/// The variables of `vars` that a spare must already have started with.
fn start_settings<'a>(
    vars: impl Iterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    vars.filter(|(k, _)| read_at_start(k) && !taken_on_becoming(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Variables a process reads when it starts, whose later change it does not see: the
/// interpreter's, the dynamic loader's, the allocator's, the locale and the time zone.
fn read_at_start(var: &str) -> bool {
    ["PYTHON", "LD_", "MALLOC_", "LC_"]
        .iter()
        .any(|p| var.starts_with(p))
        || matches!(var, "GLIBC_TUNABLES" | "LANG" | "LANGUAGE" | "TZ")
}

/// The start-time settings a spare takes from the replica's environment when it becomes it.
fn taken_on_becoming(var: &str) -> bool {
    matches!(var, "PYTHONPATH" | "PYTHONPYCACHEPREFIX")
}

impl Spare {
    /// Hands the spare its run and waits until it is in the run's confinement; the child is
    /// then the replica. On failure the spare is killed (and its cgroup removed).
    async fn become_replica(self, run: Becoming) -> std::io::Result<Became> {
        let Spare {
            mut child,
            control,
            cgroup,
        } = self;
        let body = run.message.to_string().into_bytes();
        let entered = tokio::task::spawn_blocking(move || {
            send(&control, &body, &run.fds)?;
            expect_byte(&control, b'A', ENTER_WITHIN)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match entered {
            Ok(()) => Ok(Became { child, cgroup }),
            Err(e) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                if let Some(cgroup) = &cgroup {
                    empty_and_remove(cgroup).await;
                }
                Err(match last_words(&mut child).await {
                    Some(line) => std::io::Error::other(line),
                    None => e,
                })
            }
        }
    }
}

/// The last line the spare wrote on stderr (its `cortex: error: ...`), once it is gone.
async fn last_words(child: &mut Child) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut stderr = child.stderr.take()?.take(64 * 1024);
    let mut text = Vec::new();
    let read = stderr.read_to_end(&mut text);
    tokio::time::timeout(Duration::from_millis(500), read)
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_string)
}

/// Writes `body` after its 4-byte big-endian length, `fds` attached to the first bytes.
fn send(control: &UnixStream, body: &[u8], fds: &[OwnedFd]) -> std::io::Result<()> {
    let length = u32::try_from(body.len())
        .map_err(|_| std::io::Error::other("the replica's start is too large"))?
        .to_be_bytes();
    control.set_write_timeout(Some(ENTER_WITHIN))?;
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() && !ancillary.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(std::io::Error::other("too many descriptors for a spare"));
    }
    let whole = [&length[..], body].concat();
    let mut sent = rustix::net::sendmsg(
        control,
        &[IoSlice::new(&whole)],
        &mut ancillary,
        SendFlags::NOSIGNAL,
    )?;
    while sent < whole.len() {
        sent += rustix::net::send(control, &whole[sent..], SendFlags::NOSIGNAL)?;
    }
    Ok(())
}

/// Reads one byte from the spare and checks it is `expected`.
fn expect_byte(control: &UnixStream, expected: u8, within: Duration) -> std::io::Result<()> {
    control.set_read_timeout(Some(within))?;
    let mut byte = [0u8; 1];
    (&*control).read_exact(&mut byte)?;
    if byte[0] == expected {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "the spare said {:?} where {:?} was expected",
            byte[0] as char, expected as char
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spares() -> Arc<Spares> {
        Spares::new(
            ("/usr/bin/python3".into(), "/rt/cortex_shim.py".into()),
            ("CORTEX_ENGINE_OWNER".into(), "/data".into()),
            &Sandbox::new(crate::engine::local::sandbox::SandboxConfig {
                pycache_seed: Some("/seed".into()),
                ..Default::default()
            }),
            1,
            None,
        )
    }

    /// The environment a replica of the same server would get, with `extra` over it.
    fn env(spares: &Spares, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = spares.env.iter().cloned().collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    }

    #[test]
    fn a_spare_fits_only_the_shim_on_its_interpreter_with_its_interpreter_settings() {
        let s = spares();
        let shim = |python: &str| [python, "-u", "/rt/cortex_shim.py"].map(String::from);
        // What it takes on when it becomes the replica may differ.
        let run = env(
            &s,
            &[
                ("PYTHONPATH", "/project"),
                ("PYTHONPYCACHEPREFIX", "/scratch/pycache"),
                ("HOME", "/scratch"),
                ("CORTEX_PORT", "1234"),
                ("MODEL_NAME", "iris"),
            ],
        );
        assert!(s.fit(&shim("/usr/bin/python3"), &run));
        // Another interpreter (a project's python=3.X, a virtualenv's), or not the shim.
        assert!(!s.fit(&shim("/usr/bin/python3.8"), &run));
        assert!(!s.fit(&["/usr/bin/python3".to_string(), "app.py".into()], &run));
        let prepare = [shim("/usr/bin/python3").to_vec(), vec!["--prepare".into()]].concat();
        assert!(!s.fit(&prepare, &run));
        // Settings read when a process starts, which a spare has already started with.
        for (k, v) in [
            ("PYTHONHASHSEED", "0"),
            ("PYTHONOPTIMIZE", "1"),
            ("PYTHONHOME", "/x"),
            ("PYTHONDONTWRITEBYTECODE", "yes"),
            ("TZ", "EST5EDT"),
            ("LC_ALL", "C.UTF-8"),
            ("LANG", "de_DE.UTF-8"),
            ("LD_LIBRARY_PATH", "/opt/lib"),
            ("LD_PRELOAD", "/opt/lib/x.so"),
            ("MALLOC_ARENA_MAX", "2"),
            ("GLIBC_TUNABLES", "glibc.malloc.check=3"),
        ] {
            assert!(
                !s.fit(&shim("/usr/bin/python3"), &env(&s, &[(k, v)])),
                "{k}"
            );
        }
    }
}
