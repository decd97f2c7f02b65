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
//! At least once, with a window of [`group_stream::WINDOW`]: the line of batch k+2 is written only once
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

use super::group_stream::{self, Delivery};
use super::kept::Holding;
use super::outcome::{failure_text, nack, settle};
use super::settler::Settler;
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
            let delivery = Delivery {
                http: &self.shared.http,
                job_id: &self.job_id,
                worker: self.worker.as_ref(),
                settler,
            };
            return group_stream::stream(&delivery, addr, group, settled).await;
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

    fn batch_id(&self, lease: &batches::Lease) -> String {
        group_stream::batch_id(&self.job_id, lease)
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
