//! One feeder per worker of a job: leases a batch from the durable queue, posts it to the
//! worker (`POST /`, the batch as a JSON array, `X-Cortex-Job-ID` and `X-Cortex-Batch-ID`),
//! extends the lease while the worker works, and acks or nacks by the answer. This is the
//! queue's consumer for the workers the server runs itself; workers elsewhere use the same
//! queue over HTTP (`routes/queue.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::clock::now_ms;
use crate::engine::{Replica, ReplicaPhase};
use crate::store::jobs;

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

/// The longest error text kept for a failed batch.
const MAX_ERROR_CHARS: usize = 2000;

/// The most batches a feeder leases at once (and settles at once): one database transaction
/// per this many batches.
const LEASE_AHEAD: usize = 4;

/// How many batches each of `feeders` feeders leases at once for a job of `total` batches:
/// several only when there are many batches per feeder, so that no worker holds batches
/// another one could be working on.
pub fn lease_ahead(total: u64, feeders: u64) -> usize {
    let per_feeder = total / feeders.max(1);
    (per_feeder / 16).clamp(1, LEASE_AHEAD as u64) as usize
}

/// What one feeder needs.
pub(super) struct Feeder {
    pub shared: Arc<Shared>,
    pub job_id: String,
    pub worker: Arc<dyn Replica>,
    /// Told when the queue looked empty (the job may be done).
    pub progress: Arc<Notify>,
    pub stop: CancellationToken,
    /// Batches leased at once (see [`lease_ahead`]).
    pub lease_ahead: usize,
}

impl Feeder {
    /// Feeds the worker until the queue has nothing left for it or the job stops. Leases and
    /// settles go to the database together, [`LEASE_AHEAD`] at a time; the worker's requests
    /// are the only thing on each batch's path.
    pub async fn run(self) {
        let mut held: VecDeque<jobs::Lease> = VecDeque::new();
        let mut done: Vec<jobs::Settle> = Vec::new();
        loop {
            let Some(addr) = self.ready_addr().await else {
                break;
            };
            if held.is_empty() {
                let (job_id, visibility) = (self.job_id.clone(), visibility_ms());
                let settles = std::mem::take(&mut done);
                let (kept, n) = (settles.clone(), self.lease_ahead);
                let round = self
                    .shared
                    .store
                    .call(move |c| {
                        jobs::settle_and_lease(c, &job_id, &settles, now_ms(), visibility, n)
                    })
                    .await;
                match round {
                    Ok((_, leases)) => held.extend(leases),
                    Err(e) => {
                        // Nothing of the transaction was applied: try again.
                        tracing::warn!("cannot lease batches of job {}: {e}", self.job_id);
                        done = kept;
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
            let Some(lease) = held.pop_front() else {
                continue;
            };
            match self.deliver(addr, &lease, &held).await {
                Some(settle) => done.push(settle),
                None => {
                    held.push_front(lease);
                    break;
                }
            }
        }
        // What was done counts; what was not started goes back.
        done.extend(held.into_iter().map(|l| jobs::Settle::Release {
            seq: l.seq,
            lease_id: l.lease_id,
        }));
        if !done.is_empty() {
            let job_id = self.job_id.clone();
            let flushed = self
                .shared
                .store
                .call(move |c| jobs::settle_and_lease(c, &job_id, &done, now_ms(), 0, 0))
                .await;
            if let Err(e) = flushed {
                tracing::warn!("cannot settle the batches of job {}: {e}", self.job_id);
            }
        }
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
            if let Some(addr) = self.worker.ready_addr() {
                return Some(addr);
            }
            if *phases.borrow_and_update() == ReplicaPhase::Stopped {
                return None;
            }
            tokio::select! {
                changed = phases.changed() => if changed.is_err() { return None },
                _ = self.stop.cancelled() => return None,
            }
        }
    }

    /// Posts one batch; what became of it (`None`: the job stopped meanwhile). The leases in
    /// `held` are kept alive too while it works.
    async fn deliver(
        &self,
        addr: SocketAddr,
        lease: &jobs::Lease,
        held: &VecDeque<jobs::Lease>,
    ) -> Option<jobs::Settle> {
        let batch_id = format!("{}-{}", self.job_id, lease.seq);
        let started = Instant::now();
        let send = async {
            let resp = self
                .shared
                .http
                .post(format!("http://{addr}/"))
                .header("content-type", "application/json")
                .header("x-cortex-job-id", &self.job_id)
                .header("x-cortex-batch-id", &batch_id)
                .body(lease.payload.clone())
                .send()
                .await?;
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, body))
        };
        let mut all_held: Vec<(i64, String)> = vec![(lease.seq, lease.lease_id.clone())];
        all_held.extend(held.iter().map(|l| (l.seq, l.lease_id.clone())));
        let answer = tokio::select! {
            answer = send => answer,
            _ = self.extend_while_working(all_held) => unreachable!("extending never ends"),
            _ = self.stop.cancelled() => return None,
        };
        let took = started.elapsed().as_millis() as i64;
        let (seq, lease_id) = (lease.seq, lease.lease_id.clone());
        Some(match answer {
            Ok((status, _)) if status.is_success() => jobs::Settle::Ack {
                seq,
                lease_id,
                duration_ms: took,
            },
            Ok((status, body)) => jobs::Settle::Nack {
                seq,
                lease_id,
                error: failure_text(status.as_u16(), &body),
                duration_ms: took,
            },
            Err(e) if self.worker_exited().await => {
                tracing::info!(
                    "worker {} exited with batch {batch_id}: it goes back to the queue ({e})",
                    self.worker.id()
                );
                jobs::Settle::Release { seq, lease_id }
            }
            Err(e) => jobs::Settle::Nack {
                seq,
                lease_id,
                error: format!("the worker did not answer: {e}"),
                duration_ms: took,
            },
        })
    }

    /// Keeps the leases while the worker works.
    async fn extend_while_working(&self, held: Vec<(i64, String)>) {
        let visibility = visibility_ms();
        let every = Duration::from_millis((visibility / 3).max(1) as u64);
        loop {
            tokio::time::sleep(every).await;
            let (job_id, held) = (self.job_id.clone(), held.clone());
            let extended = self
                .shared
                .store
                .call(move |c| jobs::extend_all(c, &job_id, &held, now_ms() + visibility))
                .await;
            if let Err(e) = extended {
                tracing::warn!("cannot extend the leases of job {}: {e}", self.job_id);
            }
        }
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

/// What a failed batch is remembered with: the worker's status and the start of its answer.
fn failure_text(status: u16, body: &str) -> String {
    // A JSON error (the python shim's) says it best in its message.
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        });
    let body = message.as_deref().unwrap_or(body).trim();
    let mut text = format!("the worker answered {status}");
    if !body.is_empty() {
        text.push_str(": ");
        text.extend(body.chars().take(MAX_ERROR_CHARS));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::failure_text;

    #[test]
    fn only_long_queues_are_leased_ahead() {
        use super::lease_ahead;
        assert_eq!(lease_ahead(5, 4), 1);
        assert_eq!(lease_ahead(100, 4), 1);
        assert_eq!(lease_ahead(10_000, 8), 4);
        assert_eq!(lease_ahead(0, 0), 1);
    }

    #[test]
    fn a_failure_keeps_the_start_of_the_answer() {
        assert_eq!(
            failure_text(500, " boom \n"),
            "the worker answered 500: boom"
        );
        assert_eq!(failure_text(502, ""), "the worker answered 502");
        assert_eq!(
            failure_text(
                500,
                r#"{"kind": "internal", "message": "predict raised E: x"}"#
            ),
            "the worker answered 500: predict raised E: x"
        );
        assert_eq!(failure_text(500, &"x".repeat(5000)).len(), 2000 + 25);
    }
}
