//! A prediction handed to a replica: what it holds until the replica answers (its slot, its
//! deadline), and the answer as the client gets it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::time::Timeout;

use super::headers::{is_hop_by_hop, strip};
use super::refusals::{client_body_failed, timed_out, unreadable_body};
use crate::server::body_budget::Held;
use crate::server::deadline_body::DeadlineBody;
use crate::server::error::error_response;
use crate::server::live_api::LiveApi;
use crate::server::replica_client::{ReplicaBody, ReplicaError, Sending};
use crate::server::replica_set::Slot;

/// When a request began, and how long it may take (`networking.timeout`).
#[derive(Clone, Copy)]
pub(super) struct Clock {
    pub(super) started: Instant,
    pub(super) timeout: Duration,
    pub(super) deadline: tokio::time::Instant,
}

impl Clock {
    /// From now, for `api`.
    pub(super) fn start(api: &LiveApi) -> Clock {
        let started = Instant::now();
        // Bounded as a written duration is (a stored spec may predate the bound).
        let most = std::time::Duration::from_secs(crate::spec::Duration::MAX_SECONDS);
        let timeout = api.spec.networking.timeout.to_std().min(most);
        Clock {
            started,
            timeout,
            deadline: tokio::time::Instant::from_std(started) + timeout,
        }
    }
}

/// What a request sent to a replica holds until the replica answers.
pub(super) struct Sent {
    api: Arc<LiveApi>,
    slot: Slot,
    /// The request body's share of the server's budget, when it was read whole: given back
    /// once the replica answers.
    _held: Held,
    clock: Clock,
}

impl Sent {
    pub(super) fn new(api: Arc<LiveApi>, slot: Slot, held: Held, clock: Clock) -> Sent {
        Sent {
            api,
            slot,
            _held: held,
            clock,
        }
    }

    /// The replica the request was admitted to.
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        self.slot.addr()
    }
}

pin_project! {
    /// A request handed to a replica, until its answer's head comes or its deadline passes.
    pub struct Forwarding {
        #[pin]
        answer: Timeout<Sending>,
        sent: Option<Sent>,
    }
}

impl Forwarding {
    pub(super) fn new(sending: Sending, sent: Sent) -> Forwarding {
        Forwarding {
            answer: tokio::time::timeout_at(sent.clock.deadline, sending),
            sent: Some(sent),
        }
    }
}

impl Future for Forwarding {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let outcome = ready!(this.answer.poll(cx));
        match this.sent.take() {
            Some(sent) => Poll::Ready(answered(sent, outcome)),
            None => panic!("a forwarded request was polled after it was answered"),
        }
    }
}

/// The replica's answer as the client gets it, or why there is none.
fn answered(
    sent: Sent,
    answered: Result<Result<Response<ReplicaBody>, ReplicaError>, tokio::time::error::Elapsed>,
) -> Response {
    let Sent {
        api, slot, clock, ..
    } = sent;
    let response = match answered {
        Err(_) => return timed_out(&api, clock.timeout, clock.started),
        Ok(Ok(r)) => r,
        Ok(Err(e)) if client_body_failed(&e) => return unreadable_body(e),
        Ok(Err(e)) => {
            api.metrics.record(502, clock.started.elapsed());
            let name = &api.spec.name;
            return error_response(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                format!("{name}'s replica did not answer: {e}; check `cortex logs {name}`"),
            );
        }
    };
    api.metrics
        .record(response.status().as_u16(), clock.started.elapsed());
    let (mut parts, incoming) = response.into_parts();
    // The answer is passed on as the replica framed it: by its Content-Length (the body's size
    // hint says the same), or in chunks when the replica streamed it.
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    strip(&mut parts.headers, is_hop_by_hop);
    // The slot is held until the answer has been passed on: the replica is busy until then.
    // The deadline covers the body too: a replica that stalls mid-answer is cut off.
    let body = DeadlineBody::new(incoming, clock.deadline, clock.timeout).holding(slot);
    Response::from_parts(parts, Body::new(body))
}
