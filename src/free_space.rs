//! How much room is left on a disk: what the server keeps free (`--min-free-disk-mb`) is
//! measured here, for its guards and for replica logs.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes available to this process on the file system holding `dir` (`None`: it cannot be
/// asked).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the struct we pass, and `path` is NUL-terminated.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        stat
    };
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}
