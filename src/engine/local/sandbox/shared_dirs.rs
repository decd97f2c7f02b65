//! The directories every process of a machine shares (`/dev/shm`, `/tmp`, `/var/tmp`,
//! `/run/lock`) and System V IPC, made private to each run: a run enters a mount and an IPC
//! namespace of its own, where an empty tmpfs is mounted on each of those directories, so
//! what one tenant's replica leaves there no other replica sees, and it is gone with the run.
//! Every replica runs as the same OS user, so file modes alone cannot keep tenants apart
//! there. Only where the server may make namespaces (root); a directory that holds one the
//! replicas need (the server's replica tree, a `--replica-path`) keeps being the machine's.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The shared directories a run gets its own of, where they exist.
const SHARED: &[&str] = &["/dev/shm", "/tmp", "/var/tmp", "/run/lock"];

/// The directories each run gets an empty private copy of, ready to be entered between fork
/// and exec (paths made beforehand: entering allocates nothing).
#[derive(Debug, Clone)]
pub struct SharedDirs {
    dirs: Arc<[CString]>,
}

impl SharedDirs {
    /// Those of the machine's shared directories that exist, are not links and hold none of
    /// `needed`, if this server can give each run its own (tried once with `true`). Blocking.
    pub fn detect(needed: &[PathBuf]) -> Option<SharedDirs> {
        let dirs: Vec<CString> = SHARED
            .iter()
            .map(Path::new)
            .filter(|dir| {
                std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
                    && !needed.iter().any(|n| holds(dir, n))
            })
            .filter_map(|dir| CString::new(dir.as_os_str().as_bytes()).ok())
            .collect();
        let found = SharedDirs { dirs: dirs.into() };
        found.usable().then_some(found)
    }

    /// Whether a private copy would hide one of `paths` (which a run then cannot have).
    pub fn hide_any<'a>(&self, paths: impl Iterator<Item = &'a PathBuf>) -> bool {
        self.without(paths).dirs.len() != self.dirs.len()
    }

    /// These without the directories that hold one of `paths` (a run's own files, its
    /// `--data-root`).
    pub fn without<'a>(&self, paths: impl Iterator<Item = &'a PathBuf>) -> SharedDirs {
        let paths: Vec<PathBuf> = paths.map(|p| canonical(p)).collect();
        let kept: Vec<CString> = self
            .paths()
            .zip(self.dirs.iter())
            .filter(|(dir, _)| !paths.iter().any(|p| p.starts_with(dir)))
            .map(|(_, c)| c.clone())
            .collect();
        if kept.len() == self.dirs.len() {
            return self.clone();
        }
        SharedDirs { dirs: kept.into() }
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs
            .iter()
            .map(|dir| Path::new(std::ffi::OsStr::from_bytes(dir.to_bytes())))
    }

    /// The directories made private, for the server's log.
    pub fn describe(&self) -> String {
        let names: Vec<_> = self.paths().map(|d| d.display().to_string()).collect();
        names.join(", ")
    }

    fn usable(&self) -> bool {
        let mut cmd = std::process::Command::new("true");
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let this = self.clone();
        // SAFETY: `enter` makes only async-signal-safe calls on paths made before the fork.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || this.enter());
        }
        cmd.status().is_ok_and(|s| s.success())
    }

    /// Enters a mount and IPC namespace of the calling process's own (nothing it mounts
    /// reaches the machine's) and mounts an empty tmpfs on each directory. Call in the child
    /// between fork and exec, while it may still mount (before it drops its user or restricts
    /// itself with Landlock).
    ///
    /// # Safety
    /// Only between fork and exec; calls only async-signal-safe functions.
    pub unsafe fn enter(&self) -> std::io::Result<()> {
        let fail = || Err(std::io::Error::last_os_error());
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWIPC) != 0 {
            return fail();
        }
        // Mounts under a shared `/` would propagate back to the machine: none may.
        let root = c"/";
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ) != 0
        {
            return fail();
        }
        let (fstype, options) = (c"tmpfs", c"mode=1777");
        for dir in self.dirs.iter() {
            let flags = libc::MS_NOSUID | libc::MS_NODEV;
            let data = options.as_ptr().cast();
            if libc::mount(fstype.as_ptr(), dir.as_ptr(), fstype.as_ptr(), flags, data) != 0 {
                return fail();
            }
        }
        Ok(())
    }
}

/// Whether `dir` is `path` or one of its ancestors (a mount on it would hide `path`).
fn holds(dir: &Path, path: &Path) -> bool {
    canonical(path).starts_with(dir)
}

/// `path` with its links followed, where it exists.
fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_keeps_the_machines_directory_that_holds_its_files() {
        let dirs = SharedDirs {
            dirs: [c"/dev/shm", c"/tmp"].map(CString::from).into(),
        };
        let data = [PathBuf::from("/tmp/data-root")];
        assert!(dirs.hide_any(data.iter()));
        assert_eq!(dirs.without(data.iter()).describe(), "/dev/shm");
        let elsewhere = [PathBuf::from("/srv/data")];
        assert!(!dirs.hide_any(elsewhere.iter()));
        assert_eq!(dirs.without(elsewhere.iter()).describe(), "/dev/shm, /tmp");
    }

    #[test]
    fn a_directory_holding_what_replicas_need_stays_the_machines() {
        let tmp = Path::new("/tmp");
        assert!(holds(tmp, Path::new("/tmp/cortex-replicas/abc")));
        assert!(holds(tmp, Path::new("/tmp")));
        assert!(!holds(tmp, Path::new("/tmpx/y")));
        assert!(!holds(Path::new("/var/tmp"), Path::new("/var/lib/cortex")));
    }
}
