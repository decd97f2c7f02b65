//! A response body that ends with an error once a deadline passes: the gateway's
//! `networking.timeout` bounds the whole answer, not only its head. A replica that sends its
//! headers and then stalls does not hold its admission slot (or the caller) past the deadline;
//! the caller's connection is cut, since the status line has already gone out. (A caller that
//! stops reading holds the slot until its connection goes: the body is not polled meanwhile.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why the body ended early.
#[derive(Debug, thiserror::Error)]
#[error("the replica did not finish its answer within the api's timeout of {}s", .0.as_secs())]
pub struct BodyTimedOut(Duration);

/// `B` until its deadline, holding `H` (the replica's admission slot) as long as it lives.
pub struct DeadlineBody<B, H = ()> {
    inner: B,
    /// Whatever must live as long as the body.
    _held: H,
    deadline: Instant,
    /// Made the first time the body has to wait: an answer that is all there when its head
    /// is (most are) never allocates a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    /// Whether a frame was asked for yet (the first comes just after the deadline was seen
    /// not to have passed: its clock reading is saved).
    polled: bool,
}

impl<B> DeadlineBody<B> {
    /// `inner` until `deadline`; `timeout` is only for the error's message.
    pub fn new(inner: B, deadline: Instant, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            _held: (),
            deadline,
            sleep: None,
            timeout,
            polled: false,
        }
    }

    /// Keeps `held` until the body is dropped (after its last frame went out, or the caller
    /// went away). Unlike a frame-mapping wrapper, this keeps the body's size hint, so a
    /// replica's `Content-Length` answer reaches the client with its length, not in chunks.
    pub fn holding<H>(self, held: H) -> DeadlineBody<B, H> {
        DeadlineBody {
            inner: self.inner,
            _held: held,
            deadline: self.deadline,
            sleep: self.sleep,
            timeout: self.timeout,
            polled: self.polled,
        }
    }
}

impl<B, H> http_body::Body for DeadlineBody<B, H>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
    H: Unpin,
{
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let timeout = this.timeout;
        let timed_out = move || Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(timeout)))));
        // Checked first as well: a body that always has a frame ready must end too.
        if this.polled && Instant::now() >= this.deadline {
            return timed_out();
        }
        this.polled = true;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(axum::Error::new)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => timed_out(),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_finished_body_passes_through() {
        let body = DeadlineBody::new(
            Body::from("done"),
            Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"done");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_pauses_ends_at_the_deadline_too() {
        let endless = futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x")))
        });
        let started = Instant::now();
        let mut body = DeadlineBody::new(
            Body::new(http_body_util::StreamBody::new(endless)),
            started + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut frames = 0u64;
        loop {
            match body.frame().await {
                Some(Ok(_)) => frames += 1,
                Some(Err(e)) => {
                    assert!(e.to_string().contains("timeout of 1s"), "{e}");
                    break;
                }
                None => panic!("an endless body ended"),
            }
            if frames.is_multiple_of(1000) {
                tokio::time::advance(Duration::from_millis(100)).await;
            }
        }
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_with_an_error_at_the_deadline() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stalled = Body::new(http_body_util::StreamBody::new(tokio_stream_from(rx)));
        let started = Instant::now();
        let body = DeadlineBody::new(
            stalled,
            started + Duration::from_secs(3),
            Duration::from_secs(3),
        );
        let Err(err) = body.collect().await else {
            panic!("the body should end with a timeout")
        };
        assert!(err.to_string().contains("timeout of 3s"), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
