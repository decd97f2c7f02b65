//! Slots given back on an API's replicas, and the requests waiting for one (`admission`).
//! A request waiting for room listens; whoever gives a slot back tells a listener only when
//! there is one. The usual request finds room at once and never listens, so giving its slot
//! back touches nothing shared beyond the replica's count of requests in flight.
//!
//! No wake-up is lost: a listener counts itself in before it looks for room, and a slot is
//! given back (its replica's count lowered) before the listeners are counted, both in one
//! total order (`SeqCst`). Either the listener's look finds the room, or the one who gave it
//! back sees the listener and tells it.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Told whenever a slot on one of an API's replicas is given back (shared by every version of
/// the API).
#[derive(Debug, Default)]
pub struct Freed {
    told: Notify,
    listening: AtomicUsize,
}

impl Freed {
    /// Counts the caller in as waiting for a slot, until the returned guard is dropped. Call
    /// it before looking for room.
    pub fn listen(&self) -> Listening<'_> {
        self.listening.fetch_add(1, Ordering::SeqCst);
        Listening(self)
    }

    /// A slot was given back (after its replica's count was lowered, `SeqCst`): tells one
    /// listener, if any listens.
    pub fn gave_back(&self) {
        if self.listening.load(Ordering::SeqCst) > 0 {
            self.told.notify_one();
        }
    }
}

/// A request waiting for a slot.
pub struct Listening<'a>(&'a Freed);

impl Listening<'_> {
    /// Resolves when a slot is given back after it was created (or after a slot given back
    /// that no one was waiting for since); enable it before looking for room.
    pub fn next(&self) -> Notified<'_> {
        self.0.told.notified()
    }
}

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        self.0.listening.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::Freed;

    #[tokio::test]
    async fn a_listener_is_told_of_a_slot_given_back() {
        let freed = Arc::new(Freed::default());
        let listening = freed.listen();
        let next = listening.next();
        tokio::pin!(next);
        next.as_mut().enable();
        let giver = freed.clone();
        std::thread::spawn(move || giver.gave_back());
        tokio::time::timeout(Duration::from_secs(10), next)
            .await
            .expect("the listener was not told");
    }

    #[test]
    fn without_listeners_a_slot_given_back_leaves_nothing_behind() {
        let freed = Freed::default();
        freed.gave_back();
        let listening = freed.listen();
        // A permit left behind would make the first poll ready.
        let told = futures_util::FutureExt::now_or_never(listening.next());
        assert!(
            told.is_none(),
            "a slot given back before anyone listened woke a listener"
        );
    }

    /// Many slots taken and given back on other threads while one request waits for room:
    /// it always gets one (no wake-up lost between its look and its wait).
    #[test]
    fn no_wake_up_is_lost_between_a_look_and_a_wait() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for _ in 0..2_000 {
            let freed = Arc::new(Freed::default());
            let in_flight = Arc::new(AtomicU32::new(1));
            let (giver_freed, giver_count) = (freed.clone(), in_flight.clone());
            let giver = std::thread::spawn(move || {
                giver_count.fetch_sub(1, Ordering::SeqCst);
                giver_freed.gave_back();
            });
            runtime.block_on(async {
                let listening = freed.listen();
                loop {
                    let next = listening.next();
                    tokio::pin!(next);
                    next.as_mut().enable();
                    if in_flight.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    tokio::time::timeout(Duration::from_secs(10), next)
                        .await
                        .expect("a slot was given back and the waiter was never told");
                }
            });
            giver.join().unwrap();
        }
    }
}
