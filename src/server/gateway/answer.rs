//! A prediction's answer as the gateway gives it: at once (a refusal, a usage message), the
//! replica's once it comes, or after a wait the request had to make first (boxed: an access
//! check, a body read whole, room at a busy replica).
//!
//! A request that need not wait is decided without awaiting anything, and what is left to
//! await holds only what its answer needs. A request's future is allocated and moved whole,
//! so what it holds and never uses costs on every request: nested `async fn`s each keep their
//! arguments beside the future they await.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::time::Timeout;

use crate::server::body_budget::Held;
use crate::server::live_api::LiveApi;
use crate::server::replica_client::Sending;
use crate::server::replica_set::Slot;

pin_project! {
    /// A prediction's answer.
    #[project = AnswerProj]
    pub enum Answer {
        Now { response: Option<Response> },
        Forwarding { #[pin] forwarding: Forwarding },
        Later { later: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

impl Answer {
    pub(super) fn now(response: Response) -> Answer {
        Answer::Now {
            response: Some(response),
        }
    }

    pub(super) fn later(later: impl Future<Output = Response> + Send + 'static) -> Answer {
        Answer::Later {
            later: Box::pin(later),
        }
    }

    pub(super) fn forwarding(forwarding: Forwarding) -> Answer {
        Answer::Forwarding { forwarding }
    }
}

impl Future for Answer {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        match self.project() {
            AnswerProj::Now { response } => match response.take() {
                Some(response) => Poll::Ready(response),
                None => panic!("an answer was polled after it was given"),
            },
            AnswerProj::Forwarding { forwarding } => forwarding.poll(cx),
            AnswerProj::Later { later } => later.as_mut().poll(cx),
        }
    }
}

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
        let timeout = api.spec.networking.timeout.to_std();
        Clock {
            started,
            timeout,
            deadline: tokio::time::Instant::from_std(started) + timeout,
        }
    }
}

/// What a request sent to a replica holds until the replica answers.
pub(super) struct Sent {
    pub(super) api: Arc<LiveApi>,
    pub(super) slot: Slot,
    /// The request body's share of the server's budget, when it was read whole: given back
    /// once the replica answers.
    pub(super) _held: Held,
    pub(super) clock: Clock,
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
        let answered = ready!(this.answer.poll(cx));
        match this.sent.take() {
            Some(sent) => Poll::Ready(super::forward::answered(sent, answered)),
            None => panic!("a forwarded request was polled after it was answered"),
        }
    }
}
