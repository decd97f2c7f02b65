//! A no-op command predictor for the realtime benchmark (`bench/realtime.py`): serves
//! `GET /healthz` and answers every `POST /` with `{}` on `127.0.0.1:$CORTEX_PORT`, as fast as
//! a worker can, so that what is measured is the gateway, not the model.

use axum::routing::{get, post};
use axum::Router;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = std::env::var("CORTEX_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/",
            post(|_body: axum::body::Bytes| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    "{}",
                )
            }),
        );
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    // Responses go out as headers then body: without TCP_NODELAY each would wait ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("serving failed: {e}");
        std::process::exit(1);
    }
}
