//! Opening a file beneath a directory at the moment it is read, following no symbolic link on
//! the way: a path checked earlier cannot be turned into a way out by swapping one of its
//! directories for a link in between.
//!
//! `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it (5.6+), else
//! one `openat(O_NOFOLLOW)` per component from the root's descriptor.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path};

/// Why a file beneath the root cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("it passes through a symbolic link (links are not followed)")]
    Link,
    #[error("it does not exist")]
    NotFound,
    #[error("it is not a regular file")]
    NotAFile,
    #[error("it is not a plain relative path beneath the directory")]
    NotBeneath,
    #[error("it cannot be read: {0}")]
    Io(std::io::Error),
}

/// Opens `rel` (relative, no `..`) beneath the directory `root` for reading: a regular file,
/// reached without following any link.
pub fn open_beneath(root: &Path, rel: &Path) -> Result<File, BeneathError> {
    let parts: Vec<CString> = rel
        .components()
        .map(|c| match c {
            Component::Normal(p) => {
                CString::new(p.as_bytes()).map_err(|_| BeneathError::NotBeneath)
            }
            _ => Err(BeneathError::NotBeneath),
        })
        .collect::<Result<_, _>>()?;
    if parts.is_empty() {
        return Err(BeneathError::NotBeneath);
    }
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(root)
        .map_err(BeneathError::Io)?;
    let fd = match openat2(dir.as_raw_fd(), rel) {
        Some(result) => result,
        None => walk(dir.as_raw_fd(), &parts),
    }
    .map_err(classify)?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(BeneathError::Io)?;
    if !meta.is_file() {
        return Err(BeneathError::NotAFile);
    }
    Ok(file)
}

/// Flags of the final open: read only, and never blocking on a FIFO (it is refused next).
const FILE_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;

/// `openat2`; `None` where the kernel (or a seccomp filter) does not offer it.
fn openat2(dir: RawFd, rel: &Path) -> Option<std::io::Result<OwnedFd>> {
    let path = CString::new(rel.as_os_str().as_bytes()).ok()?;
    // SAFETY: `open_how` is plain data; zeroed is a valid value of it.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = FILE_FLAGS as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the path is NUL-terminated and `how` outlives the call; its size is passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => None,
            _ => Some(Err(e)),
        };
    }
    // SAFETY: the kernel gave us this descriptor and nothing else owns it.
    Some(Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
}

/// One component at a time, each opened from its parent's descriptor with `O_NOFOLLOW`.
fn walk(root: RawFd, parts: &[CString]) -> std::io::Result<OwnedFd> {
    let mut current: Option<OwnedFd> = None;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let flags = if last {
            FILE_FLAGS | libc::O_NOFOLLOW
        } else {
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC
        };
        let at = current.as_ref().map_or(root, |fd| fd.as_raw_fd());
        // SAFETY: `part` is NUL-terminated; `at` is a directory descriptor we hold.
        let fd = unsafe { libc::openat(at, part.as_ptr(), flags) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            // A directory opened with O_NOFOLLOW that is a link fails as "not a directory".
            if e.raw_os_error() == Some(libc::ENOTDIR) && is_link(at, part) {
                return Err(std::io::Error::from_raw_os_error(libc::ELOOP));
            }
            return Err(e);
        }
        // SAFETY: a fresh descriptor nothing else owns.
        current = Some(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    current.ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT))
}

/// Whether `name` in the directory `at` is a symbolic link.
fn is_link(at: RawFd, name: &CString) -> bool {
    // SAFETY: `stat` is plain data filled by the call; `name` is NUL-terminated.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstatat(at, name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) == 0
            && stat.st_mode & libc::S_IFMT == libc::S_IFLNK
    }
}

fn classify(e: std::io::Error) -> BeneathError {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) => BeneathError::Link,
        Some(libc::ENOENT) => BeneathError::NotFound,
        Some(libc::ENOTDIR) => BeneathError::NotAFile,
        _ => BeneathError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read(f: File) -> String {
        let mut s = String::new();
        (&f).read_to_string(&mut s).unwrap();
        s
    }

    /// A directory of the path swapped for a link to outside after the path was checked:
    /// the open at read time refuses it, with `openat2` and with the walk alike.
    #[test]
    fn a_directory_swapped_for_a_link_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("in")).unwrap();
        std::fs::write(root.path().join("in/a.jsonl"), "inside\n").unwrap();
        std::fs::write(outside.path().join("a.jsonl"), "secret\n").unwrap();
        let rel = Path::new("in/a.jsonl");
        assert_eq!(read(open_beneath(root.path(), rel).unwrap()), "inside\n");

        std::fs::rename(root.path().join("in"), root.path().join("old")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("in")).unwrap();
        assert!(matches!(
            open_beneath(root.path(), rel),
            Err(BeneathError::Link)
        ));
        let dir = File::open(root.path()).unwrap();
        let parts: Vec<CString> = ["in", "a.jsonl"]
            .iter()
            .map(|p| CString::new(*p).unwrap())
            .collect();
        assert!(matches!(
            walk(dir.as_raw_fd(), &parts).map_err(classify),
            Err(BeneathError::Link)
        ));
        // A link as the file itself, too.
        std::os::unix::fs::symlink(outside.path().join("a.jsonl"), root.path().join("b")).unwrap();
        assert!(matches!(
            open_beneath(root.path(), Path::new("b")),
            Err(BeneathError::Link)
        ));
        let parts = [CString::new("b").unwrap()];
        assert!(matches!(
            walk(dir.as_raw_fd(), &parts).map_err(classify),
            Err(BeneathError::Link)
        ));
    }

    #[test]
    fn only_regular_files_beneath_the_root_open() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        let fifo = CString::new(root.path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for (rel, want) in [
            ("d", "NotAFile"),
            ("fifo", "NotAFile"),
            ("missing", "NotFound"),
            ("../x", "NotBeneath"),
            ("/etc/passwd", "NotBeneath"),
        ] {
            let got = format!(
                "{:?}",
                open_beneath(root.path(), Path::new(rel)).unwrap_err()
            );
            assert!(got.starts_with(want), "{rel}: {got}");
        }
    }
}
