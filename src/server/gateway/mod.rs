//! The prediction gateway: `POST /<api>` (or the API's `networking.endpoint`) is proxied to a
//! ready replica over a pooled keep-alive connection; `GET` answers a usage message. As Model
//! Bazaar routes its deployments, any request under `/<model_id>/` or `/<deployment_name>/`
//! of a RealtimeAPI goes to a replica too, with that prefix taken off (`GET /<id>/health` is
//! the replica's `GET /health`), under the same access rules and admission.
//! Admission (`admission`) decides when a request may go: a replica with room, a bounded wait,
//! or a refusal (503 `not_ready` / `overloaded`); `networking.timeout` bounds the whole request
//! (504), `networking.max_request_size` its body (413).
//!
//! Hot path rules: no database, no lock held across an await, replica picked in O(1).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;

use super::access::{self, Access, Level};
use super::admission::{self, Refusal};
use super::auth::identity_from_headers;
use super::body_budget::{discard, BufferError, Held, DRAINED_PAST_LIMIT};
use super::deadline_body::DeadlineBody;
use super::error::{error_response, ApiError};
use super::live_api::LiveApi;
use super::state::AppState;
use super::status::api_status;
use headers::{is_hop_by_hop, strip};
use refusals::{
    client_body_failed, not_found, timed_out, too_large, unreadable_body, unreadable_target,
    ClientBodyFailed,
};

mod headers;
mod refusals;

/// What a request's body may be: hyper's as read, or the router's.
pub trait ClientBody:
    http_body::Body<Data = Bytes, Error: Into<axum::BoxError>> + Send + Unpin + 'static
{
}

impl<B> ClientBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<axum::BoxError>> + Send + Unpin + 'static
{
}

/// Paths under `/api/v<n>/` belong to the control API (no API may take them).
pub(crate) fn is_control_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v") else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(rest.as_bytes().get(digits), None | Some(b'/'))
}

/// A prediction needs a user token with Read on the model (see [`check_access`]).
pub(crate) async fn check_caller(
    state: &AppState,
    api: &LiveApi,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    let identity = identity_from_headers(state, headers).await?;
    let level = access::level(&identity.caller(), &api.access());
    if level < Level::Read {
        return Err(ApiError::Forbidden(format!(
            "user {} may not call {}: it needs read access to the model (ask its owner, e.g. `cortex access {} --access protected --team <team>`)",
            identity.user.username, api.spec.name, api.spec.name
        )));
    }
    Ok(())
}

/// Answers a request the router's fallback gave to the gateway; `found` is the API deployed at
/// its path ([`crate::server::routes::jobs::target`] looked it up).
///
/// A request's body comes as it was read (hyper's, on a connection thread): it is boxed only
/// on the paths that read it here.
pub async fn answer<B: ClientBody>(
    state: &AppState,
    req: Request<B>,
    found: Option<Arc<LiveApi>>,
) -> Response {
    if let Some(api) = found {
        return predict(state, api, req).await;
    }
    // Messages name the path as it was given (an API's path is matched without a trailing
    // slash).
    let given = req.uri().path().to_string();
    if is_control_path(api_path(&given)) {
        let slash = if given.len() > 1 && given.ends_with('/') {
            " (its routes take no trailing slash)"
        } else {
            ""
        };
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "{} {given} is not a route of the control API{slash}; see the README for its routes",
                req.method()
            ),
        );
    }
    if let Some((segment, rest)) = prefix_of(&given) {
        if let Some(api) = state.deployments.by_prefix(segment) {
            let route = Route::Prefix(segment.to_string());
            let target = match req.uri().query() {
                Some(q) => Uri::try_from(format!("{rest}?{q}")),
                None => Uri::try_from(rest),
            };
            let Ok(target) = target else {
                return unreadable_target(&given);
            };
            if let Err(e) = check_access(state, &api, req.headers()).await {
                return e.into_response();
            }
            return proxy(state, api, route, target, req).await;
        }
    }
    not_found(&given)
}

/// The path an API is deployed at, as `given` names it (without a trailing slash).
fn api_path(given: &str) -> &str {
    match given.trim_end_matches('/') {
        "" => "/",
        path => path,
    }
}

/// `/<segment>/<rest>`: the first segment and the rest (from its `/`), when there is a rest.
fn prefix_of(path: &str) -> Option<(&str, &str)> {
    let tail = path.strip_prefix('/')?;
    let slash = tail.find('/')?;
    let (segment, rest) = tail.split_at(slash);
    (!segment.is_empty()).then_some((segment, rest))
}

/// What a request is routed by, again once its body is in (a deploy may have replaced what
/// served it meanwhile).
enum Route {
    /// An API's path: the request's.
    Path,
    /// The API a TrafficSplitter chose.
    Split { splitter: String, chosen: String },
    /// `/<model_id>/...` or `/<deployment_name>/...`.
    Prefix(String),
}

impl Route {
    /// What serves the route of a request for `uri` now.
    fn resolve(&self, state: &AppState, uri: &Uri) -> Option<Arc<LiveApi>> {
        match self {
            Route::Path => state.deployments.by_path(api_path(uri.path())),
            Route::Split { chosen, .. } => {
                state.deployments.get(chosen).filter(|a| a.is_realtime())
            }
            Route::Prefix(segment) => state.deployments.by_prefix(segment),
        }
    }

    /// The answer when nothing serves the route any more.
    fn gone(&self, uri: &Uri) -> Response {
        match self {
            Route::Path => not_found(api_path(uri.path())),
            Route::Prefix(segment) => not_found(&format!("/{segment}/")),
            Route::Split { splitter, chosen } => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("{chosen}, one of traffic splitter {splitter}'s apis, is not deployed; deploy it, or change the splitter's apis"),
            ),
        }
    }
}

/// On a server beyond loopback, a non-public API needs a caller with Read on it.
async fn check_access(
    state: &AppState,
    api: &LiveApi,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    if state.loopback_only || api.access().access == Access::Public {
        return Ok(());
    }
    check_caller(state, api, headers).await
}

/// A request to an API's path: `POST` predicts (through a TrafficSplitter's choice, for a
/// splitter), `GET` says how (an onnx API's replica answers it, with its model's input
/// signature, as cortex did).
async fn predict<B: ClientBody>(state: &AppState, api: Arc<LiveApi>, req: Request<B>) -> Response {
    if let Err(e) = check_access(state, &api, req.headers()).await {
        return e.into_response();
    }
    let replica_answers_get = api
        .spec
        .predictor
        .as_ref()
        .is_some_and(|p| p.kind == crate::spec::PredictorType::Onnx);
    match *req.method() {
        Method::POST => {}
        Method::GET if replica_answers_get => {}
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
                format!(
                    "{} answers POST (predict) and GET (usage); {} is not supported",
                    api.spec.name,
                    req.method()
                ),
            )
        }
    }
    // A TrafficSplitter passes the request to one of its apis, chosen by weight.
    let (route, api) = match &api.splitter {
        None => (Route::Path, api),
        Some(splitter) => {
            let name = &api.spec.name;
            let Some(chosen) = splitter.pick().map(str::to_string) else {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    format!("traffic splitter {name} gives no api any weight; change its weights"),
                );
            };
            let route = Route::Split {
                splitter: name.clone(),
                chosen,
            };
            let Some(chosen) = route.resolve(state, req.uri()) else {
                return route.gone(req.uri());
            };
            // A splitter's caller needs what a direct caller of the chosen api needs.
            if let Err(e) = check_access(state, &chosen, req.headers()).await {
                return e.into_response();
            }
            (route, chosen)
        }
    };
    // The replica serves the API at its root, with the request's query.
    let target = match req.uri().query() {
        None => Uri::from_static("/"),
        Some(q) => match Uri::try_from(format!("/?{q}")) {
            Ok(target) => target,
            Err(_) => return unreadable_target(&req.uri().to_string()),
        },
    };
    proxy(state, api, route, target, req).await
}

/// Passes `req` (its method, headers and body) to a ready replica of `api` at
/// `path_and_query`, once admitted, and its answer back.
async fn proxy<B: ClientBody>(
    state: &AppState,
    api: Arc<LiveApi>,
    route: Route,
    target: Uri,
    req: Request<B>,
) -> Response {
    let not_ready = |api: &LiveApi| {
        let (name, status) = (&api.spec.name, api_status(api));
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("{name} is not ready (status: {status}); run `cortex get {name}` to see why"),
        )
    };
    let started = Instant::now();
    let timeout = api.spec.networking.timeout.to_std();
    let deadline = tokio::time::Instant::from_std(started) + timeout;
    let max_body =
        usize::try_from(api.spec.networking.max_request_size.bytes).unwrap_or(usize::MAX);
    let (parts, body) = req.into_parts();
    let declared = match parts.headers.get(header::CONTENT_LENGTH) {
        None => None,
        Some(v) => v.to_str().ok().and_then(|v| v.parse::<u64>().ok()),
    };
    // An API that cannot take the request refuses it before its body is read whole (or
    // drained, as too large) for nothing. A body with a Content-Length that fits is streamed
    // once admitted, and admission refuses it with the same answer.
    let read_first = declared.is_none_or(|n| n > max_body as u64);
    if read_first && !api.is_ready() && !api.versions.newest().holds_requests() {
        return not_ready(&api);
    }
    if let Some(n) = declared.filter(|n| *n > max_body as u64) {
        api.metrics.record(413, started.elapsed());
        // A body not much over the limit is read and dropped first: a client still sending
        // it hears the 413 instead of a reset. Larger ones are refused at once.
        if n <= (max_body as u64).saturating_add(DRAINED_PAST_LIMIT as u64) {
            let _ = Box::pin(tokio::time::timeout_at(deadline, discard(Body::new(body)))).await;
        }
        return too_large(&api);
    }
    let (body, _held, api) = match declared {
        // Streamed as it arrives, once admitted (below): a request that waits holds no
        // memory. hyper ends the body at the declared length.
        Some(_) => (
            Body::new(body.map_err(|e| ClientBodyFailed(axum::Error::new(e)))),
            Held::nothing(),
            api,
        ),
        // Read whole (bounded by the limit and the server's budget) so the replica gets a
        // Content-Length: simple HTTP servers often do not read chunked bodies.
        None => {
            let read = state.bodies.read_whole(Body::new(body), max_body);
            // Boxed, as is the wait for a replica with room: the future of every request
            // is moved whole, the parts it does not use too.
            let (bytes, held) = match Box::pin(tokio::time::timeout_at(deadline, read)).await {
                Ok(Ok(read)) => read,
                Ok(Err(BufferError::TooLarge)) => {
                    api.metrics.record(413, started.elapsed());
                    return too_large(&api);
                }
                Ok(Err(BufferError::OverBudget)) => {
                    api.metrics.record(503, started.elapsed());
                    return error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "overloaded",
                        "the server holds as many request bodies without a Content-Length as its memory allows; retry later, or send a Content-Length (such bodies are streamed)",
                    );
                }
                Ok(Err(BufferError::Read(e))) => return unreadable_body(e),
                Err(_) => return timed_out(&api, timeout, started),
            };
            // Routed again once the body is in: a slow upload must go to what serves the
            // path now, not to a generation that an update, a restart or a delete has
            // stopped meanwhile.
            let Some(api) = route.resolve(state, &parts.uri) else {
                return route.gone(&parts.uri);
            };
            (Body::from(bytes), held, api)
        }
    };
    let slot = match admission::admit(&api, deadline).await {
        Ok(slot) => slot,
        Err(Refusal::NotReady) => return not_ready(&api),
        Err(Refusal::TimedOut) => return timed_out(&api, timeout, started),
        Err(Refusal::Overloaded) => {
            api.metrics.record(503, started.elapsed());
            let name = &api.spec.name;
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "{name} is at capacity: every replica has autoscaling.max_replica_concurrency requests in flight and the queue (autoscaling.max_queue_length per replica) is full; retry later, or raise max_replicas"
                ),
            );
        }
    };
    let addr = slot.addr();
    let name = &api.spec.name;
    let mut headers = parts.headers;
    // The caller's credentials are the server's to check, not the replica's to keep.
    strip(&mut headers, |name| {
        is_hop_by_hop(name) || name == header::AUTHORIZATION || name == super::auth::API_KEY
    });
    // The client's Content-Length goes on as it came; several (the head guard saw that they
    // agree) become one.
    if let Some(length) = declared.filter(|_| {
        headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .nth(1)
            .is_some()
    }) {
        headers.insert(header::CONTENT_LENGTH, length.into());
    }
    let forward = state
        .replicas
        .send(parts.method, addr, target, headers, body);
    let response = match tokio::time::timeout_at(deadline, forward).await {
        Err(_) => return timed_out(&api, timeout, started),
        Ok(Ok(r)) => r,
        Ok(Err(e)) if client_body_failed(&e) => return unreadable_body(e),
        Ok(Err(e)) => {
            api.metrics.record(502, started.elapsed());
            return error_response(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                format!("{name}'s replica did not answer: {e}; check `cortex logs {name}`"),
            );
        }
    };
    api.metrics
        .record(response.status().as_u16(), started.elapsed());
    let (mut parts, incoming) = response.into_parts();
    // The answer is passed on as the replica framed it: by its Content-Length (the body's size
    // hint says the same), or in chunks when the replica streamed it.
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    strip(&mut parts.headers, is_hop_by_hop);
    // The slot is held until the answer has been passed on: the replica is busy until then.
    // The deadline covers the body too: a replica that stalls mid-answer is cut off.
    let body = DeadlineBody::new(incoming, deadline, timeout).holding(slot);
    Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use super::is_control_path;

    #[test]
    fn control_paths_are_the_versioned_api() {
        for path in ["/api/v2/deploy/x", "/api/v2", "/api/v10/x"] {
            assert!(is_control_path(path), "{path}");
        }
        for path in [
            "/api",
            "/api/v",
            "/api/vx/y",
            "/apis/v2",
            "/iris",
            "/api/v2x",
        ] {
            assert!(!is_control_path(path), "{path}");
        }
    }
}
