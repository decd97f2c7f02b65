//! The gateway's client to replicas: hyper's pooled HTTP/1 client (keep-alive, `TCP_NODELAY`).
//! A replica is an address, not a URL: nothing to resolve, parse or IDNA-check per request, as
//! a general-purpose client would (it cost about 3% of the gateway's CPU in a profile).
//! Connections idle for longer than the pool's idle timeout are closed.
//!
//! Each thread has a pool of its own: a connection to a replica is driven by a task of the
//! runtime that opened it, so a request on a connection thread (`connections::threads`) that
//! used another thread's pooled connection would hand every read and write over to that
//! thread. With a pool per thread, a prediction stays on the thread that read it.

use std::cell::RefCell;

use std::net::SocketAddr;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Why a replica did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("{0}")]
    Request(#[from] axum::http::Error),
    #[error("{0}")]
    Send(#[from] hyper_util::client::legacy::Error),
}

#[derive(Clone)]
pub struct ReplicaClient {
    idle_timeout: Duration,
}

thread_local! {
    /// This thread's pools, by idle timeout (a server has one).
    static POOLS: RefCell<Vec<(Duration, Client<HttpConnector, Body>)>> =
        const { RefCell::new(Vec::new()) };
}

/// A pool whose connections are closed after `idle_timeout` unused.
fn pool(idle_timeout: Duration) -> Client<HttpConnector, Body> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(idle_timeout)
        .pool_timer(TokioTimer::new())
        .build(connector)
}

impl ReplicaClient {
    /// A client whose pooled connections are closed after `idle_timeout` unused.
    pub fn new(idle_timeout: Duration) -> Self {
        ReplicaClient { idle_timeout }
    }

    /// `METHOD http://<addr><path_and_query>` with `headers` and `body`.
    pub async fn send(
        &self,
        method: Method,
        addr: SocketAddr,
        path_and_query: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response<Incoming>, ReplicaError> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(addr.to_string())
            .path_and_query(path_and_query)
            .build()?;
        let mut request = Request::builder().method(method).uri(uri).body(body)?;
        *request.headers_mut() = headers;
        let sent = POOLS.with(|pools| {
            let mut pools = pools.borrow_mut();
            let index = match pools.iter().position(|(t, _)| *t == self.idle_timeout) {
                Some(i) => i,
                None => {
                    pools.push((self.idle_timeout, pool(self.idle_timeout)));
                    pools.len() - 1
                }
            };
            pools[index].1.request(request)
        });
        Ok(sent.await?)
    }
}
