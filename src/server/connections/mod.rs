//! The server's side of its clients' connections (HTTP/1.1): at most `max_connections` open
//! at once (past the cap the listener is not accepted from, and the kernel's backlog holds
//! new ones until a connection ends); a request's headers must arrive within
//! `header_read_timeout` of the moment the connection starts waiting for them (it opened,
//! or the previous answer ended); a keep-alive connection that sends nothing for
//! `idle_timeout` after its last answer is closed. Together they keep slow or idle clients
//! from holding every file descriptor: a slowloris connection ends at the header timeout and
//! its place goes to the next client.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::beside::{beside, Ended};
use share::Turn;
use tracked::{Activity, Busy, Tracked};
use watch::time_to_close;

mod share;
mod threads;
mod tracked;
mod watch;

pub use threads::serve_on_threads;

/// How the server treats its clients' connections (`cortex server` flags).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Raises the soft limit on open files to the hard limit (a server holds a descriptor per
/// connection, replica socket and log file); returns the soft limit in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// How much freed memory each of malloc's arenas may keep at its top before giving it back.
const KEPT_FREE_BYTES: libc::c_int = 8 * 1024 * 1024;
/// Allocations from this size up are mapped on their own (and unmapped when freed).
const MAPPED_FROM_BYTES: libc::c_int = 4 * 1024 * 1024;

/// Lets malloc keep up to [`KEPT_FREE_BYTES`] freed at the top of each arena instead of
/// giving it back at once (glibc's default, 128 KiB, is crossed back and forth by the
/// gateway's buffers under load: each return is an `madvise` whose TLB shootdown interrupts
/// the other cores, about 5 % of the gateway's CPU at 128 connections). Setting it stops
/// glibc from raising its mapping threshold as it sees large blocks freed, so that is set
/// too, where glibc would have raised it for bodies of a few MiB. A no-op elsewhere than
/// glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MAPPED_FROM_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEPT_FREE_BYTES);
    }
}

/// The default cap on open connections: half the open-file limit, leaving the rest to
/// replica sockets, log files and the database.
pub fn default_max_connections(open_files_limit: u64) -> usize {
    usize::try_from(open_files_limit / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, 1 << 20)
}

/// Serves `handler` on `listener` until `shutdown` is cancelled, then lets every connection
/// finish its request in flight and returns once all are closed. Connections run on the
/// calling runtime.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: H,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    accept(&listener, &handler, limits, &permits, None, &shutdown).await;
}

/// Accepts connections (while `permits` has one to give) and spawns each onto the current
/// runtime until `shutdown` is cancelled; returns once all have finished and closed.
async fn accept<H: Handler>(
    listener: &TcpListener,
    handler: &H,
    limits: ConnectionLimits,
    permits: &Arc<Semaphore>,
    turn: Option<Turn>,
    shutdown: &CancellationToken,
) {
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // Half-close: a client's end of input (or the head guard's, at a refused head) does not
    // cancel the answer in flight.
    // No timer for hyper: the connection's watcher (`watch.rs`) keeps the header timeout.
    http.half_close(true);
    loop {
        // This thread's turn first (`share.rs`): a thread that waits for it holds no permit.
        if let Some(turn) = &turn {
            tokio::select! {
                _ = turn.wait() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e, shutdown).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Responses are written as headers then body: without TCP_NODELAY, Nagle's algorithm
        // and the client's delayed ACK add ~40 ms to every keep-alive prediction.
        let _ = tcp.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Tracked::new(tcp, activity.clone()));
        let service = Counted {
            handler: handler.clone(),
            activity: activity.clone(),
        };
        let conn = http.serve_connection(io, service);
        let shutdown = shutdown.clone();
        let held = turn.as_ref().map(Turn::took);
        connections.spawn(async move {
            let _held = (permit, held);
            drive(conn, activity, limits, shutdown).await;
        });
    }
    connections.close();
    connections.wait().await;
}

/// A failed accept: the client's own trouble is skipped; anything else (out of file
/// descriptors) waits a moment instead of spinning.
async fn accept_failed(e: io::Error, shutdown: &CancellationToken) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("cannot accept a connection: {e}");
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// What answers a connection's requests.
pub trait Handler: Clone + Send + Sync + 'static {
    fn call(&self, req: hyper::Request<Incoming>) -> ResponseFuture;

    /// The handler a connection thread serves with (its connections take clones of it).
    fn for_thread(&self) -> Self {
        self.clone()
    }
}

/// A handler's answer to come.
pub type ResponseFuture = Pin<Box<dyn Future<Output = axum::response::Response> + Send>>;

/// The router answers everything itself.
impl Handler for Router {
    fn call(&self, req: hyper::Request<Incoming>) -> ResponseFuture {
        let mut app = self.clone();
        Box::pin(async move {
            match tower_service::Service::call(&mut app, req.map(Body::new)).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            }
        })
    }
}

type Connection<H> = hyper::server::conn::http1::Connection<TokioIo<Tracked>, Counted<H>>;

/// `handler` for one connection, counting the requests it is handling.
#[derive(Clone)]
struct Counted<H> {
    handler: H,
    activity: Arc<Activity>,
}

impl<H: Handler> hyper::service::Service<hyper::Request<Incoming>> for Counted<H> {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Answering;

    fn call(&self, req: hyper::Request<Incoming>) -> Answering {
        Answering {
            _busy: Busy::new(self.activity.clone()),
            answer: self.handler.call(req),
        }
    }
}

/// A request's answer to come, counted as being handled until hyper drops it (once it is
/// ready, or when its client goes away).
pub struct Answering {
    _busy: Busy,
    answer: ResponseFuture,
}

impl Future for Answering {
    type Output = Result<axum::response::Response, Infallible>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.answer.as_mut().poll(cx).map(Ok)
    }
}

/// Runs one connection until it ends: closed gracefully when the server shuts down or when
/// its time is up (`watch.rs`); a head the guard refused is answered once hyper is done with
/// the connection.
async fn drive<H: Handler>(
    mut conn: Connection<H>,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    serve_until_done(&mut conn, activity, limits, shutdown).await;
    conn.into_parts().io.into_inner().answer_refusal().await;
}

async fn serve_until_done<H: Handler>(
    conn: &mut Connection<H>,
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let mut conn = Pin::new(conn);
    if let Ended::Side(()) = beside(conn.as_mut(), time_to_close(activity, limits, shutdown)).await
    {
        // Between requests, this closes the connection at once.
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

#[cfg(test)]
mod tests {
    use super::default_max_connections;

    #[test]
    fn the_default_cap_leaves_half_the_descriptors_to_the_rest() {
        assert_eq!(default_max_connections(1024), 512);
        assert_eq!(default_max_connections(10), 16);
        assert_eq!(default_max_connections(u64::MAX), 1 << 20);
    }
}
