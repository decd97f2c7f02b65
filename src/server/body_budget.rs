//! The memory that prediction bodies held whole may use together. The gateway streams a body
//! with a `Content-Length` to its replica as it arrives; one without (chunked) is read whole
//! first, because simple HTTP servers do not read chunked bodies, and that memory is taken
//! from this budget frame by frame. A body that would go over it is refused at once (503):
//! waiting would let half-read bodies hold the budget while each waits for the rest.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How much of a body past its limit is read (and dropped) before the answer.
pub const DRAINED_PAST_LIMIT: usize = 1 << 20;

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("the body is larger than its limit")]
    TooLarge,
    #[error("the server's memory for request bodies without a Content-Length is in use")]
    OverBudget,
    #[error("{0}")]
    Read(axum::Error),
}

/// Reads what is left of `body` and drops it, so that a client still sending hears an early
/// answer (413) rather than a reset. Call only for a body of known, bounded size.
pub async fn discard(mut body: Body) {
    while let Some(Ok(_)) = body.frame().await {}
}

#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

/// Memory taken from the budget, given back when dropped.
pub struct Held(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Held {
    /// Nothing held (a streamed body).
    pub fn nothing() -> Held {
        Held(None)
    }
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Reads `body` whole, at most `max` bytes, holding its size from the budget until the
    /// returned [`Held`] is dropped.
    pub async fn read_whole(
        &self,
        mut body: Body,
        max: usize,
    ) -> Result<(Bytes, Held), BufferError> {
        let mut buf = BytesMut::new();
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut over_budget = false;
        let mut size: usize = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BufferError::Read)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            size = size.saturating_add(data.len());
            // Some of what follows the limit is read and dropped too, so a client that is
            // still sending hears the answer rather than a reset.
            if size > max.saturating_add(DRAINED_PAST_LIMIT) {
                return Err(BufferError::TooLarge);
            }
            if over_budget || size > max {
                (buf, held) = (BytesMut::new(), None);
                continue;
            }
            let permit = u32::try_from(data.len())
                .ok()
                .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok());
            let Some(permit) = permit else {
                // The rest is read and dropped, so the client hears the answer.
                over_budget = true;
                (buf, held) = (BytesMut::new(), None);
                continue;
            };
            match &mut held {
                Some(h) => h.merge(permit),
                None => held = Some(permit),
            }
            buf.extend_from_slice(&data);
        }
        if size > max {
            return Err(BufferError::TooLarge);
        }
        if over_budget {
            return Err(BufferError::OverBudget);
        }
        Ok((buf.freeze(), Held(held)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let frames = parts
            .iter()
            .map(|p| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(p))))
            .collect::<Vec<_>>();
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn bodies_share_the_budget_and_give_it_back() {
        let budget = BodyBudget::new(10);
        let (bytes, held) = budget
            .read_whole(chunked(&[b"abc", b"def"]), 100)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"abcdef");
        let over = budget.read_whole(chunked(&[b"12345"]), 100).await;
        assert!(matches!(over, Err(BufferError::OverBudget)));
        drop(held);
        let (bytes, _held) = budget.read_whole(chunked(&[b"12345"]), 100).await.unwrap();
        assert_eq!(&bytes[..], b"12345");
    }

    #[tokio::test]
    async fn a_body_over_its_limit_is_too_large() {
        let budget = BodyBudget::new(100);
        let over = budget.read_whole(chunked(&[b"abc", b"def"]), 5).await;
        assert!(matches!(over, Err(BufferError::TooLarge)));
        // What it had taken is back.
        let (_b, _h) = budget.read_whole(chunked(&[&[0; 100]]), 100).await.unwrap();
    }
}
