//! The gateway's client to replicas: HTTP/1 keep-alive connections (`TCP_NODELAY`) in a pool
//! per thread (`pool.rs`). A replica is an address, not a URL: nothing to resolve, parse or
//! IDNA-check per request, as a general-purpose client would.
//!
//! A connection to a replica is driven by a task of the runtime that opened it, and each
//! thread reuses only its own: a prediction read on a connection thread
//! (`connections::threads`) is passed on and answered without leaving it. A connection goes
//! back to its pool when its response has been read to the end (one given up half-way is
//! closed), and is closed after `idle_timeout` unused.

mod pool;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, Uri};
use pin_project_lite::pin_project;

pub use pool::ReplicaBody;

/// Why a replica did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Send(#[from] hyper::Error),
}

/// A request on its way to a replica: the replica's answer (its head; the body follows),
/// or why there is none.
pub type Sending =
    Pin<Box<dyn Future<Output = Result<Response<ReplicaBody>, ReplicaError>> + Send>>;

#[derive(Clone)]
pub struct ReplicaClient {
    idle_timeout: Duration,
}

impl ReplicaClient {
    /// A client whose pooled connections are closed after `idle_timeout` unused.
    pub fn new(idle_timeout: Duration) -> Self {
        ReplicaClient { idle_timeout }
    }

    /// `METHOD <target>` (a path and query) to the replica at `addr` with `headers` (and
    /// `Host: addr`) and `body`. A pooled connection the replica closed before the request went out is
    /// replaced.
    ///
    /// Most requests find an idle connection ready for them: they are handed to it here, and
    /// what is returned only waits for the answer (a small future: each request's is moved and
    /// allocated whole). The others wait for a connection first.
    pub fn send(
        &self,
        method: Method,
        addr: SocketAddr,
        target: Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Sending {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        let idle_timeout = self.idle_timeout;
        let Some(mut conn) = pool::take(addr) else {
            return Box::pin(send_waiting(addr, idle_timeout, request, None));
        };
        match conn.try_send(request) {
            Ok(answer) => Box::pin(Answering {
                answer,
                conn: Some(conn),
                addr,
                idle_timeout,
                again: None,
            }),
            Err(unsent) => Box::pin(send_waiting(addr, idle_timeout, *unsent, Some(conn))),
        }
    }
}

pin_project! {
    /// A request handed to an idle connection, until the replica's answer comes. Written out
    /// rather than `async`: an `async` block would keep the future it awaits twice.
    struct Answering<F> {
        #[pin]
        answer: F,
        conn: Option<pool::Conn>,
        addr: SocketAddr,
        idle_timeout: Duration,
        // Sending again, waiting for a connection: the replica closed this one while it sat
        // in the pool, before the request left (or it was not ready after all).
        again: Option<Sending>,
    }
}

impl<F: Future<Output = pool::Answered>> Future for Answering<F> {
    type Output = Result<Response<ReplicaBody>, ReplicaError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(again) = this.again {
            return again.as_mut().poll(cx);
        }
        let answered = ready!(this.answer.poll(cx));
        let conn = this.conn.take();
        match answered {
            Ok(response) => match conn {
                Some(conn) => Poll::Ready(Ok(response.map(|body| ReplicaBody::new(body, conn)))),
                None => panic!("a request's answer was polled after it came"),
            },
            Err(mut e) => match e.take_message() {
                Some(unsent) => {
                    let again = this.again.insert(Box::pin(send_waiting(
                        *this.addr,
                        *this.idle_timeout,
                        unsent,
                        conn,
                    )));
                    again.as_mut().poll(cx)
                }
                None => Poll::Ready(Err(e.into_error().into())),
            },
        }
    }
}

/// Sends `request` on `first` (when it is still open) or the next idle connection to `addr`
/// once it is ready, or on a new one.
async fn send_waiting(
    addr: SocketAddr,
    idle_timeout: Duration,
    mut request: Request<Body>,
    mut first: Option<pool::Conn>,
) -> Result<Response<ReplicaBody>, ReplicaError> {
    loop {
        let mut conn = match first.take().or_else(|| pool::take(addr)) {
            Some(conn) => conn,
            None => pool::connect(addr, idle_timeout).await?,
        };
        match conn.send(request).await {
            Ok(response) => return Ok(response.map(|body| ReplicaBody::new(body, conn))),
            // Closed by the replica while it sat in the pool, before the request left:
            // the next idle connection, or a new one.
            Err(pool::Failed {
                unsent: Some(unsent),
                ..
            }) if conn.was_pooled() => request = unsent,
            Err(failed) => return Err(failed.error.into()),
        }
    }
}
