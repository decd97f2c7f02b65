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
//! that crashed. Where no cgroup can be made (no permission, no memory controller), runs are
//! held by their process group only and `memory.rs` samples their resident memory instead.
//! `CORTEX_MEMORY_LIMITS=sample` makes no cgroup at all, as where none can be made.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Hierarchy {
    /// The hierarchy this server may make memory cgroups in, if any (`None` also when
    /// `CORTEX_MEMORY_LIMITS=sample`).
    pub fn detect() -> Option<Hierarchy> {
        if std::env::var("CORTEX_MEMORY_LIMITS").is_ok_and(|v| v == "sample") {
            return None;
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let v2 = own_dir(&mountinfo, &cgroups, Version::V2)
            .map(|parent| Hierarchy {
                version: Version::V2,
                parent,
            })
            .filter(|h| h.v2_delegates_memory());
        let found = v2.or_else(|| {
            own_dir(&mountinfo, &cgroups, Version::V1).map(|parent| Hierarchy {
                version: Version::V1,
                parent,
            })
        })?;
        found.usable().then_some(found)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn parent(&self) -> &Path {
        &self.parent
    }

    /// v2: whether children of the server's cgroup get the memory controller.
    fn v2_delegates_memory(&self) -> bool {
        std::fs::read_to_string(self.parent.join("cgroup.subtree_control"))
            .is_ok_and(|text| text.split_whitespace().any(|c| c == "memory"))
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
    /// bytes (`None`: no limit of its own; the cgroup holds the processes).
    pub fn create(&self, name: &str, limit: Option<u64>) -> std::io::Result<Cgroup> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = self
            .parent
            .join(format!("cortex-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir(&dir)?;
        let cgroup = Cgroup {
            version: self.version,
            dir,
        };
        if let Some(limit) = limit {
            if let Err(e) = cgroup.configure(limit) {
                cgroup.remove();
                return Err(e);
            }
        }
        Ok(cgroup)
    }

    /// The cgroups that servers which are gone left behind, with whatever still runs in them
    /// (what their replicas started, when such a server was killed): each is emptied and
    /// removed. Returns how many processes were killed. Blocking: a cgroup can be removed only
    /// once its processes have exited, which is waited for a little while (one still busy is
    /// left for the next server).
    pub fn clear_stale(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.parent) else {
            return 0;
        };
        let stale: Vec<Cgroup> = entries
            .flatten()
            .filter(|entry| left_by_a_gone_server(&entry.file_name()))
            .map(|entry| Cgroup {
                version: self.version,
                dir: entry.path(),
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

    /// The file a process joins the cgroup by writing `0` to (for a child between fork and
    /// exec, before it allocates anything).
    pub fn procs_file(&self) -> CString {
        CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap_or_default()
    }

    /// Moves process `pid` (all its threads) into the cgroup. Blocking: the kernel may wait a
    /// grace period.
    pub fn adopt(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// Runs `cmd` in this cgroup (joined before exec) and waits for it (a blocking call).
    fn status_of(
        &self,
        cmd: &mut std::process::Command,
    ) -> std::io::Result<std::process::ExitStatus> {
        let procs = self.procs_file();
        // SAFETY: `join` only makes async-signal-safe calls; the path was made before the fork.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || join(&procs));
        }
        cmd.status()
    }

    /// How many times the kernel OOM-killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join(self.version.events_file()))
            .map(|text| oom_kill_count(&text))
            .unwrap_or(0)
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
        let Ok(text) = std::fs::read_to_string(self.dir.join("cgroup.procs")) else {
            return 0;
        };
        let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        for pid in &pids {
            // SAFETY: kill(2) sends a signal; it touches no memory.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        pids.len()
    }

    /// Removes the cgroup (once its processes are gone; a failure leaves it for the next
    /// server's `clear_stale`). True when it is gone.
    pub fn remove(&self) -> bool {
        std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists()
    }

    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The `oom_kill N` line of `memory.events` (v2) or `memory.oom_control` (v1).
fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The directory of this process's cgroup in the hierarchy of `version` (the memory one for
/// v1), from `/proc/self/mountinfo` and `/proc/self/cgroup`.
fn own_dir(mountinfo: &str, cgroups: &str, version: Version) -> Option<PathBuf> {
    let own_path = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        matches.then(|| path.to_string())
    })?;
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs_fields = fs.split_whitespace();
        let fstype = fs_fields.next()?;
        let super_options = fs_fields.nth(1).unwrap_or("");
        let matches = match version {
            Version::V2 => fstype == "cgroup2",
            Version::V1 => fstype == "cgroup" && super_options.split(',').any(|o| o == "memory"),
        };
        if !matches {
            return None;
        }
        let fields: Vec<&str> = mount.split_whitespace().collect();
        let (root, mount_point) = (*fields.get(3)?, *fields.get(4)?);
        // The mount may show a subtree (a container's view): the path is relative to it.
        let relative = if root == "/" {
            own_path.as_str()
        } else {
            own_path
                .strip_prefix(root)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))?
        };
        let dir = Path::new(mount_point).join(relative.trim_start_matches('/'));
        dir.is_dir().then_some(dir)
    })
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `procs` (for a child
/// between fork and exec: only async-signal-safe calls).
pub fn join(procs: &CString) -> std::io::Result<()> {
    // SAFETY: open, write and close on a NUL-terminated path and a static buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn the_servers_own_cgroup_is_found_per_version() {
        let cgroups = "4:memory:/\n1:cpu:/\n0::/\n";
        assert_eq!(
            own_dir(MOUNTINFO, cgroups, Version::V1),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        // Only found where the directory exists on this machine: the parsing is what is
        // tested here, so the v2 mount is checked through a path every machine has.
        let mounted_at_root = "41 31 0:38 / / rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_dir(mounted_at_root, "0::/tmp\n", Version::V2),
            Some(PathBuf::from("/tmp"))
        );
        assert_eq!(own_dir(mounted_at_root, "0::/tmp\n", Version::V1), None);
        assert_eq!(own_dir("", cgroups, Version::V1), None);
    }

    #[test]
    fn a_mount_of_a_subtree_is_followed() {
        let mountinfo = "41 31 0:38 /outer / rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_dir(mountinfo, "0::/outer/tmp\n", Version::V2),
            Some(PathBuf::from("/tmp"))
        );
        assert_eq!(own_dir(mountinfo, "0::/elsewhere\n", Version::V2), None);
        assert_eq!(own_dir(mountinfo, "0::/outerx/tmp\n", Version::V2), None);
    }

    #[test]
    fn oom_kills_are_read_from_either_file() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 1\n"),
            1
        );
        assert_eq!(oom_kill_count(""), 0);
    }

    /// On a machine where the server may make memory cgroups, a process over the limit is
    /// killed by the kernel and the kill is counted. Elsewhere there is nothing to run.
    #[test]
    fn a_process_over_the_limit_is_oom_killed_and_counted() {
        let Some(hierarchy) = Hierarchy::detect() else {
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
        let Some(hierarchy) = Hierarchy::detect() else {
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
}
