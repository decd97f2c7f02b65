//! A future that does the work, with another beside it that only watches (a timer, a
//! shutdown signal), polled only when its own waker fires. `tokio::select!` polls every branch
//! each time its task wakes: for a connection, that is every read and write, and the
//! watcher's timer or signal was looked at each time for nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Which of the two ended, with its output.
#[derive(Debug, PartialEq)]
pub enum Ended<M, S> {
    Main(M),
    Side(S),
}

/// Runs `main` and `side` until either ends. `main` is polled each time the task wakes;
/// `side` when it is first polled and then only after it has woken the task itself.
pub fn beside<M, S>(main: M, side: S) -> Beside<M, S>
where
    M: Future + Unpin,
    S: Future,
{
    Beside {
        main,
        side: Box::pin(side),
        side_waker: Arc::new(SideWaker {
            woke: AtomicBool::new(true),
            task: Mutex::new(None),
        }),
        task: None,
    }
}

pub struct Beside<M, S> {
    main: M,
    side: Pin<Box<S>>,
    side_waker: Arc<SideWaker>,
    /// The task's waker as `side_waker` holds it.
    task: Option<Waker>,
}

/// The waker `side` is polled with: it notes that `side` woke, then wakes the task.
struct SideWaker {
    woke: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for SideWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woke.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<M: Future + Unpin, S: Future> Future for Beside<M, S> {
    type Output = Ended<M::Output, S::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // A spawned task's waker stays the same: this is a comparison, not a lock.
        if !this.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let task = cx.waker().clone();
            *this
                .side_waker
                .task
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(task.clone());
            this.task = Some(task);
        }
        if let Poll::Ready(out) = Pin::new(&mut this.main).poll(cx) {
            return Poll::Ready(Ended::Main(out));
        }
        if this.side_waker.woke.load(Ordering::Relaxed)
            && this.side_waker.woke.swap(false, Ordering::Acquire)
        {
            let waker = Waker::from(this.side_waker.clone());
            if let Poll::Ready(out) = this.side.as_mut().poll(&mut Context::from_waker(&waker)) {
                return Poll::Ready(Ended::Side(out));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; ready at its `n`th.
    struct Counting<'a> {
        polls: &'a Cell<u32>,
        ready_at: u32,
    }

    impl Future for Counting<'_> {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls.set(self.polls.get() + 1);
            if self.polls.get() >= self.ready_at {
                return Poll::Ready(self.polls.get());
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn the_side_is_polled_once_while_the_main_future_wakes_its_task() {
        let (main_polls, side_polls) = (Cell::new(0), Cell::new(0));
        let main = Counting {
            polls: &main_polls,
            ready_at: 50,
        };
        let side = std::future::poll_fn(|_| {
            side_polls.set(side_polls.get() + 1);
            Poll::<()>::Pending
        });
        let ended = beside(main, side).await;
        assert_eq!(ended, Ended::Main(50));
        assert_eq!(side_polls.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_that_wakes_is_polled_again_and_can_end_it() {
        let main = std::future::pending::<()>();
        let side = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            7
        };
        let started = tokio::time::Instant::now();
        assert_eq!(beside(main, side).await, Ended::Side(7));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn a_side_woken_from_another_thread_wakes_the_task() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let (polled_tx, polled) = std::sync::mpsc::channel::<()>();
        let sender = std::thread::spawn(move || {
            polled.recv().unwrap();
            let _ = tx.send(3);
        });
        let side = async move {
            let _ = polled_tx.send(());
            rx.await
        };
        let ended = runtime.block_on(beside(std::future::pending::<()>(), side));
        sender.join().unwrap();
        assert_eq!(ended, Ended::Side(Ok(3)));
    }
}
