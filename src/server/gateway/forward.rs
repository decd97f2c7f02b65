//! Passing a prediction on to a replica: its body's limits, admission, and the request as the
//! replica gets it (`forwarding.rs` waits for the answer). Each step decides at once when it
//! can; only what has to wait is boxed and awaited (`answer.rs`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, request, Request, StatusCode, Uri};
use axum::response::Response;
use http_body_util::BodyExt;

use super::answer::Answer;
use super::forwarding::{Clock, Forwarding, Sent};
use super::headers::{is_hop_by_hop, strip};
use super::refusals::{not_found, timed_out, too_large, unreadable_body, ClientBodyFailed};
use super::route::Route;
use crate::server::admission::{self, Refusal};
use crate::server::body_budget::{discard, BufferError, Held, DRAINED_PAST_LIMIT};
use crate::server::error::error_response;
use crate::server::live_api::LiveApi;
use crate::server::state::AppState;
use crate::server::status::api_status;

/// What a request's body may be: hyper's as read, or the router's.
pub trait ClientBody:
    http_body::Body<Data = Bytes, Error: Into<axum::BoxError>> + Send + Unpin + 'static
{
}

impl<B> ClientBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<axum::BoxError>> + Send + Unpin + 'static
{
}

/// 503: `api` has no replica ready and none coming.
fn not_ready(api: &LiveApi) -> Response {
    let (name, status) = (&api.spec.name, api_status(api));
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        format!("{name} is not ready (status: {status}); run `cortex get {name}` to see why"),
    )
}

/// Passes `req` (its method, headers and body) to a ready replica of `api` at `target` (a
/// path and query), once admitted, and its answer back.
pub(super) fn proxy<B: ClientBody>(
    state: &Arc<AppState>,
    api: Arc<LiveApi>,
    route: Route,
    target: Uri,
    req: Request<B>,
) -> Answer {
    let clock = Clock::start(&api);
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
        return Answer::now(not_ready(&api));
    }
    if let Some(n) = declared.filter(|n| *n > max_body as u64) {
        api.metrics.record(413, clock.started.elapsed());
        // A body not much over the limit is read and dropped first: a client still sending
        // it hears the 413 instead of a reset. Larger ones are refused at once.
        if n <= (max_body as u64).saturating_add(DRAINED_PAST_LIMIT as u64) {
            return Answer::later(async move {
                let _ = tokio::time::timeout_at(clock.deadline, discard(Body::new(body))).await;
                too_large(&api)
            });
        }
        return Answer::now(too_large(&api));
    }
    if let Some(length) = declared {
        // Streamed as it arrives, once admitted: a request that waits holds no memory.
        // hyper ends the body at the declared length. The client's Content-Length goes on as
        // it came; several (the head guard saw that they agree) become one.
        let mut parts = parts;
        if parts
            .headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .nth(1)
            .is_some()
        {
            parts.headers.insert(header::CONTENT_LENGTH, length.into());
        }
        let body = Body::new(body.map_err(|e| ClientBodyFailed(axum::Error::new(e))));
        let request = Admitting {
            parts,
            target,
            body,
            held: Held::nothing(),
            route,
        };
        return admit(state, api, request, clock);
    }
    // Read whole (bounded by the limit and the server's budget) so the replica gets a
    // Content-Length: simple HTTP servers often do not read chunked bodies.
    let state = state.clone();
    Answer::later(async move {
        let read = state.bodies.read_whole(Body::new(body), max_body);
        let (bytes, held) = match tokio::time::timeout_at(clock.deadline, read).await {
            Ok(Ok(read)) => read,
            Ok(Err(BufferError::TooLarge)) => {
                api.metrics.record(413, clock.started.elapsed());
                return too_large(&api);
            }
            Ok(Err(BufferError::OverBudget)) => {
                api.metrics.record(503, clock.started.elapsed());
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "the server holds as many request bodies without a Content-Length as its memory allows; retry later, or send a Content-Length (such bodies are streamed)",
                );
            }
            Ok(Err(BufferError::Read(e))) => return unreadable_body(e),
            Err(_) => return timed_out(&api, clock.timeout, clock.started),
        };
        // Routed again once the body is in: a slow upload must go to what serves the path
        // now, not to a generation that an update, a restart or a delete has stopped
        // meanwhile.
        let Some(api) = route.resolve(&state, &parts.uri) else {
            return route.gone(&parts.uri);
        };
        let body = Body::from(bytes);
        let request = Admitting {
            parts,
            target,
            body,
            held,
            route,
        };
        admit(&state, api, request, clock).await
    })
}

/// A request on its way to admission: what it is sent as, and what it is routed by.
struct Admitting {
    parts: request::Parts,
    target: Uri,
    body: Body,
    held: Held,
    route: Route,
}

/// Sends the request once a replica of `api` has room for it: now, or after a wait in the
/// API's queue (following its route to what serves it, should a deploy or a delete replace
/// `api` meanwhile).
fn admit(state: &Arc<AppState>, api: Arc<LiveApi>, request: Admitting, clock: Clock) -> Answer {
    let Admitting {
        parts,
        target,
        body,
        held,
        route,
    } = request;
    match admission::now(&api) {
        Some(Ok(slot)) => {
            let sent = Sent::new(api, slot, held, clock);
            send(state, sent, parts, target, body)
        }
        Some(Err(refusal)) => Answer::now(refused(&api, refusal, clock)),
        None => {
            let state = state.clone();
            Answer::later(async move {
                let serving = || route.resolve(&state, &parts.uri);
                match admission::wait(api.clone(), clock.deadline, serving).await {
                    Ok((api, slot)) => {
                        let sent = Sent::new(api, slot, held, clock);
                        send(&state, sent, parts, target, body).await
                    }
                    Err(Refusal::Gone) => route.gone(&parts.uri),
                    Err(refusal) => refused(&api, refusal, clock),
                }
            })
        }
    }
}

/// Why `api` did not take the request.
fn refused(api: &LiveApi, refusal: Refusal, clock: Clock) -> Response {
    match refusal {
        Refusal::NotReady => not_ready(api),
        Refusal::TimedOut => timed_out(api, clock.timeout, clock.started),
        Refusal::Gone => not_found(&api.spec.networking.endpoint),
        Refusal::Overloaded => {
            api.metrics.record(503, clock.started.elapsed());
            let name = &api.spec.name;
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "{name} is at capacity: every replica has autoscaling.max_replica_concurrency requests in flight and the queue (autoscaling.max_queue_length per replica) is full; retry later, or raise max_replicas"
                ),
            )
        }
    }
}

/// Hands the request to the replica it was admitted to, without the headers that are not
/// the replica's.
fn send(state: &AppState, sent: Sent, parts: request::Parts, target: Uri, body: Body) -> Answer {
    let mut headers = parts.headers;
    // The caller's credentials are the server's to check, not the replica's to keep.
    strip(&mut headers, |name| {
        is_hop_by_hop(name) || name == header::AUTHORIZATION || name == super::super::auth::API_KEY
    });
    let sending = state
        .replicas
        .send(parts.method, sent.addr(), target, headers, body);
    Answer::forwarding(Forwarding::new(sending, sent))
}
