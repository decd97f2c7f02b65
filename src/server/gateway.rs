//! The prediction gateway: `POST /<api>` (or the API's `networking.endpoint`) is proxied to a
//! ready replica over a pooled keep-alive connection; `GET` answers a usage message.
//!
//! Hot path rules: no database, no lock held across an await, replica picked in O(1).

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::user_from_headers;
use super::error::error_response;
use super::limits::MAX_PREDICTION_BYTES;
use super::live_api::LiveApi;
use super::state::AppState;
use super::status::api_status;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus the ones we set.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

pub async fn handle(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path }.to_string();
    let not_found = |path: &str| {
        error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no api is deployed at {path}; run `cortex get` to see the deployed apis"),
        )
    };
    let Some(api) = state.deployments.by_path(&path) else {
        return not_found(&path);
    };
    if !state.loopback_only {
        if let Err(e) = user_from_headers(&state, req.headers()).await {
            return e.into_response();
        }
    }
    let name = api.spec.name.clone();
    match *req.method() {
        Method::POST => {}
        Method::GET => {
            return Json(serde_json::json!({
                "message": "make a prediction by sending a post request to this endpoint with a json payload"
            }))
            .into_response()
        }
        _ => {
            return error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{name} answers POST (predict) and GET (usage); {} is not supported", req.method()),
            )
        }
    }
    let not_ready = |api: &LiveApi| {
        let (name, status) = (&api.spec.name, api_status(api));
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("{name} is not ready (status: {status}); run `cortex get {name}` to see why"),
        )
    };
    // Refuse early rather than read a large body for nothing.
    if !api.is_ready() {
        return not_ready(&api);
    }

    let started = Instant::now();
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    // Buffered (bounded by the body limit) so replicas get a Content-Length: simple HTTP
    // servers often do not read chunked bodies.
    let body = match axum::body::to_bytes(body, MAX_PREDICTION_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the request body could not be read ({e}); predictions are limited to {} MiB",
                    MAX_PREDICTION_BYTES / (1024 * 1024)
                ),
            )
        }
    };
    // Routed again once the body is in: a slow upload must go to what serves the path now,
    // not to a generation that an update, a restart or a delete has stopped meanwhile.
    let Some(api) = state.deployments.by_path(&path) else {
        return not_found(&path);
    };
    let Some(addr) = api.pick() else {
        return not_ready(&api);
    };
    let name = &api.spec.name;
    let mut forward = state.http.post(format!("http://{addr}/{query}"));
    for (k, v) in parts.headers.iter() {
        if !is_hop_by_hop(k) && k != header::AUTHORIZATION {
            forward = forward.header(k, v);
        }
    }
    let forward = forward.body(body);
    let response = match forward.send().await {
        Ok(r) => r,
        Err(e) => {
            api.metrics.record(502, started.elapsed());
            return error_response(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                format!("{name}'s replica did not answer: {e}; check `cortex logs {name}`"),
            );
        }
    };
    let status = response.status();
    api.metrics.record(status.as_u16(), started.elapsed());
    let mut builder = Response::builder().status(status.as_u16());
    for (k, v) in response.headers() {
        if !is_hop_by_hop(k) {
            builder = builder.header(k, v);
        }
    }
    builder
        .body(Body::from_stream(response.bytes_stream()))
        .unwrap_or_else(|e| error_response(StatusCode::BAD_GATEWAY, "bad_gateway", e.to_string()))
}
