//! The end of text files (logs): the last lines, where the last lines start, and the bytes
//! from an offset. Blocking: call it from a blocking thread in async code.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much is read per step when scanning or streaming a file.
pub const BLOCK: u64 = 64 * 1024;

/// The last `n` lines of a file (looks at most at the last 64 KiB).
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(BLOCK);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // probably cut in the middle
    }
    let skip = lines.len().saturating_sub(n);
    lines[skip..].iter().map(|s| s.to_string()).collect()
}

/// The byte offset where the last `n` lines of the file start (0 when it has fewer).
pub fn tail_offset(path: &Path, n: usize) -> u64 {
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if n == 0 {
        return len;
    }
    // The last `n` lines start after the `n`-th newline from the end; a trailing newline ends
    // the last line, it does not start another.
    let mut newlines_seen = 0usize;
    let mut end = len;
    let mut skip_last_newline = true;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut buf[..(end - start) as usize];
        if f.seek(SeekFrom::Start(start)).is_err() || f.read_exact(chunk).is_err() {
            return 0;
        }
        for i in (0..chunk.len()).rev() {
            if chunk[i] != b'\n' {
                skip_last_newline = false;
                continue;
            }
            if std::mem::take(&mut skip_last_newline) {
                continue;
            }
            newlines_seen += 1;
            if newlines_seen == n {
                return start + i as u64 + 1;
            }
        }
        end = start;
    }
    0
}

/// Up to 64 KiB of the file from `offset` (`None` when it cannot be read).
pub fn read_from(path: &Path, offset: u64) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = Vec::new();
    f.take(BLOCK).read_to_end(&mut buf).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_offset_finds_where_the_last_lines_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, "one\ntwo\nthree\n").unwrap();
        assert_eq!(tail_offset(&p, 1), 8);
        assert_eq!(tail_offset(&p, 2), 4);
        assert_eq!(tail_offset(&p, 3), 0);
        assert_eq!(tail_offset(&p, 10), 0);
        assert_eq!(tail_offset(&p, 0), 14, "no lines: start at the end");
        assert_eq!(tail_offset(&p, usize::MAX), 0);
        std::fs::write(&p, "one\ntwo").unwrap();
        assert_eq!(tail_offset(&p, 1), 4);
        assert_eq!(tail_offset(&dir.path().join("missing"), 1), 0);
    }

    #[test]
    fn tail_offset_crosses_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let line = "x".repeat(1000) + "\n";
        std::fs::write(&p, line.repeat(200)).unwrap();
        assert_eq!(tail_offset(&p, 150), 50 * 1001);
    }
}
