//! Reading a worker's output, whatever engine ran it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

/// A worker's output (stdout and stderr, with the engine's own `cortex: ...` lines), read as
/// bytes from offsets. Offsets only grow while the worker writes.
pub trait ReplicaLogs: Send + Sync {
    /// The last `n` lines.
    fn tail_lines(&self, n: usize) -> BoxFuture<'static, Vec<String>>;

    /// The offset where the last `n` lines start (0 when there are fewer; the end for 0).
    fn tail_offset(&self, n: usize) -> BoxFuture<'static, u64>;

    /// How many bytes there are now.
    fn size(&self) -> BoxFuture<'static, u64>;

    /// The next bytes from `offset` (a bounded chunk; empty when there is nothing new, `None`
    /// when the logs cannot be read).
    fn read_from(&self, offset: u64) -> BoxFuture<'static, Option<Bytes>>;

    /// Like [`ReplicaLogs::read_from`], with the offset the bytes start at: later than
    /// `offset` when the logs no longer keep that part (rotated away). Readers that follow a
    /// log go on from there.
    fn read_next(&self, offset: u64) -> BoxFuture<'static, Option<(u64, Bytes)>> {
        let read = self.read_from(offset);
        Box::pin(async move { read.await.map(|bytes| (offset, bytes)) })
    }

    /// The last `n` lines of stdout and of stderr, each on its own (without the engine's
    /// lines); an `Err` says why they cannot be read.
    fn streams(&self, n: usize) -> BoxFuture<'static, Result<(String, String), String>>;
}

/// What following a log yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// New output.
    Data(Bytes),
    /// Nothing new right now: the follower may decide to stop (or to follow another worker).
    Idle,
}

/// Follows `logs` from `from`: new output as it is written, an [`LogEvent::Idle`] each time
/// there was nothing new, then a pause of `poll` before looking again. Never ends by itself.
pub fn follow(
    logs: Arc<dyn ReplicaLogs>,
    from: u64,
    poll: Duration,
) -> BoxStream<'static, LogEvent> {
    struct State {
        logs: Arc<dyn ReplicaLogs>,
        offset: u64,
        idle: bool,
    }
    let state = State {
        logs,
        offset: from,
        idle: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut s| async move {
            if s.idle {
                tokio::time::sleep(poll).await;
            }
            let (from, chunk) = s.logs.read_next(s.offset).await.unwrap_or_default();
            s.idle = chunk.is_empty();
            if s.idle {
                return Some((LogEvent::Idle, s));
            }
            s.offset = from.max(s.offset) + chunk.len() as u64;
            Some((LogEvent::Data(chunk), s))
        },
    ))
}
