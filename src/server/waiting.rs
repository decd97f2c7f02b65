//! The requests of one API waiting for a replica (see `admission`): how many wait, bounded,
//! and a signal for the autoscaler when one starts waiting.

use std::sync::atomic::{AtomicU32, Ordering};

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

    /// A place in the queue if it has fewer than `cap` waiting.
    pub(super) fn enter(&self, cap: u32) -> Option<Waiting<'_>> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()?;
        self.demand.notify_waiters();
        Some(Waiting(self))
    }
}

/// A place in the queue, given up when dropped.
pub(super) struct Waiting<'a>(&'a Queue);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}
