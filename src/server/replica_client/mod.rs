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

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, Uri};

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
    pub async fn send(
        &self,
        method: Method,
        addr: SocketAddr,
        target: Uri,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response<ReplicaBody>, ReplicaError> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        loop {
            let mut conn = match pool::take(addr) {
                Some(conn) => conn,
                // Boxed: most requests take a pooled connection, and the future of each
                // request is moved whole.
                None => Box::pin(pool::connect(addr, self.idle_timeout)).await?,
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
}
