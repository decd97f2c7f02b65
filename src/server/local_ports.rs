//! `networking.local_port`: the local server also answers an API at `http://localhost:<port>/`,
//! as cortex's local environment did (its tutorial's `curl http://localhost:8890 -X POST ...`).
//!
//! Each port is a loopback listener whose every request goes to the server's own router with
//! the API's endpoint put before its path (`/` → `/<endpoint>`, `/x?q` → `/<endpoint>/x?q`), so
//! admission, limits, access and metrics are the gateway's. Only a server listening on loopback
//! opens ports for APIs (a shared server is reached at its endpoints); a port is one API's.
//! The set of open ports follows the stored APIs ([`LocalPorts::sync`] after every change).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use axum::body::Body;
use axum::http::{Request, Uri};
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::connections::{self, ConnectionLimits};

/// The ports open for APIs.
pub struct LocalPorts {
    /// The server's own address: `None` when it does not listen on loopback only.
    server: Option<SocketAddr>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    app: OnceLock<Router>,
    open: Mutex<HashMap<u16, Opened>>,
}

struct Opened {
    api: String,
    /// Where its requests go; a redeploy may move it.
    endpoint: Arc<RwLock<String>>,
    stop: CancellationToken,
}

/// One stored API that asks for a port.
pub struct Wanted {
    pub api: String,
    pub endpoint: String,
    pub port: u16,
}

impl LocalPorts {
    pub fn new(
        server: SocketAddr,
        limits: ConnectionLimits,
        shutdown: CancellationToken,
    ) -> LocalPorts {
        LocalPorts {
            server: server.ip().is_loopback().then_some(server),
            limits,
            shutdown,
            app: OnceLock::new(),
            open: Mutex::default(),
        }
    }

    /// The router requests are handed to; ports open only once it is set.
    pub fn set_app(&self, app: Router) {
        let _ = self.app.set(app);
    }

    /// Why `api` may not have `port` (checked before a deploy changes anything), or `None`.
    /// `others` are the ports other APIs have (stored, or earlier in the same file).
    pub fn refusal(&self, api: &str, port: u16, others: &[(String, u16)]) -> Option<String> {
        let field = "networking.local_port";
        let Some(server) = self.server else {
            return Some(format!(
                "{field}: this server does not listen on loopback only, so it opens no ports for apis; remove local_port and use the api's endpoint"
            ));
        };
        if port == server.port() {
            return Some(format!(
                "{field}: {port} is the server's own port (the api answers there at its endpoint); choose another port or remove local_port"
            ));
        }
        if let Some((other, _)) = others.iter().find(|(n, p)| *p == port && n != api) {
            return Some(format!(
                "{field}: port {port} is already the local port of api {other}; choose another port"
            ));
        }
        if self.holder(port).as_deref() == Some(api) {
            return None;
        }
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .err()
            .map(|e| format!("{field}: cannot listen on 127.0.0.1:{port}: {e}; choose a free port"))
    }

    fn holder(&self, port: u16) -> Option<String> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&port).map(|o| o.api.clone())
    }

    /// Opens the ports `wanted` asks for and closes the others. A port that cannot be opened
    /// is logged (the API still answers at its endpoint).
    pub async fn sync(&self, wanted: Vec<Wanted>) {
        let Some(app) = self.app.get() else { return };
        if self.server.is_none() {
            return;
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|port, o| {
            let keep = wanted.iter().any(|w| w.port == *port && w.api == o.api);
            if !keep {
                o.stop.cancel();
            }
            keep
        });
        for w in wanted {
            if let Some(o) = open.get(&w.port) {
                *o.endpoint.write().unwrap_or_else(|p| p.into_inner()) = w.endpoint;
                continue;
            }
            let listener = match bind(w.port) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("{}: cannot listen on 127.0.0.1:{}: {e}", w.api, w.port);
                    continue;
                }
            };
            let endpoint = Arc::new(RwLock::new(w.endpoint));
            let stop = self.shutdown.child_token();
            let router = forwarding(app.clone(), endpoint.clone());
            tokio::spawn(connections::serve(
                listener,
                router,
                self.limits,
                stop.clone(),
            ));
            tracing::info!("{} also answers at http://localhost:{}/", w.api, w.port);
            open.insert(
                w.port,
                Opened {
                    api: w.api,
                    endpoint,
                    stop,
                },
            );
        }
    }
}

/// The ports the stored APIs ask for (those deployed).
pub fn wanted(rows: &[crate::store::ModelRow]) -> Vec<Wanted> {
    rows.iter()
        .filter(|r| r.deploy_status.is_active())
        .filter_map(|r| {
            let spec = super::versions::spec_of(r).ok()?;
            Some(Wanted {
                api: r.name.clone(),
                port: spec.networking.local_port?,
                endpoint: spec.networking.endpoint,
            })
        })
        .collect()
}

/// Brings the open ports in line with what `store` holds (after a deploy or a delete).
pub async fn sync_stored(store: &crate::store::Store, ports: &LocalPorts) {
    match store.call(|c| crate::store::models::list(c)).await {
        Ok(rows) => ports.sync(wanted(&rows)).await,
        Err(e) => tracing::warn!("cannot list the apis for their local ports: {e}"),
    }
}

fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let std = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    std.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(std)
}

/// A router that hands every request to `app` with `endpoint` before its path.
fn forwarding(app: Router, endpoint: Arc<RwLock<String>>) -> Router {
    Router::new().fallback(move |mut req: Request<Body>| {
        let prefix = endpoint.read().unwrap_or_else(|p| p.into_inner()).clone();
        *req.uri_mut() = under(&prefix, req.uri());
        // A router is always ready: calling a clone needs no `poll_ready`.
        let mut app = app.clone();
        async move {
            match tower_service::Service::call(&mut app, req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    })
}

/// `uri` under `prefix`: `/` is the prefix itself, any other path follows it; the query stays.
fn under(prefix: &str, uri: &Uri) -> Uri {
    let path = match uri.path() {
        "/" | "" => prefix.to_string(),
        rest => format!("{prefix}{rest}"),
    };
    let text = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    text.parse().unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn paths_go_under_the_endpoint_with_their_query() {
        let u = |s: &str| s.parse().unwrap();
        assert_eq!(under("/iris", &u("/")), "/iris");
        assert_eq!(under("/iris", &u("/?a=1")), "/iris?a=1");
        assert_eq!(under("/v1/iris", &u("/health")), "/v1/iris/health");
    }
}
