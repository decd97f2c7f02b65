//! The server's answer to request heads hyper would refuse with a bare status and no body:
//! a head past hyper's read buffer or with more than 100 fields (431), a target past 65,534
//! bytes (414), bytes that are not HTTP at all (400: a TLS handshake, a bad request line).
//!
//! `HeadGuard` sits in the connection's IO, under hyper, and sees every byte hyper reads.
//! It follows the stream's framing (`framing.rs`: each head to its empty line, then its
//! body by Content-Length or chunked), so it finds every head on a keep-alive connection,
//! and checks each one (`head.rs`) against the server's limits (`limits.rs`), which are
//! below hyper's. hyper gets a head only once it is complete and accepted: a head split
//! across reads waits in a stash (the only copy; the common whole-head read passes in
//! place, with no allocation). At a refused head hyper reads end of input: it finishes the
//! answer in flight (the server's connections half-close) and stops; then the connection's
//! driver writes the `{"kind","message"}` answer, shuts the connection down and reads what
//! the client is still sending for a moment, so the client hears the answer, not a reset.
//!
//! Why here, not in a middleware: a middleware runs once hyper has parsed a request, and
//! hyper answers these heads itself before there is one.

mod framing;
mod head;

use std::io;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::api::ErrorBody;
use framing::{Fed, Framing};
pub use head::Refusal;

/// How long a refused connection is read and dropped after its answer.
const LINGER: Duration = Duration::from_secs(2);
/// How much a refused connection may still send after its answer before it is closed.
const LINGER_BYTES: usize = 4 * 1024 * 1024;
/// What a stashed head reads at once.
const STASH_READ: usize = 16 * 1024;

/// The guard of one connection's reads.
#[derive(Debug)]
pub struct HeadGuard {
    framing: Framing,
    /// Bytes read but not yet given to hyper: a head in progress, or a completed head and
    /// what followed it (`stash[sent..ready]` is approved and not yet given).
    stash: Vec<u8>,
    ready: usize,
    sent: usize,
    refusal: Option<Refusal>,
}

impl Default for HeadGuard {
    fn default() -> Self {
        HeadGuard {
            framing: Framing::new(),
            stash: Vec::new(),
            ready: 0,
            sent: 0,
            refusal: None,
        }
    }
}

type Read<'a> = dyn FnMut(&mut Context<'_>, &mut ReadBuf<'_>) -> Poll<io::Result<()>> + 'a;

impl HeadGuard {
    /// A refused head: the connection's answer, once hyper is done.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refusal.as_ref()
    }

    /// Whether part of a head has arrived and is held back until the rest does.
    pub fn head_pending(&self) -> bool {
        self.refusal.is_none() && self.stash.len() > self.ready
    }

    /// Reads into `buf` through `read` (the socket's read), giving hyper only accepted
    /// bytes; end of input once a head is refused.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        read: &mut Read<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.sent < self.ready {
                let n = (self.ready - self.sent).min(buf.remaining());
                buf.put_slice(&self.stash[self.sent..self.sent + n]);
                self.sent += n;
                return Poll::Ready(Ok(()));
            }
            if self.ready > 0 {
                self.stash.drain(..self.ready);
                (self.ready, self.sent) = (0, 0);
            }
            if self.refusal.is_some() {
                return Poll::Ready(Ok(()));
            }
            let more = if self.stash.is_empty() {
                ready!(self.read_in_place(cx, buf, read))?
            } else {
                ready!(self.read_stashed(cx, read))?
            };
            if !more {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Reads straight into hyper's buffer and takes back a head that is not complete.
    /// Returns whether to go on (nothing was given yet and the socket is still open).
    fn read_in_place(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        read: &mut Read<'_>,
    ) -> Poll<io::Result<bool>> {
        let start = buf.filled().len();
        ready!(read(cx, buf))?;
        let new = &buf.filled()[start..];
        if new.is_empty() {
            return Poll::Ready(Ok(false));
        }
        let pass = match self.framing.feed(new, 0) {
            Fed::Pass(n) => n,
            Fed::Refuse(n, refusal) => {
                self.refusal = Some(refusal);
                n
            }
        };
        if pass < new.len() {
            if self.refusal.is_none() {
                self.stash.extend_from_slice(&new[pass..]);
            }
            buf.set_filled(start + pass);
        }
        Poll::Ready(Ok(pass == 0))
    }

    /// Reads more of a stashed head. Returns whether the socket is still open.
    fn read_stashed(
        &mut self,
        cx: &mut Context<'_>,
        read: &mut Read<'_>,
    ) -> Poll<io::Result<bool>> {
        let from = self.stash.len();
        self.stash.resize(from + STASH_READ, 0);
        let mut more = ReadBuf::new(&mut self.stash[from..]);
        let polled = read(cx, &mut more);
        let n = more.filled().len();
        self.stash.truncate(from + n);
        ready!(polled)?;
        if n == 0 {
            // The client closed in the middle of a head: hyper sees a clean end.
            self.stash = Vec::new();
            return Poll::Ready(Ok(false));
        }
        self.ready = match self.framing.feed(&self.stash, from) {
            Fed::Pass(n) => n,
            Fed::Refuse(n, refusal) => {
                self.refusal = Some(refusal);
                self.stash.truncate(n);
                n
            }
        };
        if self.ready == self.stash.len() && self.stash.capacity() > 2 * STASH_READ {
            self.stash.shrink_to(STASH_READ);
        }
        Poll::Ready(Ok(true))
    }
}

/// Writes `refusal` as the connection's last answer, then closes: the write side first,
/// then, after reading what the client still sends (a little while, a few MiB at most),
/// the socket, so the client is not reset before it reads the answer.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, refusal: &Refusal) {
    let body = serde_json::to_vec(&ErrorBody {
        kind: refusal.kind.to_string(),
        message: refusal.message.clone(),
    })
    .unwrap_or_default();
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        refusal.status.as_u16(),
        refusal.status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let _ = tokio::time::timeout(LINGER, async {
        io.write_all(&response).await?;
        io.shutdown().await?;
        let mut drained = 0;
        let mut scratch = [0u8; 8192];
        while drained < LINGER_BYTES {
            match io.read(&mut scratch).await? {
                0 => break,
                n => drained += n,
            }
        }
        io::Result::Ok(())
    })
    .await;
}
