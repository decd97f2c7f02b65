//! Keeps cleaners of temporary directories out of the server's own. `systemd-tmpfiles
//! --clean` (a daily timer on most systemd distributions, 10 days of age in `/tmp` on many)
//! deletes old files under the temp directory, also those a running program uses, but skips a
//! directory some process holds a shared BSD lock (`flock(LOCK_SH)`) on. The replica tree is
//! in the temp directory when the replica user cannot reach the data directory, and a data
//! directory may be there too: without the lock, a replica started after a cleaning (a
//! restart, a scale-up) would find its project, virtualenv or runtime gone.

use std::fs::File;
use std::path::Path;

/// Opens `dir` and holds a shared lock on it for as long as the returned file is open. When
/// that cannot be (a cleaner holds the exclusive lock at this very moment, or the file system
/// has no locks), the server says so and goes on without it.
pub fn hold(dir: &Path) -> Option<File> {
    let held = File::open(dir).and_then(|file| match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::other(
            "another program holds an exclusive lock on it (a temp cleaner at work?)",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    });
    held.map_err(|e| {
        tracing::warn!(
            "cannot lock {} against temp cleaners such as systemd-tmpfiles, which may delete old files in it: {e}",
            dir.display()
        )
    })
    .ok()
}
