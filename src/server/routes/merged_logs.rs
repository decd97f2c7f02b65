//! Logs made of several sources read together: each source's complete lines, with a short
//! prefix naming it (`[w0] `), interleaved as they are written. A job's log (the server's lines
//! and its workers') and an API's log (its replicas') are both read this way; with `follow`
//! the stream goes on, and a [`Feed`] says when the log is over and may add sources (replicas
//! that start meanwhile).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use crate::engine::ReplicaLogs;

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// About how much of one source is read per chunk sent (logs are never read whole into memory).
const MAX_READ: usize = 1024 * 1024;

/// The longest line kept whole: output with no newline for longer (a progress bar drawn with
/// `\r`, a binary dump) is sent in pieces of this size, so a follower's memory stays bounded.
const MAX_LINE: usize = 64 * 1024;

/// Where one part of a job's log comes from.
pub(super) enum Origin {
    /// The server's own lines (a file the jobs module appends to).
    Server(PathBuf),
    Worker(Arc<dyn ReplicaLogs>),
}

/// One part of a job's log, read on from `offset`; a line is sent once it is complete.
pub(super) struct Source {
    origin: Origin,
    prefix: String,
    offset: u64,
    partial: Vec<u8>,
    /// When it stops being read (it is no longer one of the log's parts, but may still write
    /// its last lines until then).
    retired: Option<Instant>,
}

impl Source {
    /// `origin` read from `offset` (the start of a line), each line after `prefix`.
    pub(super) fn from_offset(origin: Origin, prefix: String, offset: u64) -> Source {
        Source {
            origin,
            prefix,
            offset,
            partial: Vec::new(),
            retired: None,
        }
    }

    /// Marks it as no longer part of the log: it is read for `read_for` more, then dropped.
    pub(super) fn retire(&mut self, read_for: Duration) {
        self.retired
            .get_or_insert_with(|| Instant::now() + read_for);
    }

    /// Takes back a retirement (it is part of the log again).
    pub(super) fn unretire(&mut self) {
        self.retired = None;
    }

    /// Whether it is retired and has been read long enough.
    fn expired(&self) -> bool {
        self.retired.is_some_and(|until| Instant::now() >= until)
    }

    /// Its prefix (which names it).
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Source {
    async fn read(&mut self) -> Option<Bytes> {
        match &self.origin {
            Origin::Worker(logs) => {
                let (from, bytes) = logs.read_next(self.offset).await?;
                // What was rotated away is skipped.
                self.offset = from.max(self.offset);
                Some(bytes)
            }
            Origin::Server(path) => {
                let (path, offset) = (path.clone(), self.offset);
                tokio::task::spawn_blocking(move || read_file_from(&path, offset))
                    .await
                    .ok()
                    .flatten()
            }
        }
    }

    /// The complete lines written since the last call, each prefixed (at most about
    /// [`MAX_READ`] bytes), and whether more is written than was read.
    async fn new_lines(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut read = 0;
        let more = loop {
            if read >= MAX_READ {
                break true;
            }
            let Some(chunk) = self.read().await.filter(|c| !c.is_empty()) else {
                break false;
            };
            read += chunk.len();
            self.offset += chunk.len() as u64;
            self.partial.extend_from_slice(&chunk);
        };
        prefixed_lines(&mut self.partial, &self.prefix, &mut out);
        if self.partial.len() > MAX_LINE {
            out.extend(self.rest());
        }
        (out, more)
    }

    /// What is left after the last newline, once the log is over.
    fn rest(&mut self) -> Vec<u8> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        self.partial.push(b'\n');
        let mut out = Vec::new();
        prefixed_lines(&mut self.partial, &self.prefix, &mut out);
        out
    }
}

/// Up to 64 KiB of a file from `offset` (`None` at its end or when it does not exist).
fn read_file_from(path: &std::path::Path, offset: u64) -> Option<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = f.read(&mut buf).ok()?;
    (n > 0).then(|| {
        buf.truncate(n);
        Bytes::from(buf)
    })
}

/// Moves every complete line of `partial` to `out`, each after `prefix`.
fn prefixed_lines(partial: &mut Vec<u8>, prefix: &str, out: &mut Vec<u8>) {
    let Some(last_newline) = partial.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    let complete: Vec<u8> = partial.drain(..=last_newline).collect();
    for line in complete.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
    }
}

/// What a [`Feed`] says before a read.
pub(super) struct Check {
    /// Nothing more will be written.
    pub ended: bool,
    /// Lines of its own to send first (e.g. that a source joined).
    pub note: Vec<u8>,
}

/// Says, while a merged log is followed, whether it is over; may add sources meanwhile.
pub(super) trait Feed: Send + 'static {
    /// Called before each read.
    fn check<'a>(&'a mut self, sources: &'a mut Vec<Source>) -> BoxFuture<'a, Check>;
}

/// The merged lines of `sources`: what is written so far, or with `follow`, on until `feed`
/// says the log is over.
pub(super) fn merged<F: Feed>(
    sources: Vec<Source>,
    follow: bool,
    feed: F,
) -> BoxStream<'static, Bytes> {
    Box::pin(futures_util::stream::unfold(
        (sources, feed, false),
        move |(mut sources, mut feed, done)| async move {
            if done {
                return None;
            }
            loop {
                // Asked before reading: lines written before the end are then all read.
                let (ended, note) = if follow {
                    let check = feed.check(&mut sources).await;
                    (check.ended, check.note)
                } else {
                    (true, Vec::new())
                };
                let (mut out, mut more) = (note, false);
                let mut kept = Vec::with_capacity(sources.len());
                for mut s in sources {
                    let (lines, unread) = s.new_lines().await;
                    out.extend(lines);
                    more |= unread;
                    let gone = s.expired() && !unread;
                    if (ended || gone) && !unread {
                        out.extend(s.rest());
                    }
                    if !gone {
                        kept.push(s);
                    }
                }
                sources = kept;
                if ended && !more {
                    return Some((Bytes::from(out), (sources, feed, true)));
                }
                if !out.is_empty() {
                    return Some((Bytes::from(out), (sources, feed, false)));
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_longer_than_the_limit_is_sent_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, vec![b'.'; MAX_LINE + 10]).unwrap();
        let mut source = Source::from_offset(Origin::Server(path), "[s] ".to_string(), 0);
        let (out, more) = source.new_lines().await;
        assert!(!more);
        assert_eq!(out.len(), "[s] ".len() + MAX_LINE + 10 + 1);
        assert!(out.starts_with(b"[s] ..") && out.ends_with(b"..\n"));
        assert!(source.partial.is_empty());
    }

    #[test]
    fn a_retired_source_expires_only_after_its_grace() {
        let mut source = Source::from_offset(Origin::Server("x".into()), String::new(), 0);
        assert!(!source.expired());
        source.retire(Duration::from_secs(30));
        assert!(!source.expired());
        source.unretire();
        source.retire(Duration::ZERO);
        assert!(source.expired());
        source.unretire();
        assert!(!source.expired());
    }

    #[test]
    fn only_complete_lines_are_sent_each_with_the_prefix() {
        let mut partial = b"one\ntwo\nthr".to_vec();
        let mut out = Vec::new();
        prefixed_lines(&mut partial, "[w1] ", &mut out);
        assert_eq!(out, b"[w1] one\n[w1] two\n");
        assert_eq!(partial, b"thr");
        partial.extend_from_slice(b"ee\n");
        prefixed_lines(&mut partial, "[w1] ", &mut out);
        assert_eq!(out, b"[w1] one\n[w1] two\n[w1] three\n");
        assert!(partial.is_empty());
    }
}
