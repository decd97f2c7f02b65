//! Connections spread evenly over the threads that accept from one listener. Every thread is
//! woken for each new connection and the first to call `accept` gets it: a thread that
//! happened to be idle when a client opened its connections can end up with most of them,
//! and serve them on one core while the other cores wait. A thread takes a connection only
//! while it holds no more than the fewest any thread holds, plus one; otherwise it leaves it
//! to the others, and looks again when a thread takes or closes one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// How many connections each thread holds.
pub(super) struct Share {
    held: Vec<AtomicUsize>,
    changed: Notify,
}

impl Share {
    /// The share of `threads` threads; each takes its [`Turn`] by its index.
    pub(super) fn new(threads: usize) -> Arc<Share> {
        Arc::new(Share {
            held: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            changed: Notify::new(),
        })
    }
}

/// One thread's place in a [`Share`].
pub(super) struct Turn {
    share: Arc<Share>,
    me: usize,
}

impl Turn {
    pub(super) fn new(share: Arc<Share>, me: usize) -> Turn {
        assert!(
            me < share.held.len(),
            "thread {me} has no place in the share"
        );
        Turn { share, me }
    }

    /// Whether this thread may take the next connection.
    fn mine(&self) -> bool {
        let held = |n: &AtomicUsize| n.load(Ordering::Relaxed);
        let fewest = self.share.held.iter().map(held).min().unwrap_or(0);
        held(&self.share.held[self.me]) <= fewest + 1
    }

    /// Returns once this thread may take the next connection.
    pub(super) async fn wait(&self) {
        loop {
            // Registered before looking, so a change in between is not missed.
            let changed = self.share.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.mine() {
                return;
            }
            changed.await;
        }
    }

    /// Counts a connection this thread took, until the returned value is dropped.
    pub(super) fn took(&self) -> Held {
        self.share.held[self.me].fetch_add(1, Ordering::Relaxed);
        self.share.changed.notify_waiters();
        Held {
            share: self.share.clone(),
            me: self.me,
        }
    }
}

/// A connection counted in its thread's share.
pub(super) struct Held {
    share: Arc<Share>,
    me: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.share.held[self.me].fetch_sub(1, Ordering::Relaxed);
        self.share.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_thread_ahead_by_two_waits_until_another_catches_up_or_one_closes() {
        let share = Share::new(2);
        let (a, b) = (Turn::new(share.clone(), 0), Turn::new(share, 1));
        a.wait().await;
        let first = a.took();
        a.wait().await;
        let _second = a.took();
        // Two to none: the first thread leaves the next one to the other.
        assert!(!a.mine(), "a thread two ahead may take another connection");
        assert!(b.mine());
        let waiter = tokio::spawn(async move {
            a.wait().await;
        });
        // One of its connections closes: its turn comes back.
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the thread was not told that one of its connections closed")
            .unwrap();
    }
}
