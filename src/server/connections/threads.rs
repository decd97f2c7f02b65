//! Connections served thread per core, as nginx's workers serve them: each thread runs a
//! single-threaded runtime that accepts from the shared listener and keeps every connection it
//! accepted to itself, with the requests it carries and the replica connections they use
//! (`replica_client` pools per thread). No request is read on one thread and answered on
//! another: on a multi-threaded runtime that hand-over costs futex wake-ups and context
//! switches on every request, and most of the gateway's added latency at low concurrency.
//! The threads take turns at the listener (`share.rs`), so each holds about as many
//! connections as the others.
//!
//! What a handler does on these threads must not block or outlive the request: the server's
//! handler (`server/front.rs`) answers predictions here and passes every other request to the
//! main runtime.

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use super::share::{Share, Turn};
use super::{accept, ConnectionLimits, Handler};

/// Serves `handler` on `listener` from `threads` threads (at least one) until `shutdown` is
/// cancelled; returns once every thread's connections have finished their requests in
/// flight and closed. The cap on connections is shared by all threads.
pub async fn serve_on_threads<H: Handler>(
    listener: TcpListener,
    handler: H,
    threads: usize,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let listener = listener.into_std()?;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let share = Share::new(threads.max(1));
    let mut ended = Vec::new();
    for n in 0..threads.max(1) {
        let own = listener.try_clone()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (handler, permits, shutdown) =
            (handler.for_thread(), permits.clone(), shutdown.clone());
        let turn = Turn::new(share.clone(), n);
        let (done, end) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("cortex-http-{n}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(own) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("connection thread {n} cannot listen: {e}");
                            return;
                        }
                    };
                    accept(&listener, &handler, limits, &permits, Some(turn), &shutdown).await;
                });
                drop(done);
            })?;
        ended.push(end);
    }
    for end in ended {
        let _ = end.await;
    }
    Ok(())
}
