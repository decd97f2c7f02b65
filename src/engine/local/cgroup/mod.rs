//! Per-run cgroups. Each run of a replica or batch worker (and each preparation, and each
//! spare interpreter waiting to become a replica) is in a cgroup of its own, made under the
//! server's own memory cgroup: cgroup v2 when the memory controller is already enabled for the
//! server's children (the server never changes a cgroup it does not own; v2 forbids it for a
//! cgroup that holds processes anyway, unless it is the root), else the v1 memory hierarchy.
//! A process cannot leave its cgroup without write access to another one's `cgroup.procs`
//! (the replicas' user has none), so whatever a run starts, in whatever session or process
//! group, is found there and killed when the run ends. With `compute.mem`, the cgroup is also
//! limited: the kernel keeps the run's processes within the limit and OOM-kills them past it,
//! and counts those kills, which is how the engine tells a replica killed for memory from one
//! that crashed. Each is also limited to `--max-replica-pids` processes and threads where the
//! pids controller is there to use (v2: delegated to the server's cgroup; v1: a second cgroup
//! of the same name in the pids hierarchy, which a run joins with the memory one), whose
//! refused forks it counts. Where no cgroup can be made (no permission, no memory controller), runs are
//! held by their process group only and `memory.rs` samples their resident memory instead.
//! `CORTEX_MEMORY_LIMITS=sample` makes no cgroup at all, as where none can be made.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mounts::own_dir;

mod mounts;

/// Makes every cgroup name this server uses unique (replica ids may repeat).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Which cgroup interface a hierarchy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }

    fn events_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        }
    }

    fn peak_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        }
    }
}

/// Where replicas' cgroups are made: the server's own memory cgroup.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    version: Version,
    parent: PathBuf,
    /// How many processes and threads each cgroup made here may hold, where the kernel can
    /// be told (`--max-replica-pids`).
    pids: Option<PidsLimit>,
}

/// Where a run's number of processes and threads is limited.
#[derive(Debug, Clone)]
struct PidsLimit {
    /// v1: the server's own directory in the pids hierarchy, where each run gets a second
    /// cgroup of the same name; v2: `None`, the run's one cgroup is limited.
    parent: Option<PathBuf>,
    max: u64,
}

impl Hierarchy {
    /// The hierarchy this server may make memory cgroups in, if any (`None` also when
    /// `CORTEX_MEMORY_LIMITS=sample`), each cgroup limited to `max_pids` processes and threads
    /// where the pids controller is there for the server to use (see [`Hierarchy::max_pids`]).
    pub fn detect(max_pids: Option<u64>) -> Option<Hierarchy> {
        if std::env::var("CORTEX_MEMORY_LIMITS").is_ok_and(|v| v == "sample") {
            return None;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let v2 = own_dir(&mountinfo, &cgroups, Version::V2, "memory")
            .map(|parent| Hierarchy {
                version: Version::V2,
                parent,
                pids: None,
            })
            .filter(|h| h.v2_delegates("memory"));
        let mut found = v2.or_else(|| {
            own_dir(&mountinfo, &cgroups, Version::V1, "memory").map(|parent| Hierarchy {
                version: Version::V1,
                parent,
                pids: None,
            })
        })?;
        if let Some(max) = max_pids {
            let pids = match found.version {
                Version::V2 => found
                    .v2_delegates("pids")
                    .then_some(PidsLimit { parent: None, max }),
                Version::V1 => {
                    own_dir(&mountinfo, &cgroups, Version::V1, "pids").map(|dir| PidsLimit {
                        parent: Some(dir),
                        max,
                    })
                }
            };
            let limited = Hierarchy {
                pids,
                ..found.clone()
            };
            if limited.pids.is_some() && limited.usable() {
                return Some(limited);
            }
        }
        found.pids = None;
        found.usable().then_some(found)
    }

    /// The processes and threads each run may have, where the kernel holds it to that.
    pub fn max_pids(&self) -> Option<u64> {
        self.pids.as_ref().map(|p| p.max)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn parent(&self) -> &Path {
        &self.parent
    }

    /// v2: whether children of the server's cgroup get `controller`.
    fn v2_delegates(&self, controller: &str) -> bool {
        std::fs::read_to_string(self.parent.join("cgroup.subtree_control"))
            .is_ok_and(|text| text.split_whitespace().any(|c| c == controller))
    }

    /// Whether a cgroup with a limit can be made here and a process can join it (tried once
    /// with `true`, then removed).
    fn usable(&self) -> bool {
        let Ok(cgroup) = self.create("probe", Some(64 << 20)) else {
            return false;
        };
        let mut cmd = std::process::Command::new("true");
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let joined = cgroup.status_of(&mut cmd).is_ok_and(|s| s.success());
        cgroup.remove();
        joined
    }

    /// A new cgroup for (a run of) replica `name` whose processes may use at most `limit`
    /// bytes (`None`: no limit of its own; the cgroup holds the processes), and at most the
    /// hierarchy's number of processes and threads.
    pub fn create(&self, name: &str, limit: Option<u64>) -> std::io::Result<Cgroup> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("cortex-{}-{n}-{name}", std::process::id());
        let dir = self.parent.join(&name);
        std::fs::create_dir(&dir)?;
        let mut cgroup = Cgroup {
            version: self.version,
            dir,
            pids: None,
        };
        let configured = (|| {
            if let Some(limit) = limit {
                cgroup.configure(limit)?;
            }
            if let Some(pids) = &self.pids {
                let dir = match &pids.parent {
                    Some(parent) => {
                        let dir = parent.join(&name);
                        std::fs::create_dir(&dir)?;
                        dir
                    }
                    None => cgroup.dir.clone(),
                };
                cgroup.pids = Some(dir.clone());
                std::fs::write(dir.join("pids.max"), pids.max.to_string())?;
            }
            Ok(())
        })();
        if let Err(e) = configured {
            cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// The cgroups that servers which are gone left behind, with whatever still runs in them
    /// (what their replicas started, when such a server was killed): each is emptied and
    /// removed. Returns how many processes were killed. Blocking: a cgroup can be removed only
    /// once its processes have exited, which is waited for a little while (one still busy is
    /// left for the next server).
    pub fn clear_stale(&self) -> usize {
        let v1_pids = self.pids.as_ref().and_then(|p| p.parent.as_deref());
        let mut names: Vec<std::ffi::OsString> = [Some(self.parent.as_path()), v1_pids]
            .into_iter()
            .flatten()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flat_map(|entries| entries.flatten().map(|entry| entry.file_name()))
            .filter(|name| left_by_a_gone_server(name))
            .collect();
        names.sort();
        names.dedup();
        let stale: Vec<Cgroup> = names
            .iter()
            .map(|name| Cgroup {
                version: self.version,
                dir: self.parent.join(name),
                pids: v1_pids.map(|dir| dir.join(name)),
            })
            .collect();
        let killed = stale.iter().map(Cgroup::kill_all).sum();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut left = stale;
        while !left.is_empty() && std::time::Instant::now() < deadline {
            left.retain(|cgroup| {
                cgroup.kill_all();
                !cgroup.remove()
            });
            if !left.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        killed
    }
}

/// Whether a directory named `name` is a cgroup a server made (`cortex-<pid>-...`) whose
/// server is gone.
fn left_by_a_gone_server(name: &std::ffi::OsStr) -> bool {
    let pid = name
        .to_str()
        .and_then(|n| n.strip_prefix("cortex-"))
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok());
    pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// One run's cgroup (or one spare's, until it becomes a run). A handle: cloning it neither
/// makes nor removes a cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    version: Version,
    dir: PathBuf,
    /// Where its `pids.*` files are: `dir` itself (v2), a directory of the same name in the
    /// pids hierarchy (v1), or `None` where its processes are not counted.
    pids: Option<PathBuf>,
}

impl Cgroup {
    fn configure(&self, limit: u64) -> std::io::Result<()> {
        std::fs::write(self.dir.join(self.version.limit_file()), limit.to_string())?;
        match self.version {
            // Swap counts too where it is accounted (memsw may not be lower than the limit).
            Version::V1 => {
                let _ = std::fs::write(
                    self.dir.join("memory.memsw.limit_in_bytes"),
                    limit.to_string(),
                );
            }
            // Past the limit the whole replica is killed, not one of its processes, and it
            // may not swap instead.
            Version::V2 => {
                let _ = std::fs::write(self.dir.join("memory.oom.group"), "1");
                let _ = std::fs::write(self.dir.join("memory.swap.max"), "0");
            }
        }
        Ok(())
    }

    /// The directories a process is in when it is in this cgroup: its own, and on v1 the one
    /// of the same name in the pids hierarchy.
    fn dirs(&self) -> impl Iterator<Item = &Path> {
        let beside = self.pids.as_deref().filter(|p| *p != self.dir);
        std::iter::once(self.dir.as_path()).chain(beside)
    }

    /// The files a process joins the cgroup by writing `0` to (for a child between fork and
    /// exec, before it allocates anything: see [`join`]).
    pub fn procs_files(&self) -> Vec<CString> {
        self.dirs()
            .map(|dir| {
                CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap_or_default()
            })
            .collect()
    }

    /// Moves process `pid` (all its threads) into the cgroup. Blocking: the kernel may wait a
    /// grace period.
    pub fn adopt(&self, pid: u32) -> std::io::Result<()> {
        for dir in self.dirs() {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Runs `cmd` in this cgroup (joined before exec) and waits for it (a blocking call).
    fn status_of(
        &self,
        cmd: &mut std::process::Command,
    ) -> std::io::Result<std::process::ExitStatus> {
        let procs = self.procs_files();
        // SAFETY: `join` only makes async-signal-safe calls; the paths were made before the fork.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || join(&procs));
        }
        cmd.status()
    }

    /// How many times the kernel OOM-killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join(self.version.events_file()))
            .map(|text| counter(&text, "oom_kill"))
            .unwrap_or(0)
    }

    /// Whether a fork or a new thread of its processes was refused for the cgroup's limit on
    /// their number: how many times, and that limit.
    pub fn pids_refused(&self) -> Option<(u64, u64)> {
        let dir = self.pids.as_ref()?;
        let events = std::fs::read_to_string(dir.join("pids.events")).ok()?;
        let max = std::fs::read_to_string(dir.join("pids.max")).ok()?;
        let times = counter(&events, "max");
        (times > 0).then(|| (times, max.trim().parse().unwrap_or(0)))
    }

    /// The most memory its processes used at once, in bytes, where the kernel says (v2 before
    /// Linux 5.19 does not).
    pub fn peak(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(self.version.peak_file()))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGKILLs every process in the cgroup (those that left the run's process group or
    /// session too), all at once where the kernel can (v2's `cgroup.kill`); returns how many
    /// were signalled. A process that forks while it is killed may add one the next call finds:
    /// call again until the cgroup can be removed.
    pub fn kill_all(&self) -> usize {
        if self.version == Version::V2 {
            let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        }
        // Each of its processes is in both directories, unless one of them is gone already.
        let mut pids: Vec<i32> = self
            .dirs()
            .filter_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        for pid in &pids {
            // SAFETY: kill(2) sends a signal; it touches no memory.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        pids.len()
    }

    /// Removes the cgroup, from each hierarchy it is in (once its processes are gone; a
    /// failure leaves it for the next server's `clear_stale`). True when it is gone.
    pub fn remove(&self) -> bool {
        self.dirs()
            .map(|dir| std::fs::remove_dir(dir).is_ok() || !dir.exists())
            .filter(|&gone| !gone)
            .count()
            == 0
    }

    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The count on the `name N` line of a flat keyed file such as `memory.events` (v2),
/// `memory.oom_control` (v1) or `pids.events`.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Moves the calling process into the cgroup whose `cgroup.procs` files are `procs` (for a
/// child between fork and exec: only async-signal-safe calls, no allocation).
pub fn join(procs: &[CString]) -> std::io::Result<()> {
    for file in procs {
        // SAFETY: open, write and close on a NUL-terminated path and a static buffer.
        unsafe {
            let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(err);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_either_file() {
        assert_eq!(
            counter("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            3
        );
        assert_eq!(
            counter(
                "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 1\n",
                "oom_kill"
            ),
            1
        );
        assert_eq!(counter("", "oom_kill"), 0);
        assert_eq!(counter("max 7\n", "max"), 7);
    }

    /// On a machine where the server may make memory cgroups, a process over the limit is
    /// killed by the kernel and the kill is counted. Elsewhere there is nothing to run.
    #[test]
    fn a_process_over_the_limit_is_oom_killed_and_counted() {
        let Some(hierarchy) = Hierarchy::detect(None) else {
            eprintln!("no memory cgroup can be made here: the sampling fallback is tested instead");
            return;
        };
        let cgroup = hierarchy.create("unit-test", Some(32 << 20)).unwrap();
        let mut cmd = std::process::Command::new("python3");
        cmd.args(["-c", "b = bytearray(256 << 20)"]);
        let status = cgroup.status_of(&mut cmd).unwrap();
        assert!(!status.success());
        assert_eq!(cgroup.oom_kills(), 1);
        assert!(
            cgroup.peak().is_some_and(|p| p > 1 << 20),
            "{:?}",
            cgroup.peak()
        );
        assert_eq!(cgroup.kill_all(), 0);
        assert!(cgroup.remove());
        assert!(!cgroup.dir().exists());
        // Names never repeat.
        let a = hierarchy.create("same", Some(32 << 20)).unwrap();
        let b = hierarchy.create("same", None).unwrap();
        assert_ne!(a.dir(), b.dir());
        assert!(a.remove() && b.remove());
    }

    /// A cgroup without a limit holds what its process started in a session of its own after
    /// that process exited, and `kill_all` ends it.
    #[test]
    fn what_left_its_session_is_held_and_killed() {
        let Some(hierarchy) = Hierarchy::detect(None) else {
            eprintln!("skipped: no cgroup can be made here");
            return;
        };
        let cgroup = hierarchy.create("unit-test-held", None).unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "setsid -f sleep 4243"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        assert!(cgroup.status_of(&mut cmd).unwrap().success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut killed = 0;
        while !cgroup.remove() {
            assert!(
                std::time::Instant::now() < deadline,
                "the cgroup never emptied"
            );
            killed += cgroup.kill_all();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(killed >= 1, "the detached sleep was not in the cgroup");
    }

    /// Where the pids controller is there to use, a run's cgroup counts its processes in both
    /// hierarchies (v1), refuses a fork past its limit and says so; a leftover of a gone server
    /// is removed from each hierarchy, also one only the pids hierarchy still has.
    #[test]
    fn forks_past_the_pids_limit_are_refused_and_counted() {
        let Some(hierarchy) = Hierarchy::detect(Some(8)).filter(|h| h.max_pids().is_some()) else {
            eprintln!("skipped: no pids cgroup can be made here");
            return;
        };
        let cgroup = hierarchy.create("unit-test-pids", None).unwrap();
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 0.2 & done; wait",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        let _ = cgroup.status_of(&mut cmd).unwrap();
        let (times, max) = cgroup.pids_refused().expect("no fork was refused");
        assert!(times >= 1 && max == 8, "{times} {max}");
        // sh gave up at the refused fork, leaving the sleeps it started.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !cgroup.remove() {
            assert!(
                std::time::Instant::now() < deadline,
                "the cgroup never emptied"
            );
            cgroup.kill_all();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(cgroup.dirs().all(|dir| !dir.exists()));

        // A pids directory left by a server that is gone (pid 0 is never a process's).
        if let Some(parent) = hierarchy.pids.as_ref().and_then(|p| p.parent.clone()) {
            let leftover = parent.join("cortex-999999999-0-unit-test-left");
            std::fs::create_dir(&leftover).unwrap();
            hierarchy.clear_stale();
            assert!(!leftover.exists());
        }
    }
}
