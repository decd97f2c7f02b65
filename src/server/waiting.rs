//! The requests of one API waiting for a replica (see `admission`): how many wait, bounded,
//! and a signal for the autoscaler when one starts waiting.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// The waiting requests of one API.
#[derive(Debug, Default)]
pub struct Queue {
    waiting: AtomicU32,
    /// Told when a request starts waiting (the autoscaler starts a replica for it at once
    /// when there is none).
    demand: Notify,
}

impl Queue {
    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Resolves when a request starts waiting.
    pub async fn demand(&self) {
        self.demand.notified().await
    }

    fn try_enter(&self, cap: u32) -> bool {
        let entered = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok();
        if entered {
            self.demand.notify_waiters();
        }
        entered
    }
}

/// What has a queue of waiting requests (an API as the server runs it).
pub trait Queued {
    fn queue(&self) -> &Queue;
}

/// A place in an API's queue, given up when dropped.
pub(super) struct Waiting<A: Queued>(Arc<A>);

impl<A: Queued> Waiting<A> {
    /// A place in `api`'s queue if it has fewer than `cap` waiting.
    pub(super) fn enter(api: &Arc<A>, cap: u32) -> Option<Waiting<A>> {
        api.queue().try_enter(cap).then(|| Waiting(api.clone()))
    }

    /// The API whose queue it is in.
    pub(super) fn api(&self) -> &Arc<A> {
        &self.0
    }
}

impl<A: Queued> Drop for Waiting<A> {
    fn drop(&mut self) {
        self.0.queue().waiting.fetch_sub(1, Ordering::AcqRel);
    }
}
