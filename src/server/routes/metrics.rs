//! `GET /metrics`: the Prometheus scrape (see `server::exposition`). An admin's unscoped token
//! (`Authorization: Bearer`, the server's `admin.token`), or nothing on a server that listens
//! on loopback only.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use crate::server::auth::identity_from_headers;
use crate::server::error::ApiError;
use crate::server::exposition::CONTENT_TYPE;
use crate::server::state::AppState;

pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !crate::server::auth::anonymous(&headers, state.anonymous_ok) {
        let identity = identity_from_headers(&state, &headers).await?;
        if !identity.user.admin || identity.scope.is_some() {
            return Err(ApiError::Forbidden(format!(
                "user {} may not read the metrics: only an admin's unscoped token may; scrape with the server's admin.token (in its data directory)",
                identity.user.username
            )));
        }
    }
    let text = state
        .exporter
        .scrape(&state.deployments, &state.store)
        .await?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}
