//! This thread's connections to replicas: the idle ones by replica address (the most recently
//! used first, at most [`MAX_IDLE_PER_REPLICA`] each), and the body of a response, which gives
//! its connection back once it has been read to the end.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use foldhash::HashMap;

use super::ReplicaError;
use crate::server::beside::beside;

/// Idle connections kept per replica and thread (more are closed when given back).
const MAX_IDLE_PER_REPLICA: usize = 256;

/// Every this many connections given back, the pool forgets the closed ones of replicas it
/// no longer sends to.
const SWEEP_EVERY: u32 = 1024;

thread_local! {
    static IDLE: RefCell<Idle> = RefCell::new(Idle::default());
}

#[derive(Default)]
struct Idle {
    by_replica: HashMap<SocketAddr, Vec<Conn>>,
    given_back: u32,
}

/// A connection to a replica, in use or idle in its thread's pool.
pub(super) struct Conn {
    sender: SendRequest<Body>,
    addr: SocketAddr,
    /// `Host: <addr>`.
    host: HeaderValue,
    use_: Arc<Use>,
    pooled: bool,
}

/// A replica's answer to a request handed to a connection, or why there is none (with the
/// request, when it never left).
pub(super) type Answered = Result<Response<Incoming>, TrySendError<Request<Body>>>;

/// A request that did not get an answer: given back when it never left.
pub(super) struct Failed {
    pub(super) unsent: Option<Request<Body>>,
    pub(super) error: hyper::Error,
}

impl Conn {
    /// True when the connection came from the pool (the replica may have closed it since).
    pub(super) fn was_pooled(&self) -> bool {
        self.pooled
    }

    /// Hands `request` to the connection now, if it is ready for one (an idle connection
    /// whose last answer was read to the end is): what is returned waits for the answer.
    /// Gives `request` back otherwise (boxed: that is rare).
    pub(super) fn try_send(
        &mut self,
        request: Request<Body>,
    ) -> Result<impl Future<Output = Answered> + Send + use<>, Box<Request<Body>>> {
        if !self.sender.is_ready() {
            return Err(Box::new(request));
        }
        Ok(self.hand_over(request))
    }

    /// Sends `request` once the connection is ready for it.
    pub(super) async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, Failed> {
        if let Err(error) = self.sender.ready().await {
            return Err(Failed {
                unsent: Some(request),
                error,
            });
        }
        self.hand_over(request).await.map_err(|mut e| Failed {
            unsent: e.take_message(),
            error: e.into_error(),
        })
    }

    /// Queues `request` (with `Host: <addr>`) on the connection; what is returned waits for
    /// the answer.
    fn hand_over(
        &mut self,
        mut request: Request<Body>,
    ) -> impl Future<Output = Answered> + Send + use<> {
        request
            .headers_mut()
            .insert(header::HOST, self.host.clone());
        self.sender.try_send_request(request)
    }
}

/// An idle connection of this thread to `addr`, if one is open.
pub(super) fn take(addr: SocketAddr) -> Option<Conn> {
    IDLE.with_borrow_mut(|idle| {
        let conns = idle.by_replica.get_mut(&addr)?;
        while let Some(mut conn) = conns.pop() {
            if conn.sender.is_closed() {
                continue;
            }
            conn.use_.busy.store(true, Ordering::Relaxed);
            conn.pooled = true;
            return Some(conn);
        }
        None
    })
}

/// Puts `conn`, whose last answer was read to the end, back in this thread's pool.
fn give_back(conn: Conn) {
    if conn.sender.is_closed() {
        return;
    }
    conn.use_.idle_from_now();
    IDLE.with_borrow_mut(|idle| {
        let conns = idle.by_replica.entry(conn.addr).or_default();
        if conns.len() < MAX_IDLE_PER_REPLICA {
            conns.push(conn);
        }
        idle.given_back = idle.given_back.wrapping_add(1);
        if idle.given_back % SWEEP_EVERY == 0 {
            idle.by_replica.retain(|_, conns| {
                conns.retain(|c| !c.sender.is_closed());
                !conns.is_empty()
            });
        }
    });
}

/// A new connection to the replica at `addr`, closed once unused for `idle_timeout`.
pub(super) async fn connect(
    addr: SocketAddr,
    idle_timeout: Duration,
) -> Result<Conn, ReplicaError> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|source| ReplicaError::Connect { addr, source })?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(tcp)).await?;
    let use_ = Arc::new(Use {
        busy: AtomicBool::new(true),
        idle_since: AtomicU64::new(0),
    });
    tokio::spawn(close_when_idle(connection, use_.clone(), idle_timeout));
    Ok(Conn {
        sender,
        addr,
        host: HeaderValue::try_from(addr.to_string()).expect("an address is a valid header"),
        use_,
        pooled: false,
    })
}

/// Drives a connection until it ends, or until it has sat in the pool for `idle_timeout`.
async fn close_when_idle(
    connection: http1::Connection<TokioIo<TcpStream>, Body>,
    use_: Arc<Use>,
    idle_timeout: Duration,
) {
    beside(connection, idle_for(use_, idle_timeout)).await;
}

/// Ends once the connection has sat in the pool for `idle_timeout`.
async fn idle_for(use_: Arc<Use>, idle_timeout: Duration) {
    let mut check = tokio::time::Instant::now() + idle_timeout;
    loop {
        tokio::time::sleep_until(check).await;
        match use_.idle_for() {
            Some(idle) if idle >= idle_timeout => return,
            Some(idle) => check += idle_timeout - idle,
            None => check += idle_timeout,
        }
    }
}

/// Whether a connection is in use, and since when it has been idle.
struct Use {
    busy: AtomicBool,
    /// Milliseconds since [`epoch`] when it was last given back.
    idle_since: AtomicU64,
}

impl Use {
    fn idle_from_now(&self) {
        self.idle_since.store(millis_now(), Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
    }

    /// How long the connection has been idle; `None` while in use.
    fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::Relaxed) {
            return None;
        }
        let since = self.idle_since.load(Ordering::Relaxed);
        Some(Duration::from_millis(millis_now().saturating_sub(since)))
    }
}

fn millis_now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A replica's response body; its connection goes back to the pool once the body has been
/// read to the end, and is closed if the body is dropped before.
pub struct ReplicaBody {
    inner: Incoming,
    conn: Option<Conn>,
}

impl ReplicaBody {
    pub(super) fn new(inner: Incoming, conn: Conn) -> ReplicaBody {
        ReplicaBody {
            inner,
            conn: Some(conn),
        }
    }
}

impl http_body::Body for ReplicaBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => this.conn = None,
            Poll::Ready(None) => this.conn.take().map_or((), give_back),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ReplicaBody {
    /// An empty body (or one read to its last byte) is never polled to its end.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if http_body::Body::is_end_stream(&self.inner) {
                give_back(conn);
            }
        }
    }
}
