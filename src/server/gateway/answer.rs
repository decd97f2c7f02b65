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
use std::task::{Context, Poll};

use axum::response::Response;
use pin_project_lite::pin_project;

use super::forwarding::Forwarding;

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
