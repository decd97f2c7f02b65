//! Replica log files with a size cap: a file that would pass the cap (`cortex server
//! --log-max-mb`) is renamed to `<file>.1` (replacing the one before) and a new one begun.
//! Readers see one log whose offsets only grow: the offset where the current file begins is
//! kept beside it in `<file>.base`, and what was rotated away twice is skipped. Output that
//! would leave the disk with less free space than the server keeps (`--min-free-disk-mb`) is
//! dropped, said in the log, so replicas' logs together never take the room the database
//! needs. Blocking: call it from blocking threads.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::tail;

/// The cap of each file when the server sets none.
pub const DEFAULT_CAP: u64 = 10 << 20;

/// The smallest cap: an engine line or one read of a pipe always fits.
const MIN_CAP: u64 = 64 << 10;

static CAP: AtomicU64 = AtomicU64::new(DEFAULT_CAP);

/// Writes to one file (its checks and rotations) happen one at a time, so two writers of one
/// file (its stdout, its stderr, the engine's lines) never rotate it twice. Files share a lock
/// by the hash of their path, so replicas rarely wait for each other.
static WRITING: [Mutex<()>; 16] = [const { Mutex::new(()) }; 16];

fn lock_of(path: &Path) -> &'static Mutex<()> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    &WRITING[(h.finish() % WRITING.len() as u64) as usize]
}

/// The free space replica logs leave on their disk (`--min-free-disk-mb`; 0: none kept).
static FLOOR: AtomicU64 = AtomicU64::new(0);

/// The logs dropping output for want of room, and how many bytes each has dropped.
static DROPPING: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

/// Sets the free space every replica log leaves on its disk (once, at server start): output
/// that would go below it is dropped, said in the log, so that no replica's output takes the
/// room the database needs.
pub fn set_floor(bytes: u64) {
    FLOOR.store(bytes, Ordering::Relaxed);
}

/// Sets the cap of every replica log file (once, at server start).
pub fn set_cap(bytes: u64) {
    CAP.store(bytes.max(MIN_CAP), Ordering::Relaxed);
}

fn cap() -> u64 {
    CAP.load(Ordering::Relaxed)
}

fn rotated(path: &Path) -> PathBuf {
    suffixed(path, ".1")
}

fn base_file(path: &Path) -> PathBuf {
    suffixed(path, ".base")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The offset of the log where the current file begins.
fn base(path: &Path) -> u64 {
    fs::read_to_string(base_file(path))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Appends `data` to the log at `path`, rotating it first when it would pass the cap; drops it
/// when the disk's free space would go below the floor (saying so in the log when it begins,
/// and how much was dropped when it ends).
pub fn append(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let _one_at_a_time = lock_of(path).lock().unwrap_or_else(|p| p.into_inner());
    match room_for(path, data.len() as u64) {
        Room::Enough => write(path, data),
        Room::Resumed(dropped) => {
            let line = format!("cortex: {dropped} bytes of output were dropped while the disk had less free space than the server keeps (--min-free-disk-mb)\n");
            write(path, line.as_bytes())?;
            write(path, data)
        }
        Room::BeginsDropping => {
            let line = format!("cortex: the disk has less free space than the server keeps (--min-free-disk-mb {} MiB): output is dropped until there is room again\n", FLOOR.load(Ordering::Relaxed) >> 20);
            write(path, line.as_bytes())
        }
        Room::Dropping => Ok(()),
    }
}

/// Whether `len` more bytes of the log at `path` leave the disk its floor.
enum Room {
    Enough,
    /// There is room again, after this many bytes were dropped.
    Resumed(u64),
    /// The first bytes dropped.
    BeginsDropping,
    Dropping,
}

fn room_for(path: &Path, len: u64) -> Room {
    let floor = FLOOR.load(Ordering::Relaxed);
    let dir = path.parent().unwrap_or(Path::new("."));
    let enough = floor == 0
        || crate::free_space::free_bytes(dir).is_none_or(|free| free >= floor.saturating_add(len));
    let mut dropping = DROPPING.lock().unwrap_or_else(|p| p.into_inner());
    let at = dropping.iter().position(|(p, _)| p == path);
    match (enough, at) {
        (true, None) => Room::Enough,
        (true, Some(i)) => Room::Resumed(dropping.swap_remove(i).1),
        (false, Some(i)) => {
            dropping[i].1 += len;
            Room::Dropping
        }
        (false, None) => {
            dropping.push((path.to_path_buf(), len));
            Room::BeginsDropping
        }
    }
}

/// Appends `data` to the log at `path`, rotating it first when it would pass the cap.
fn write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let now = len(path);
    if now > 0 && now.saturating_add(data.len() as u64) > cap() {
        let next_base = base(path) + now;
        fs::rename(path, rotated(path))?;
        crate::atomic_file::write(&base_file(path), next_base.to_string().as_bytes())?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(data)
}

/// Runs `f` with the current file's base, again when a rotation happened meanwhile.
fn consistent<T>(path: &Path, mut f: impl FnMut(u64) -> T) -> T {
    let mut attempts = 0;
    loop {
        let b = base(path);
        let value = f(b);
        attempts += 1;
        if base(path) == b || attempts >= 5 {
            return value;
        }
    }
}

/// Where the log ends (its offset).
pub fn size(path: &Path) -> u64 {
    consistent(path, |b| b + len(path))
}

/// The next bytes of the log from `offset` (at most 64 KiB) and the offset they start at: later
/// than asked when that part was rotated away. `None` when the log cannot be read.
pub fn read_from(path: &Path, offset: u64) -> Option<(u64, Vec<u8>)> {
    consistent(path, |b| {
        if offset >= b {
            return match tail::read_from(path, offset - b) {
                Some(bytes) => Some((offset, bytes)),
                // Between a rotation and the next write there is no current file.
                None if b > 0 => Some((offset, Vec::new())),
                None => None,
            };
        }
        let old = rotated(path);
        let start = b.saturating_sub(len(&old));
        let from = offset.max(start);
        let mut bytes = tail::read_from(&old, from - start)?;
        bytes.truncate((b - from) as usize);
        Some((from, bytes))
    })
}

/// The last `n` lines of the log (from the rotated file too when the current one has fewer).
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let current = tail::tail_lines(path, n);
    if current.len() >= n {
        return current;
    }
    let mut lines = tail::tail_lines(&rotated(path), n - current.len());
    lines.extend(current);
    lines
}

/// The offset where the last `n` lines of the log start.
pub fn tail_offset(path: &Path, n: usize) -> u64 {
    consistent(path, |b| {
        let in_current = tail::tail_lines(path, n).len();
        let old = rotated(path);
        if in_current >= n || !old.exists() {
            return b + tail::tail_offset(path, n);
        }
        b.saturating_sub(len(&old)) + tail::tail_offset(&old, n - in_current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_its_cap_rotates_and_reads_on_across_the_rotation() {
        set_cap(MIN_CAP);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.log");
        let line = |i: u32| format!("{i:0>511}\n");
        let mut written = Vec::new();
        for i in 0..400 {
            append(&p, line(i).as_bytes()).unwrap();
            written.extend_from_slice(line(i).as_bytes());
        }
        assert!(len(&p) <= MIN_CAP && len(&rotated(&p)) <= MIN_CAP);
        assert_eq!(size(&p), written.len() as u64);
        let lines = tail_lines(&p, 100);
        assert_eq!(lines.len(), 100, "the rotated file fills in the lines");
        assert_eq!(lines[99], line(399).trim_end());
        assert_eq!(tail_offset(&p, 1), written.len() as u64 - 512);
        assert_eq!(tail_offset(&p, 100), written.len() as u64 - 100 * 512);
        // Read from the start: what was rotated away twice is skipped, the rest is the log.
        let (mut offset, mut read) = (0, Vec::new());
        loop {
            let (from, bytes) = read_from(&p, offset).unwrap();
            if bytes.is_empty() {
                break;
            }
            assert!(from >= offset);
            offset = from + bytes.len() as u64;
            read.extend(bytes);
        }
        assert_eq!(offset, written.len() as u64);
        assert!(written.ends_with(&read) && read.len() as u64 >= MIN_CAP);
        set_cap(DEFAULT_CAP);
    }
}
