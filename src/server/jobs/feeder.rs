//! One feeder per worker stream of a job: leases batches from the durable queue, delivers
//! them to the worker, and acks or nacks each batch as its outcome comes (the job's writer,
//! `settler.rs`, keeps its leases alive until then). This is the queue's consumer for the
//! workers the server runs itself; workers elsewhere use the same queue over HTTP
//! (`routes/queue.rs`).
//!
//! Two ways to deliver:
//! - a command worker gets one batch per `POST /` (the batch as a JSON array,
//!   `X-Cortex-Job-ID` and `X-Cortex-Batch-ID`), the next one only after the answer;
//! - the python shim gets the batches a feeder leased as one streamed `POST /batches`: the
//!   request body carries one batch per line, the answer one outcome per line as each batch
//!   ends (`cortex_runtime/batch.py`, `BatchStream`).
//!
//! At least once, with a window of [`WINDOW`]: the line of batch k+2 is written only once
//! the outcome of batch k is committed, so the worker starts batch k+2 only then. A worker
//! runs a stream's batches one after the other, so at any moment a stream has at most two
//! batches whose outcomes are not committed (the one in progress and the one before it, or,
//! between batches, the last two), however slow the server (starved of CPU, stopped): a
//! server SIGKILL runs again at most those two per stream. The window of two keeps the
//! worker busy meanwhile: it runs batch k+1 while the outcome of k is written. Leasing ahead
//! does not widen the window: a leased batch not yet sent is only invisible to other workers
//! until this feeder sends it or gives it back.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::kept::Holding;
use super::outcome::{failure_text, stream_outcome, Lines};
use super::settler::{Settler, Ticket};
use super::Shared;
use crate::engine::{Replica, ReplicaPhase};
use crate::store::batches;

/// How long a leased batch stays invisible to other workers unless extended
/// (`CORTEX_BATCH_VISIBILITY_MS` changes it).
pub fn visibility_ms() -> i64 {
    std::env::var("CORTEX_BATCH_VISIBILITY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &i64| *v > 0)
        .unwrap_or(30_000)
}

/// How long to wait for a worker that dropped a connection to be seen as exited before the
/// batch is counted as failed by it instead.
const EXIT_NOTICE: Duration = Duration::from_secs(2);

/// The most batches a feeder leases at once: one database transaction per this many leases; a
/// worker that takes several batches per request (the python shim) gets them in one streamed
/// request and reports each as it ends. Outcomes are written one by one as they come
/// (`settler.rs`).
pub const LEASE_AHEAD: usize = 4;
pub const LEASE_AHEAD_MULTI: usize = 16;

/// Batches of a stream sent to the worker whose outcome is not committed: the line of batch
/// k+WINDOW is written once the outcome of batch k is committed.
pub const WINDOW: usize = 2;

/// How many batches each of `feeders` feeders leases at once for a job of `total` batches (at
/// most `max`): several only when there are many batches per feeder, so that no worker holds
/// batches another one could be working on.
pub fn lease_ahead(total: u64, feeders: u64, max: usize) -> usize {
    let per_feeder = total / feeders.max(1);
    (per_feeder / 16).clamp(1, max.max(1) as u64) as usize
}

/// What one feeder needs.
pub(super) struct Feeder {
    pub shared: Arc<Shared>,
    pub job_id: String,
    pub worker: Arc<dyn Replica>,
    /// Told when the queue looked empty (the job may be done).
    pub progress: Arc<Notify>,
    pub stop: CancellationToken,
    /// The job's writer, shared by its feeders.
    pub settler: Arc<Settler>,
    /// Batches leased at once (see [`lease_ahead`]).
    pub lease_ahead: usize,
    /// The worker takes every leased batch in one streamed request (`POST /batches`, the
    /// python shim's batch mode) rather than one batch per `POST /`.
    pub multi: bool,
}

impl Feeder {
    /// Feeds the worker until the queue has nothing left for it or the job stops. Each
    /// batch's outcome goes to the database as soon as the worker reports it (a python
    /// worker reports each batch of a group as it ends); leases are taken with the outcomes
    /// still waiting, several at a time on long queues. The leases the feeder holds are kept
    /// alive by the job's writer until they are settled, and given back before the feeder
    /// waits for its worker or ends.
    pub async fn run(self) {
        let settler = self.settler.clone();
        // Dropped with this task, however it ends: what it still holds then goes back.
        let holding = Holding::new();
        let mut held: VecDeque<batches::Lease> = VecDeque::new();
        // Lease rounds that failed in a row (the job's writer logs why once in a while).
        let mut failed_rounds = 0u32;
        loop {
            if self.worker.ready_addr().is_none() && !held.is_empty() {
                // The worker is restarting (or not up yet), which can take long: other
                // workers may run these meanwhile.
                release_all(&settler, &mut held);
            }
            let Some(addr) = self.ready_addr().await else {
                break;
            };
            if held.is_empty() {
                match settler
                    .lease(self.lease_ahead, visibility_ms(), &holding)
                    .await
                {
                    Ok(leases) => {
                        held.extend(leases);
                        failed_rounds = 0;
                    }
                    Err(e) => {
                        // Nothing of the transaction was applied: try again.
                        failed_rounds += 1;
                        if failed_rounds == 1 {
                            tracing::warn!("cannot lease batches of job {}: {e}", self.job_id);
                        }
                        if self.wait(Duration::from_secs(1)).await {
                            break;
                        }
                        continue;
                    }
                }
                if held.is_empty() {
                    // Nothing to deliver now: every batch is done, or others hold the rest
                    // (a lapsed or released one comes back).
                    self.progress.notify_one();
                    if self.wait(Duration::from_millis(200)).await {
                        break;
                    }
                    continue;
                }
            }
            let mut group = take_group(&mut held, self.multi);
            let settled = self.deliver(addr, &group, &settler).await;
            if settled < group.len() {
                // The job stopped meanwhile: what was not settled goes back.
                for lease in group.drain(settled..).rev() {
                    held.push_front(lease);
                }
                break;
            }
        }
        release_all(&settler, &mut held);
        settler.flushed().await;
    }

    /// Sleeps for `d`; true when the job stopped meanwhile.
    async fn wait(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = self.stop.cancelled() => true,
        }
    }

    /// The worker's address once it is ready; `None` when the job stops or the worker is
    /// stopped for good.
    async fn ready_addr(&self) -> Option<SocketAddr> {
        let mut phases = self.worker.phases();
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            // The phase is marked seen before the address is read: a change after this read
            // wakes the wait below.
            let phase = *phases.borrow_and_update();
            if let Some(addr) = self.worker.ready_addr() {
                return Some(addr);
            }
            if phase == ReplicaPhase::Stopped {
                return None;
            }
            tokio::select! {
                changed = phases.changed() => if changed.is_err() { return None },
                _ = self.stop.cancelled() => return None,
            }
        }
    }

    /// Posts a group of batches (one, unless the worker takes several per request) and
    /// settles each as its outcome comes; how many of the group it settled (fewer than all
    /// only when the job stopped meanwhile).
    async fn deliver(
        &self,
        addr: SocketAddr,
        group: &[batches::Lease],
        settler: &Settler,
    ) -> usize {
        let started = Instant::now();
        let mut settled = 0;
        let answer = tokio::select! {
            answer = self.send(addr, group, settler, &mut settled) => answer,
            _ = self.stop.cancelled() => return settled,
        };
        let rest = &group[settled..];
        let took = started.elapsed().as_millis() as i64;
        match answer {
            Ok(()) => {}
            Err(e) if self.worker_exited().await => {
                tracing::info!(
                    "worker {} exited with {} batch(es) of job {}: they go back to the queue ({e})",
                    self.worker.id(),
                    rest.len(),
                    self.job_id
                );
                // The first was in progress; the others never started.
                for (i, l) in rest.iter().enumerate() {
                    settler.settle(batches::Settle::Release {
                        seq: l.seq,
                        lease_id: l.lease_id.clone(),
                        crashed: i == 0,
                    });
                }
            }
            Err(e) => {
                for l in rest {
                    settler.settle(nack(l, format!("the worker did not answer: {e}"), took));
                }
            }
        }
        group.len()
    }

    /// Sends the group and settles each batch's outcome as it comes, counting them in
    /// `settled`. `Err`: the connection failed before every batch had its outcome.
    async fn send(
        &self,
        addr: SocketAddr,
        group: &[batches::Lease],
        settler: &Settler,
        settled: &mut usize,
    ) -> Result<(), String> {
        if self.multi {
            return self.stream(addr, group, settler, settled).await;
        }
        let started = Instant::now();
        let l = &group[0];
        let resp = self
            .shared
            .http
            .post(format!("http://{addr}/"))
            .header("x-cortex-job-id", &self.job_id)
            .header("x-cortex-batch-id", self.batch_id(l))
            .header("content-type", "application/json")
            .body(l.payload.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        let took = started.elapsed().as_millis() as i64;
        settler.settle(if status.is_success() {
            settle(l, Ok(took))
        } else {
            let body = String::from_utf8_lossy(&body);
            nack(l, failure_text(status.as_u16(), &body), took)
        });
        self.worker.did_work();
        *settled = 1;
        Ok(())
    }

    /// A group as one streamed `POST /batches`: a batch per line of the body, written as the
    /// window allows ([`may_send`]); an outcome per line of the answer, settled as it comes.
    async fn stream(
        &self,
        addr: SocketAddr,
        group: &[batches::Lease],
        settler: &Settler,
        settled: &mut usize,
    ) -> Result<(), String> {
        use futures_util::StreamExt;
        let started = Instant::now();
        let (lines, body) =
            tokio::sync::mpsc::unbounded_channel::<Result<Vec<u8>, std::io::Error>>();
        let mut lines = Some(lines);
        let mut body = body;
        let body = futures_util::stream::poll_fn(move |cx| body.poll_recv(cx));
        let mut committed = settler.committed();
        // The ticket of each settled batch's outcome.
        let mut tickets: Vec<Ticket> = Vec::with_capacity(group.len());
        let mut sent = 0;
        // Writes every line the window allows (in one chunk), and ends the body after the
        // last one.
        let mut send_allowed = |tickets: &[Ticket], committed: u64, sent: &mut usize| {
            let mut chunk = Vec::new();
            while *sent < group.len() && may_send(*sent, tickets, committed) {
                let l = &group[*sent];
                batch_line(&self.batch_id(l), &l.payload, &mut chunk);
                *sent += 1;
            }
            if let (Some(tx), false) = (&lines, chunk.is_empty()) {
                let _ = tx.send(Ok(chunk));
            }
            if *sent == group.len() {
                lines = None;
            }
        };
        send_allowed(&tickets, *committed.borrow_and_update(), &mut sent);
        let resp = self
            .shared
            .http
            .post(format!("http://{addr}/batches"))
            .header("x-cortex-job-id", &self.job_id)
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.map_err(|e| e.to_string())?;
            let why = failure_text(status.as_u16(), &body);
            let took = started.elapsed().as_millis() as i64;
            for l in group {
                settler.settle(nack(l, why.clone(), took));
                *settled += 1;
            }
            self.worker.did_work();
            return Ok(());
        }
        // One line per batch, in order, each as its batch ends.
        let mut answer = resp.bytes_stream();
        let mut outcomes = Lines::default();
        while *settled < group.len() {
            // Every line the commits so far allow goes first; what is still held back waits
            // for a commit after this look (one between a look and the wait would otherwise
            // be missed, and the worker, out of lines, would wait for ever).
            send_allowed(&tickets, *committed.borrow_and_update(), &mut sent);
            let waiting = sent < group.len();
            tokio::select! {
                chunk = answer.next() => {
                    let Some(chunk) = chunk.transpose().map_err(|e| e.to_string())? else {
                        // The worker ended its answer early (it is stopping): the batches
                        // without an outcome never started, and go back to the queue as
                        // they are.
                        for l in &group[*settled..] {
                            settler.settle(batches::Settle::Release {
                                seq: l.seq,
                                lease_id: l.lease_id.clone(),
                                crashed: false,
                            });
                        }
                        *settled = group.len();
                        return Ok(());
                    };
                    for line in outcomes.push(&chunk) {
                        let Some(lease) = group.get(*settled) else {
                            break;
                        };
                        let outcome = stream_outcome(&line, &self.batch_id(lease));
                        tickets.push(settler.settle(settle(lease, outcome)));
                        self.worker.did_work();
                        *settled += 1;
                    }
                }
                changed = committed.changed(), if waiting => {
                    if changed.is_err() {
                        return Err("the job's writer ended".to_string());
                    }
                }
            }
        }
        Ok(())
    }

    fn batch_id(&self, lease: &batches::Lease) -> String {
        format!("{}-{}", self.job_id, lease.seq)
    }

    /// Whether the worker is seen leaving `ready` soon after a dropped connection (it exited or
    /// was killed), rather than answering badly.
    async fn worker_exited(&self) -> bool {
        let mut phases = self.worker.phases();
        let left = async {
            loop {
                if *phases.borrow_and_update() != ReplicaPhase::Ready {
                    return;
                }
                if phases.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(EXIT_NOTICE, left).await.is_ok()
    }
}

/// The most bytes of batches one `POST /batches` carries (the shim takes 64 MiB).
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// The next batches to send: one, or (`multi`) as many held ones as fit in
/// [`MAX_GROUP_BYTES`] (always at least one).
fn take_group(held: &mut VecDeque<batches::Lease>, multi: bool) -> Vec<batches::Lease> {
    let mut group = Vec::new();
    let mut bytes = 0;
    while let Some(next) = held.front() {
        let fits = group.is_empty() || (multi && bytes + next.payload.len() <= MAX_GROUP_BYTES);
        if !fits {
            break;
        }
        bytes += next.payload.len();
        group.extend(held.pop_front());
    }
    group
}

/// Appends a batch's line of a `POST /batches` body to `out`. The payload is JSON
/// already: spliced in, not parsed again (a raw line break in JSON can only be
/// whitespace, so it becomes a space).
fn batch_line(batch_id: &str, payload: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"batch_id\":\"");
    out.extend_from_slice(batch_id.as_bytes());
    out.extend_from_slice(b"\",\"payload\":");
    let start = out.len();
    out.extend_from_slice(payload.as_bytes());
    for b in &mut out[start..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    out.extend_from_slice(b"}\n");
}

/// Whether the line of batch `k` of a stream may be written, given the tickets of the
/// outcomes settled so far (batch i's at `tickets[i]`) and how many settles are committed:
/// the first [`WINDOW`] at once, then batch k once the outcome of batch k-WINDOW is
/// committed. With a worker that runs its batches in order, one at a time, that leaves at
/// most WINDOW batches run or running whose outcomes are not committed.
fn may_send(k: usize, tickets: &[Ticket], committed: u64) -> bool {
    k < WINDOW
        || tickets
            .get(k - WINDOW)
            .is_some_and(|ticket| *ticket <= committed)
}

/// Gives every lease in `held` back to the queue, the delivery not counted.
fn release_all(settler: &Settler, held: &mut VecDeque<batches::Lease>) {
    for l in held.drain(..) {
        settler.settle(batches::Settle::Release {
            seq: l.seq,
            lease_id: l.lease_id,
            crashed: false,
        });
    }
}

/// A batch's settle from its outcome (its milliseconds, or why it failed).
fn settle(lease: &batches::Lease, outcome: Result<i64, String>) -> batches::Settle {
    match outcome {
        Ok(ms) => batches::Settle::Ack {
            seq: lease.seq,
            lease_id: lease.lease_id.clone(),
            duration_ms: ms,
        },
        Err(error) => nack(lease, error, 0),
    }
}

fn nack(lease: &batches::Lease, error: String, duration_ms: i64) -> batches::Settle {
    batches::Settle::Nack {
        seq: lease.seq,
        lease_id: lease.lease_id.clone(),
        error,
        duration_ms,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_long_queues_are_leased_ahead() {
        use super::lease_ahead;
        assert_eq!(lease_ahead(5, 4, 4), 1);
        assert_eq!(lease_ahead(100, 4, 4), 1);
        assert_eq!(lease_ahead(10_000, 8, 4), 4);
        assert_eq!(lease_ahead(10_000, 8, 16), 16);
        assert_eq!(lease_ahead(0, 0, 4), 1);
    }

    #[test]
    fn a_stream_sends_a_batch_once_the_outcome_two_before_it_is_committed() {
        use super::may_send;
        // Nothing settled: the first two go, the third waits.
        assert!(may_send(0, &[], 0) && may_send(1, &[], 0));
        assert!(!may_send(2, &[], 0));
        // Batch 0 ended (its outcome is settle 1) but is not committed: batch 2 waits...
        assert!(!may_send(2, &[1], 0));
        // ... until it is; batch 3 waits for batch 1's.
        assert!(may_send(2, &[1], 1));
        assert!(!may_send(3, &[1], 1));
        assert!(!may_send(3, &[1, 2], 1));
        assert!(may_send(3, &[1, 2], 2));
        // Tickets count every settle of the feeder (releases of other groups too).
        assert!(!may_send(3, &[7, 9], 8));
        assert!(may_send(3, &[7, 9], 9));
    }

    #[test]
    fn a_batch_line_is_one_line_whatever_its_payload() {
        let mut out = Vec::new();
        super::batch_line("j-0", "[1,\n 2]", &mut out);
        super::batch_line("j-1", "[\"a\\nb\"]\r\n", &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({"batch_id": "j-0", "payload": [1, 2]}),
                serde_json::json!({"batch_id": "j-1", "payload": ["a\nb"]}),
            ]
        );
    }

    #[test]
    fn groups_are_one_batch_or_as_many_as_fit() {
        use super::{take_group, MAX_GROUP_BYTES};
        let lease = |seq: i64, size: usize| crate::store::batches::Lease {
            seq,
            payload: "x".repeat(size),
            lease_id: seq.to_string(),
            receive_count: 1,
        };
        let mut held: std::collections::VecDeque<_> =
            [lease(0, 10), lease(1, 10), lease(2, MAX_GROUP_BYTES)].into();
        assert_eq!(take_group(&mut held, false).len(), 1);
        assert_eq!(
            take_group(&mut held, true).len(),
            1,
            "the big one does not fit after it"
        );
        assert_eq!(take_group(&mut held, true).len(), 1, "alone it goes");
        assert!(held.is_empty());
    }
}
