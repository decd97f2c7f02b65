//! The engine's own port, which the cluster reaches: the drivers' syncs
//! (`POST /api/v2/engine/ray/groups/{group}/sync`, with the group's token) and the bundles
//! the nodes download (`GET /api/v2/engine/ray/files/{sha256}.tar.gz`, with the cluster's
//! token, which nodes send as `RAY_RUNTIME_ENV_BEARER_TOKEN`).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::groups::{self, Refusal};
use super::protocol::SyncReport;
use super::{effects, Shared};

/// A sync carries at most 512 KiB of output per replica.
const SYNC_BODY_LIMIT: usize = 256 << 20;

#[derive(Clone)]
struct Listening {
    shared: Arc<Shared>,
    /// The cluster's token: what bundle downloads must carry.
    cluster_token: Arc<str>,
}

/// Serves the engine's routes on `listener` until the server ends.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    cluster_token: String,
) {
    let closing = shared.closing.clone();
    let app = Router::new()
        .route("/api/v2/engine/ray/groups/{group}/sync", post(sync))
        .route("/api/v2/engine/ray/files/{name}", get(file))
        .layer(DefaultBodyLimit::max(SYNC_BODY_LIMIT))
        .with_state(Listening {
            shared,
            cluster_token: cluster_token.into(),
        });
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move { closing.cancelled().await })
        .await;
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

fn refused(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn sync(
    State(l): State<Listening>,
    Path(group): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let report: SyncReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refused(
                StatusCode::BAD_REQUEST,
                &format!("the sync body is not a driver's report: {e}"),
            )
        }
    };
    let mut effects = Vec::new();
    let answer = {
        let mut all = l.shared.lock();
        groups::sync(&mut all, &group, bearer(&headers), report, &mut effects)
    };
    effects::apply(&l.shared, effects);
    match answer {
        Ok(answer) => Json(answer).into_response(),
        Err(Refusal::Gone) => refused(
            StatusCode::GONE,
            "this group no longer exists: remove its actors",
        ),
        Err(Refusal::Unauthorized) => {
            refused(StatusCode::UNAUTHORIZED, "wrong token for this group")
        }
    }
}

async fn file(
    State(l): State<Listening>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !super::groups::same_secret(bearer(&headers), &l.cluster_token) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "bundles are for the Ray cluster's nodes: start them with RAY_RUNTIME_ENV_BEARER_TOKEN set to the cluster's token",
        );
    }
    let Some(path) = l.shared.bundles.file(&name) else {
        return refused(StatusCode::NOT_FOUND, "no such bundle");
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response(),
        Err(e) => refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot read the bundle: {e}"),
        ),
    }
}
