//! A feeder's way to the database: one task per feeder that writes each batch's outcome as
//! soon as it is known, and leases the next batches in the same transaction as the outcomes
//! still waiting. Outcomes that arrive while a write is under way go into the next one, so a
//! worker's batches are committed one by one as they complete, while a fast worker's outcomes
//! still share transactions. Each outcome given gets a ticket, and the feeder can wait until
//! the outcomes up to a ticket are committed ([`Settler::committed`]): that is how it holds a
//! worker to at most one batch completed but not committed (see `feeder.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::Shared;
use crate::clock::now_ms;
use crate::store::jobs;

/// How often a write that failed is tried again before its outcomes are given up (their
/// leases then lapse and the batches are delivered again: at least once still holds).
const WRITE_ATTEMPTS: u32 = 5;

enum Msg {
    Settle(jobs::Settle),
    Lease {
        n: usize,
        visibility_ms: i64,
        reply: oneshot::Sender<Result<Vec<jobs::Lease>, String>>,
    },
    Flush(oneshot::Sender<()>),
}

/// The handle a feeder holds; the writing task ends when it is dropped.
pub(super) struct Settler {
    tx: mpsc::UnboundedSender<Msg>,
    /// Settles given so far (the last one's ticket).
    given: AtomicU64,
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
        tokio::spawn(write_loop(shared, job_id, rx, written_tx));
        Settler {
            tx,
            given: AtomicU64::new(0),
            written,
        }
    }

    /// Writes `settle` as soon as the database is free; its ticket.
    pub fn settle(&self, settle: jobs::Settle) -> Ticket {
        let _ = self.tx.send(Msg::Settle(settle));
        self.given.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// How many of the settles given so far are written (or given up on after
    /// `WRITE_ATTEMPTS` tries: their leases lapse and the batches run again), to wait on
    /// with `changed()`. Settles are written in the order they are given.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.written.clone()
    }

    /// Leases up to `n` batches, after (and with) every outcome given so far. `Err`: nothing
    /// of the transaction was applied (the outcomes are tried again).
    pub async fn lease(&self, n: usize, visibility_ms: i64) -> Result<Vec<jobs::Lease>, String> {
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Lease {
            n,
            visibility_ms,
            reply,
        };
        if self.tx.send(msg).is_err() {
            return Err("the job's writer ended".to_string());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the job's writer ended".to_string()))
    }

    /// Waits until every outcome given so far is written (or given up).
    pub async fn flushed(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Writes what the feeder sends, everything waiting in one transaction at a time.
async fn write_loop(
    shared: Arc<Shared>,
    job_id: String,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    written: watch::Sender<u64>,
) {
    let mut settles: Vec<jobs::Settle> = Vec::new();
    let mut failures = 0;
    // Settles taken from the channel so far: once a round ends with none waiting, all of
    // them are written (or given up on).
    let mut taken: u64 = 0;
    while let Some(first) = rx.recv().await {
        let (mut lease, mut flushes) = (None, Vec::new());
        let mut take = |msg| match msg {
            Msg::Settle(s) => {
                settles.push(s);
                taken += 1;
            }
            Msg::Lease {
                n,
                visibility_ms,
                reply,
            } => lease = Some((n, visibility_ms, reply)),
            Msg::Flush(done) => flushes.push(done),
        };
        take(first);
        while let Ok(msg) = rx.try_recv() {
            take(msg);
        }
        loop {
            let (n, visibility) = lease.as_ref().map_or((0, 0), |(n, v, _)| (*n, *v));
            let (id, batch) = (job_id.clone(), settles.clone());
            let round = shared
                .store
                .call(move |c| jobs::settle_and_lease(c, &id, &batch, now_ms(), visibility, n))
                .await;
            match round {
                Ok((_, leases)) => {
                    settles.clear();
                    failures = 0;
                    if let Some((_, _, reply)) = lease.take() {
                        let _ = reply.send(Ok(leases));
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!("cannot write the batches of job {job_id}: {e}");
                    failures += 1;
                    if let Some((_, _, reply)) = lease.take() {
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
                    tokio::time::sleep(Duration::from_secs(1)).await;
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
