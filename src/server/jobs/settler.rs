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
//!
//! The writer keeps alive every lease it handed out until the lease's settle is written (a
//! batch a worker runs, one leased ahead, one whose outcome waits to be written): a third of
//! the visibility after the lease or its last extension, it extends it in the next
//! transaction. A write that fails (a full disk) is never given up while the job's feeders
//! run: what it held stays in memory (at most two outcomes per worker stream, the window
//! sees to it) and is tried again, after 50 ms, then twice as long each time up to a second,
//! with every extension that fell due meanwhile. Extensions come first in a transaction and
//! lapses are judged after them, so a lease that lapsed only because the server could not
//! write is not counted as a delivery: the server's own failure is never blamed on a worker.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::kept::{Holding, Kept};
use crate::clock::now_ms;
use crate::store::batches::{self, Extension, Lease, Round, Settle, Written};
use crate::store::Store;

/// How long the writer waits before it tries a failed write again, the first time; the wait
/// doubles after each failure in a row, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// A write that keeps failing is logged at its first failure, then once per this long.
const LOG_AGAIN: Duration = Duration::from_secs(30);

/// A feeder's request for up to `n` leases.
struct LeaseAsk {
    n: usize,
    visibility_ms: i64,
    holder: Weak<()>,
    reply: oneshot::Sender<Result<Vec<Lease>, String>>,
}

enum Msg {
    Settle(Settle),
    Lease(LeaseAsk),
    Flush(oneshot::Sender<()>),
}

/// The handle a job's feeders share; the writing thread ends when it is dropped.
pub(super) struct Settler {
    /// The way to the writer, with the settles given so far (the last one's ticket): a
    /// settle's ticket is its place in the channel.
    tx: Mutex<(mpsc::Sender<Msg>, u64)>,
    /// How many of the settles given are written: the writer moves it on after each
    /// transaction.
    written: watch::Receiver<u64>,
}

/// A settle's place in the order its feeder gave them: settle `n` is written once
/// [`Settler::committed`] counts `n` or more.
pub(super) type Ticket = u64;

impl Settler {
    pub fn spawn(store: Store, job_id: String) -> Settler {
        let (tx, rx) = mpsc::channel();
        let (written_tx, written) = watch::channel(0);
        let spawned = std::thread::Builder::new()
            .name("cortex-job-writer".to_string())
            .spawn(move || Writer::new(store, job_id, written_tx).run(rx));
        if let Err(e) = spawned {
            // The channel's receiver is gone with the closure: leases and flushes answer at
            // once, outcomes are not written (the batches stay leased until the server's
            // next start gives them back; at least once holds).
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

    /// Writes `settle` as soon as the database takes it; its ticket.
    pub fn settle(&self, settle: Settle) -> Ticket {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.0.send(Msg::Settle(settle));
        tx.1 += 1;
        tx.1
    }

    /// How many of the settles given so far are written, to wait on with `changed()`.
    /// Settles are written in the order they are given; one the database refuses holds
    /// back the count until it is written.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.written.clone()
    }

    /// Leases up to `n` batches, after (and with) every outcome given so far; the writer
    /// keeps them alive until they are settled, or given back once `holding` is dropped.
    /// `Err`: nothing of the transaction was applied (the outcomes are tried again; ask
    /// again).
    pub async fn lease(
        &self,
        n: usize,
        visibility_ms: i64,
        holding: &Holding,
    ) -> Result<Vec<Lease>, String> {
        let (reply, answer) = oneshot::channel();
        let ask = LeaseAsk {
            n,
            visibility_ms,
            holder: holding.watch(),
            reply,
        };
        if self.send(Msg::Lease(ask)).is_err() {
            return Err("the job's writer ended".to_string());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the job's writer ended".to_string()))
    }

    /// Waits until every outcome given so far is written.
    pub async fn flushed(&self) {
        let (done, wait) = oneshot::channel();
        if self.send(Msg::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The writing thread's state: what waits for the next transaction, and the leases it keeps.
struct Writer {
    store: Store,
    job_id: String,
    written: watch::Sender<u64>,
    /// Settles taken from the channel so far: once none waits, all of them are written.
    taken: u64,
    settles: Vec<Settle>,
    asks: Vec<LeaseAsk>,
    flushes: Vec<oneshot::Sender<()>>,
    kept: Kept,
    /// Failed transactions in a row, and when the next may be tried.
    failures: u32,
    retry_at: Option<Instant>,
    logged_at: Option<Instant>,
}

impl Writer {
    fn new(store: Store, job_id: String, written: watch::Sender<u64>) -> Writer {
        Writer {
            store,
            job_id,
            written,
            taken: 0,
            settles: Vec::new(),
            asks: Vec::new(),
            flushes: Vec::new(),
            kept: Kept::default(),
            failures: 0,
            retry_at: None,
            logged_at: None,
        }
    }

    /// Writes what the feeders send, everything waiting in one transaction at a time, and
    /// the extensions as they fall due, until the handle is dropped.
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let received = match self.next_round() {
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match received {
                Ok(msg) => {
                    self.take(msg);
                    while let Ok(msg) = rx.try_recv() {
                        self.take(msg);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.last_write(),
            }
            if self.next_round().is_some_and(|at| at <= Instant::now()) {
                self.write();
            }
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Settle(s) => {
                self.settles.push(s);
                self.taken += 1;
            }
            Msg::Lease(ask) => self.asks.push(ask),
            Msg::Flush(done) if self.settles.is_empty() => {
                let _ = done.send(());
            }
            Msg::Flush(done) => self.flushes.push(done),
        }
    }

    /// When the next transaction is due: at once when settles or asks wait, else at the next
    /// extension; never before the back-off of a failed one ends. `None`: nothing to write.
    fn next_round(&self) -> Option<Instant> {
        let due = if self.settles.is_empty() && self.asks.is_empty() {
            self.kept.next_renewal()?
        } else {
            Instant::now()
        };
        Some(self.retry_at.map_or(due, |retry| due.max(retry)))
    }

    /// One transaction: the leases of feeders that are gone given back, the extensions
    /// due, every settle waiting, the leases asked for.
    fn write(&mut self) {
        let abandoned = self.kept.abandoned();
        self.settles.extend(abandoned);
        let (now, at_ms) = (Instant::now(), now_ms());
        let extend = self.kept.due(now, at_ms);
        let visibility_ms = self.asks.iter().map(|a| a.visibility_ms).max();
        let round = Round {
            extend: &extend,
            settles: &self.settles,
            now_ms: at_ms,
            visibility_ms: visibility_ms.unwrap_or(0),
            lease: self.asks.iter().map(|a| a.n).sum(),
        };
        let job_id = &self.job_id;
        match self
            .store
            .call_here(|c| batches::write_round(c, job_id, &round))
        {
            Ok(written) => self.wrote(written, &extend, visibility_ms.unwrap_or(0), now),
            Err(e) => self.failed(&e.to_string(), now),
        }
    }

    fn wrote(&mut self, written: Written, extend: &[Extension], visibility_ms: i64, now: Instant) {
        if self.failures > 0 {
            tracing::info!(
                "wrote the batches of job {} again after {} failed tries",
                self.job_id,
                self.failures
            );
        }
        (self.failures, self.retry_at, self.logged_at) = (0, None, None);
        self.kept.extended(extend, &written.extended, now);
        self.kept.settled(&self.settles);
        self.settles.clear();
        self.hand_out(written.leases, visibility_ms, now);
        // Every settle taken is written (releases of leases nobody took are not counted).
        self.written.send_replace(self.taken);
        for done in self.flushes.drain(..) {
            let _ = done.send(());
        }
    }

    /// Gives each feeder that asked its share of the leases, in the order asked. The leases
    /// of a feeder that is gone go back to the queue, their delivery not counted.
    fn hand_out(&mut self, leases: Vec<Lease>, visibility_ms: i64, now: Instant) {
        let mut leases = leases.into_iter();
        for ask in std::mem::take(&mut self.asks) {
            let share: Vec<Lease> = leases.by_ref().take(ask.n).collect();
            for l in &share {
                let holder = ask.holder.clone();
                self.kept
                    .hold((l.seq, &l.lease_id), visibility_ms, holder, now);
            }
            if let Err(Ok(share)) = ask.reply.send(Ok(share)) {
                self.settles
                    .extend(share.into_iter().map(|l| Settle::Release {
                        seq: l.seq,
                        lease_id: l.lease_id,
                        crashed: false,
                    }));
            }
        }
    }

    /// Nothing of the transaction was applied: what it held waits for the next try.
    fn failed(&mut self, error: &str, now: Instant) {
        self.failures += 1;
        for ask in self.asks.drain(..) {
            let _ = ask.reply.send(Err(error.to_string()));
        }
        self.retry_at = Some(now + retry_after(self.failures));
        if self
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_AGAIN)
        {
            tracing::warn!(
                "cannot write the batches of job {} ({} outcome(s) wait in memory, tried {} time(s); trying again): {error}",
                self.job_id,
                self.settles.len(),
                self.failures
            );
            self.logged_at = Some(now);
        }
    }

    /// The handle is gone (the job ended, or the server stops): what still waits is tried
    /// once more, then given up. Its batches stay leased: a job that ended hands nothing
    /// out any more, and a server's next start gives a running job's leases back.
    fn last_write(&mut self) {
        if self.settles.is_empty() {
            return;
        }
        self.retry_at = None;
        self.write();
        if !self.settles.is_empty() {
            tracing::error!(
                "gave up writing {} outcome(s) of job {}: the job ended while the database refused writes",
                self.settles.len(),
                self.job_id
            );
        }
    }
}

/// The wait before try `failures + 1` of a write that failed `failures` times in a row.
fn retry_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with job `j1` of three batches, none leased.
    fn three_batches() -> Store {
        let store = Store::open_in_memory().unwrap();
        store
            .call_here(|c| {
                crate::store::jobs::tests::seed(c, 1, &["[1]", "[2]", "[3]"]);
                Ok(())
            })
            .unwrap();
        store
    }

    #[test]
    fn a_failed_write_is_tried_again_sooner_first_then_every_second() {
        let waits: Vec<u128> = (1..=7).map(|n| retry_after(n).as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(retry_after(u32::MAX), RETRY_MAX);
    }

    /// Far more failed writes than the five an outcome was once given, and longer than a
    /// lease's visibility: the outcome waits and is written once the database takes writes
    /// again, and the batch still being run keeps its lease.
    #[tokio::test]
    async fn an_outcome_waits_out_failing_writes_and_no_lease_lapses_meanwhile() {
        const VISIBILITY_MS: i64 = 1_000;
        let store = three_batches();
        let (settler, feeder) = (
            Settler::spawn(store.clone(), "j1".to_string()),
            Holding::new(),
        );
        let leases = settler.lease(2, VISIBILITY_MS, &feeder).await.unwrap();
        let leased_at = now_ms();
        // From now on the database refuses every change of a batch, as a full disk does.
        store
            .call_here(|c| {
                Ok(c.execute_batch(
                    "CREATE TRIGGER full BEFORE UPDATE ON batches
                     BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
                )?)
            })
            .unwrap();
        let ticket = settler.settle(Settle::Ack {
            seq: leases[0].seq,
            lease_id: leases[0].lease_id.clone(),
            duration_ms: 1,
        });
        // Each lease asked for is answered by one more try of the writer's transaction.
        let mut tries = 0;
        while tries < 6 || now_ms() < leased_at + 2 * VISIBILITY_MS {
            assert!(settler.lease(1, VISIBILITY_MS, &feeder).await.is_err());
            tries += 1;
        }
        assert_eq!(*settler.committed().borrow(), 0, "the outcome still waits");

        store
            .call_here(|c| Ok(c.execute_batch("DROP TRIGGER full")?))
            .unwrap();
        settler.flushed().await;
        assert!(*settler.committed().borrow() >= ticket);
        // The next lease round judges lapses: batch 1, still being run, is not one.
        let next = settler.lease(1, VISIBILITY_MS, &feeder).await.unwrap();
        assert_eq!(next.iter().map(|l| l.seq).collect::<Vec<_>>(), [2]);
        let counts = store.call_here(|c| batches::counts(c, "j1")).unwrap();
        assert_eq!((counts.succeeded, counts.leased, counts.failed), (1, 2, 0));
    }

    /// A feeder's task that ends holding leases without giving them back (it panicked, or
    /// was cancelled): its leases go back to the queue at the writer's next round, their
    /// delivery not counted, instead of being kept alive until the job's timeout.
    #[tokio::test]
    async fn the_leases_of_a_feeder_gone_without_giving_them_back_return_to_the_queue() {
        const VISIBILITY_MS: i64 = 300;
        let store = three_batches();
        let settler = Settler::spawn(store.clone(), "j1".to_string());
        let (lives, ends) = (Holding::new(), Holding::new());
        let held = settler.lease(1, VISIBILITY_MS, &lives).await.unwrap();
        assert_eq!(
            settler.lease(2, VISIBILITY_MS, &ends).await.unwrap().len(),
            2
        );
        drop(ends);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let counts = store.call_here(|c| batches::counts(c, "j1")).unwrap();
            if (counts.leased, counts.queued) == (1, 2) {
                break;
            }
            assert!(Instant::now() < deadline, "still leased: {counts:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let received: i64 = store
            .call_here(|c| {
                Ok(c.query_row(
                    "SELECT SUM(receive_count) FROM batches WHERE job_id = 'j1' AND state = 'queued'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(received, 0, "their delivery is not counted");
        // The batch of the feeder that lives is still kept alive past its visibility.
        tokio::time::sleep(Duration::from_millis(2 * VISIBILITY_MS as u64)).await;
        let again = settler.lease(3, VISIBILITY_MS, &lives).await.unwrap();
        let seqs: Vec<i64> = again.iter().map(|l| l.seq).collect();
        assert!(!seqs.contains(&held[0].seq), "{seqs:?}");
        assert_eq!(seqs.len(), 2);
    }
}
