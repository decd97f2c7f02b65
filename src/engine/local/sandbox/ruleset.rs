//! The Landlock ruleset of one replica run.
//!
//! Landlock only grants. To hide the server's directories while leaving the rest of the file
//! system as the OS lets the replica's user reach it, [`around`] lists every entry of every
//! directory on the way from `/` down to a hidden directory, except the ones that lead to one;
//! the ancestors themselves are not granted (so nothing new can be made directly in them).

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};

/// The Landlock ABI this kernel offers (`None`: no Landlock).
pub fn kernel_abi() -> Option<i32> {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only returns
    // the ABI version; it reads and writes no memory.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (abi > 0).then_some(abi as i32)
}

/// The paths a replica may reach, by how.
#[derive(Debug, Default)]
pub struct Grants {
    /// Everything beneath (read, write, execute, make, remove).
    pub full: Vec<PathBuf>,
    /// Read and execute beneath.
    pub read: Vec<PathBuf>,
}

/// The entries beside the way down to each of `hidden`: every entry of each ancestor of a
/// hidden directory that is neither hidden, inside a hidden one, nor on the way to one.
/// Symbolic links are left out (what they point to is granted or not on its own).
pub fn around(hidden: &[PathBuf]) -> Vec<PathBuf> {
    let on_the_way: HashSet<&Path> = hidden.iter().flat_map(|h| h.ancestors()).collect();
    let inside_hidden = |p: &Path| hidden.iter().any(|h| p.starts_with(h));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for dir in hidden.iter().flat_map(|h| h.ancestors().skip(1)) {
        if inside_hidden(dir) || !seen.insert(dir) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if !is_link && !on_the_way.contains(path.as_path()) {
                out.push(path);
            }
        }
    }
    out
}

/// Why a ruleset could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RulesetError {
    #[error("cannot make the replica's landlock ruleset: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error("the kernel gave no landlock ruleset")]
    NoRuleset,
}

/// A Landlock ruleset (its file descriptor, for `landlock_restrict_self` in the child) that
/// handles every file system right of `abi`, scopes signals and abstract unix sockets where
/// the ABI can, and grants `grants`. Paths that do not exist are skipped. Blocking.
pub fn build(abi: i32, grants: &Grants) -> Result<OwnedFd, RulesetError> {
    let abi = ABI::from(abi);
    let all = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(all)?;
    let scopes = Scope::from_all(abi);
    if !scopes.is_empty() {
        ruleset = ruleset.scope(scopes)?;
    }
    let mut created = ruleset.create()?;
    let sets: [(&[PathBuf], BitFlags<AccessFs>); 2] = [
        (&grants.full, all),
        (&grants.read, AccessFs::from_read(abi)),
    ];
    for (paths, access) in sets {
        for path in paths {
            let Some((fd, is_dir)) = open_path(path) else {
                continue;
            };
            // Rights on what is in a directory mean nothing on a file (and are refused).
            let access = if is_dir {
                access
            } else {
                access & AccessFs::from_file(abi)
            };
            created = created.add_rule(PathBeneath::new(fd, access))?;
        }
    }
    Option::<OwnedFd>::from(created).ok_or(RulesetError::NoRuleset)
}

/// `path` opened `O_PATH` without following a link in its last component, and whether it is
/// a directory; `None` when it cannot be opened (or is a link).
fn open_path(path: &Path) -> Option<(OwnedFd, bool)> {
    let c = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: open(2) with a valid NUL-terminated path; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a file descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed stat is a valid out-parameter; fstat works on O_PATH descriptors.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut st) } != 0 {
        return None;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFLNK => None,
        kind => Some((fd, kind == libc::S_IFDIR)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn around_a_hidden_directory_grants_its_siblings_on_the_way_down_but_not_the_way() {
        let top = tempfile::tempdir().unwrap();
        let t = top.path().canonicalize().unwrap();
        for d in ["a/data/secret", "a/other", "b", "a/tree"] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        std::fs::write(t.join("a/file"), "x").unwrap();
        std::os::unix::fs::symlink(t.join("a/data"), t.join("a/link-to-data")).unwrap();
        let hidden = vec![
            t.join("a/data"),
            t.join("a/tree"),
            t.join("a/data/secret/inner"),
        ];
        let got: HashSet<PathBuf> = around(&hidden).into_iter().collect();
        assert!(got.contains(&t.join("a/other")));
        assert!(got.contains(&t.join("a/file")));
        assert!(got.contains(&t.join("b")));
        for never in ["a", "a/data", "a/tree", "a/link-to-data", "a/data/secret"] {
            assert!(!got.contains(&t.join(never)), "{never} must not be granted");
        }
        assert!(!got.contains(Path::new("/")));
        assert!(!got.iter().any(|p| p.starts_with(t.join("a/data"))));
    }
}
