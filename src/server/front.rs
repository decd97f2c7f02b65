//! Where the server's requests are answered. Its connections live on per-core threads
//! (`connections::serve_on_threads`). A request the router would give the prediction gateway
//! is answered right there, on the thread that read it: the gateway touches no database,
//! blocks nothing and spawns nothing that outlives the request. Every other request (the
//! control API, `/healthz`, `/metrics`, a BatchAPI's routes) is handed to the main runtime,
//! where the router's handlers, their background tasks and their blocking work belong; it is
//! cancelled there if its client goes away, as it would be on the connection's own thread.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use hyper::body::Incoming;
use tokio::runtime::Handle;
use tokio_util::task::AbortOnDropHandle;

use super::connections::{Handler, ResponseFuture};
use super::error::error_response;
use super::gateway;
use super::live_api::LiveApi;
use super::routes::jobs::{target, Target};
use super::state::AppState;

/// The handler of the server's listener.
#[derive(Clone)]
pub struct Front {
    state: Arc<ThreadsOwn>,
    app: Router,
    main: Handle,
}

/// The server's state, by way of an `Arc` of each connection thread's own: a request's
/// answer holds a clone of it, and each thread counts its clones on a cache line of its own
/// instead of passing one back and forth with the other threads.
struct ThreadsOwn(Arc<AppState>);

impl Front {
    /// Answers predictions on the connection's thread and the rest with `app` on `main`.
    pub fn new(state: AppState, app: Router, main: Handle) -> Front {
        Front {
            state: Arc::new(ThreadsOwn(Arc::new(state))),
            app,
            main,
        }
    }
}

/// True when the router would pass a request for `path` to the gateway: not one of its own
/// routes (all under `/api/v<n>/`, plus `/healthz` and `/metrics`), nor a BatchAPI's.
/// `Some` when the gateway answers a request for `path` on its connection's thread, with the
/// API deployed at the path if there is one.
fn goes_to_gateway(state: &AppState, path: &str) -> Option<Option<Arc<LiveApi>>> {
    if gateway::is_control_path(path) || matches!(path, "/healthz" | "/metrics") {
        return None;
    }
    match target(state, path) {
        Target::Gateway(found) => Some(found),
        _ => None,
    }
}

impl Handler for Front {
    fn call(&self, req: hyper::Request<Incoming>) -> ResponseFuture {
        if let Some(found) = goes_to_gateway(&self.state.0, req.uri().path()) {
            return Box::pin(gateway::answer(&self.state.0, req, found));
        }
        on(&self.main, Handler::call(&self.app, req))
    }

    fn for_thread(&self) -> Self {
        Front {
            state: Arc::new(ThreadsOwn(self.state.0.clone())),
            ..self.clone()
        }
    }
}

/// `answer` run on the runtime of `main`; dropping what this returns (hyper does when the
/// client goes away) aborts it there.
fn on(main: &Handle, answer: ResponseFuture) -> ResponseFuture {
    let task = AbortOnDropHandle::new(main.spawn(answer));
    Box::pin(async move {
        match task.await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!("a request's handler failed: {e}");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed while answering this request; see its log",
                )
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::gateway::is_control_path;
    use super::on;

    #[test]
    fn a_request_handed_to_the_main_runtime_ends_there_when_its_client_goes_away() {
        struct Dropped(mpsc::Sender<()>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let main = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (started_tx, started) = mpsc::channel();
        let (dropped_tx, dropped) = mpsc::channel();
        // A handler that never answers (a long poll), holding something until it ends.
        let answer = Box::pin(async move {
            let _held = Dropped(dropped_tx);
            let _ = started_tx.send(());
            std::future::pending::<axum::response::Response>().await
        });
        let waiting = on(main.handle(), answer);
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        // The client goes away: hyper drops the request's future.
        drop(waiting);
        dropped
            .recv_timeout(Duration::from_secs(10))
            .expect("the handler kept running on the main runtime after its client went away");
    }

    #[test]
    fn the_routers_own_paths_are_not_the_gateways() {
        // `goes_to_gateway` leans on this: every route of the router but two is a control path.
        let router_paths = include_str!("routes/mod.rs")
            .lines()
            .map(str::trim)
            .filter_map(|l| {
                l.strip_prefix(".route(\"")
                    .or_else(|| l.strip_prefix("\"/"))
            })
            .filter_map(|l| l.split('"').next())
            .map(|l| {
                if l.starts_with('/') {
                    l.to_string()
                } else {
                    format!("/{l}")
                }
            })
            .collect::<Vec<_>>();
        assert!(router_paths.len() > 20, "{router_paths:?}");
        for path in router_paths {
            assert!(
                is_control_path(&path) || matches!(path.as_str(), "/healthz" | "/metrics"),
                "{path} is a route of the router that front.rs would give the gateway"
            );
        }
    }
}
