//! A job's way to the database: one thread per job, shared by its feeders, that writes each
//! batch's outcome as soon as it is known, and leases the next batches in the same
//! transaction as the outcomes still waiting. Outcomes that arrive while a write is under way
//! go into the next one (whichever worker they come from), so a worker's batches are
//! committed one by one as they complete, while the outcomes of fast or many workers still
//! share transactions. Each outcome given gets a ticket, and a feeder can wait until the
//! outcomes up to a ticket are committed ([`Settler::committed`]): that is how it holds a
//! worker to at most two batches whose outcomes are not committed (see `feeder.rs`). The
//! writer is a thread of its own rather than a task that hands each write to the blocking
//! pool: an outcome's way to its commit and back to the feeder takes two thread wake-ups
//! instead of four, and a worker waits for that way between batches.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::Shared;
use crate::clock::now_ms;
use crate::store::batches;
use crate::store::Store;

/// How often a write that failed is tried again before its outcomes are given up (their
/// leases then lapse and the batches are delivered again: at least once still holds).
const WRITE_ATTEMPTS: u32 = 5;

enum Msg {
    Settle(batches::Settle),
    Lease {
        n: usize,
        visibility_ms: i64,
        reply: oneshot::Sender<Result<Vec<batches::Lease>, String>>,
    },
    Flush(oneshot::Sender<()>),
}

/// The handle a job's feeders share; the writing task ends when it is dropped.
pub(super) struct Settler {
    /// The way to the writer, with the settles given so far (the last one's ticket): a
    /// settle's ticket is its place in the channel.
    tx: Mutex<(mpsc::UnboundedSender<Msg>, u64)>,
    /// How many of the settles given are written (or given up on): the writer moves it on
    /// after each transaction.
    written: watch::Receiver<u64>,
}

/// A settle's place in the order its feeder gave them: settle `n` is written once
/// [`Settler::committed`] counts `n` or more.
pub(super) type Ticket = u64;

impl Settler {
    pub fn spawn(shared: Arc<Shared>, job_id: String) -> Settler {
        let (tx, rx) = mpsc::unbounded_channel();
        let (written_tx, written) = watch::channel(0);
        let store = shared.store.clone();
        let spawned = std::thread::Builder::new()
            .name("cortex-job-writer".to_string())
            .spawn(move || write_loop(store, job_id, rx, written_tx));
        if let Err(e) = spawned {
            // The channel's receiver is gone with the closure: leases and flushes answer at
            // once, outcomes are not written (their leases lapse; at least once holds).
            tracing::error!("cannot start a job's writer thread: {e}");
        }
        Settler {
            tx: Mutex::new((tx, 0)),
            written,
        }
    }

    fn send(&self, msg: Msg) -> Result<(), ()> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        tx.0.send(msg).map_err(|_| ())
    }

    /// Writes `settle` as soon as the database is free; its ticket.
    pub fn settle(&self, settle: batches::Settle) -> Ticket {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.0.send(Msg::Settle(settle));
        tx.1 += 1;
        tx.1
    }

    /// How many of the settles given so far are written (or given up on after
    /// `WRITE_ATTEMPTS` tries: their leases lapse and the batches run again), to wait on
    /// with `changed()`. Settles are written in the order they are given.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.written.clone()
    }

    /// Leases up to `n` batches, after (and with) every outcome given so far. `Err`: nothing
    /// of the transaction was applied (the outcomes are tried again).
    pub async fn lease(&self, n: usize, visibility_ms: i64) -> Result<Vec<batches::Lease>, String> {
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Lease {
            n,
            visibility_ms,
            reply,
        };
        if self.send(msg).is_err() {
            return Err("the job's writer ended".to_string());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the job's writer ended".to_string()))
    }

    /// Waits until every outcome given so far is written (or given up).
    pub async fn flushed(&self) {
        let (done, wait) = oneshot::channel();
        if self.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Writes what the feeder sends, everything waiting in one transaction at a time.
fn write_loop(
    store: Store,
    job_id: String,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    written: watch::Sender<u64>,
) {
    let mut settles: Vec<batches::Settle> = Vec::new();
    let mut failures = 0;
    // Settles taken from the channel so far: once a round ends with none waiting, all of
    // them are written (or given up on).
    let mut taken: u64 = 0;
    while let Some(first) = rx.blocking_recv() {
        let (mut leases, mut flushes) = (Vec::new(), Vec::new());
        let mut take = |msg| match msg {
            Msg::Settle(s) => {
                settles.push(s);
                taken += 1;
            }
            Msg::Lease {
                n,
                visibility_ms,
                reply,
            } => leases.push((n, visibility_ms, reply)),
            Msg::Flush(done) => flushes.push(done),
        };
        take(first);
        while let Ok(msg) = rx.try_recv() {
            take(msg);
        }
        loop {
            // Every feeder asking gets its share of one round's leases, in the order asked.
            let n: usize = leases.iter().map(|(n, _, _)| *n).sum();
            let visibility = leases.iter().map(|(_, v, _)| *v).max().unwrap_or(0);
            let round = store.call_here(|c| {
                batches::settle_and_lease(c, &job_id, &settles, now_ms(), visibility, n)
            });
            match round {
                Ok((_, leased)) => {
                    settles.clear();
                    failures = 0;
                    let mut leased = leased.into_iter();
                    for (n, _, reply) in leases.drain(..) {
                        let _ = reply.send(Ok(leased.by_ref().take(n).collect()));
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!("cannot write the batches of job {job_id}: {e}");
                    failures += 1;
                    for (_, _, reply) in leases.drain(..) {
                        let _ = reply.send(Err(e.to_string()));
                    }
                    if failures >= WRITE_ATTEMPTS {
                        settles.clear();
                        failures = 0;
                        break;
                    }
                    if settles.is_empty() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        // Nothing taken is left waiting: written, or given up on.
        written.send_replace(taken);
        for done in flushes {
            let _ = done.send(());
        }
    }
}
