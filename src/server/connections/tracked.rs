//! One connection's bookkeeping: the reads and writes that moved bytes, the requests being
//! handled, whether a head is half-read (the connection's watcher reads all three), and the
//! head guard its reads pass through.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::server::head_guard::{self, HeadGuard};

/// What a connection is doing: reads and writes so far, requests being handled.
#[derive(Default)]
pub(super) struct Activity {
    pub(super) io: AtomicU64,
    pub(super) requests: AtomicUsize,
    /// Part of a head has arrived, and not the rest.
    pub(super) head_pending: AtomicBool,
}

/// A request being handled (until its handler answers; its body's writes count as IO).
pub(super) struct Busy(Arc<Activity>);

impl Busy {
    pub(super) fn new(activity: Arc<Activity>) -> Busy {
        activity.requests.fetch_add(1, Ordering::Relaxed);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
        self.0.io.fetch_add(1, Ordering::Relaxed);
    }
}

/// A TCP stream that counts the reads and writes that moved bytes; its reads pass through
/// the head guard.
pub(super) struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
    guard: HeadGuard,
}

impl Tracked {
    pub(super) fn new(inner: TcpStream, activity: Arc<Activity>) -> Tracked {
        Tracked {
            inner,
            activity,
            guard: HeadGuard::default(),
        }
    }

    /// Once hyper is done with the connection: answers the head the guard refused, if any.
    pub(super) async fn answer_refusal(mut self) {
        if let Some(refusal) = self.guard.refusal().cloned() {
            head_guard::answer(&mut self.inner, &refusal).await;
        }
    }

    fn moved<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Ok(_)) = &polled {
            self.activity.io.fetch_add(1, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Tracked {
            inner,
            activity,
            guard,
        } = self.get_mut();
        let polled = guard.poll_read(cx, buf, &mut |cx, buf| {
            let polled = Pin::new(&mut *inner).poll_read(cx, buf);
            if let Poll::Ready(Ok(())) = polled {
                activity.io.fetch_add(1, Ordering::Relaxed);
            }
            polled
        });
        activity
            .head_pending
            .store(guard.head_pending(), Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.moved(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.moved(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    /// Left to the connection's driver after a refused head: it answers, then shuts down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.guard.refusal().is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
