//! One feeder per worker of a job: leases a batch from the durable queue, posts it to the
//! worker (`POST /`, the batch as a JSON array, `X-Cortex-Job-ID` and `X-Cortex-Batch-ID`),
//! extends the lease while the worker works, and acks or nacks by the answer. This is the
//! queue's consumer for the workers the server runs itself; workers elsewhere use the same
//! queue over HTTP (`routes/queue.rs`).

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

/// What one feeder needs.
pub(super) struct Feeder {
    pub shared: Arc<Shared>,
    pub job_id: String,
    pub worker: Arc<dyn Replica>,
    /// Told when the queue looked empty (the job may be done).
    pub progress: Arc<Notify>,
    pub stop: CancellationToken,
}

impl Feeder {
    /// Feeds the worker until the queue has nothing left for it or the job stops.
    pub async fn run(self) {
        loop {
            let Some(addr) = self.ready_addr().await else {
                return;
            };
            let (job_id, visibility) = (self.job_id.clone(), visibility_ms());
            let lease = self
                .shared
                .store
                .call(move |c| jobs::lease(c, &job_id, now_ms(), visibility))
                .await;
            let lease = match lease {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    // Nothing to deliver now: every batch is done, or others hold the rest
                    // (a lapsed or released one comes back).
                    self.progress.notify_one();
                    if self.wait(Duration::from_millis(200)).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!("cannot lease a batch of job {}: {e}", self.job_id);
                    if self.wait(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            if !self.deliver(addr, lease).await {
                return;
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

    /// Posts one batch and settles it; false when the job stopped meanwhile.
    async fn deliver(&self, addr: SocketAddr, lease: jobs::Lease) -> bool {
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
        let answer = tokio::select! {
            answer = send => answer,
            _ = self.extend_while_working(&lease) => unreachable!("extending never ends"),
            _ = self.stop.cancelled() => return false,
        };
        let took = started.elapsed().as_millis() as i64;
        let (job_id, seq, lease_id) = (self.job_id.clone(), lease.seq, lease.lease_id.clone());
        let settled = match answer {
            Ok((status, _)) if status.is_success() => {
                self.shared
                    .store
                    .call(move |c| jobs::ack(c, &job_id, seq, &lease_id, took))
                    .await
            }
            Ok((status, body)) => {
                let error = failure_text(status.as_u16(), &body);
                self.shared
                    .store
                    .call(move |c| jobs::nack(c, &job_id, seq, &lease_id, &error, took))
                    .await
            }
            Err(e) if self.worker_exited().await => {
                tracing::info!(
                    "worker {} exited with batch {batch_id}: it goes back to the queue ({e})",
                    self.worker.id()
                );
                self.shared
                    .store
                    .call(move |c| jobs::release(c, &job_id, seq, &lease_id))
                    .await
            }
            Err(e) => {
                let error = format!("the worker did not answer: {e}");
                self.shared
                    .store
                    .call(move |c| jobs::nack(c, &job_id, seq, &lease_id, &error, took))
                    .await
            }
        };
        if let Err(e) = settled {
            tracing::warn!("cannot settle batch {batch_id}: {e}");
        }
        true
    }

    /// Keeps the lease while the worker works on it.
    async fn extend_while_working(&self, lease: &jobs::Lease) {
        let visibility = visibility_ms();
        let every = Duration::from_millis((visibility / 3).max(1) as u64);
        loop {
            tokio::time::sleep(every).await;
            let (job_id, seq, lease_id) = (self.job_id.clone(), lease.seq, lease.lease_id.clone());
            let extended = self
                .shared
                .store
                .call(move |c| jobs::extend(c, &job_id, seq, &lease_id, now_ms() + visibility))
                .await;
            if let Err(e) = extended {
                tracing::warn!(
                    "cannot extend the lease of a batch of job {}: {e}",
                    self.job_id
                );
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
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string));
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
    fn a_failure_keeps_the_start_of_the_answer() {
        assert_eq!(
            failure_text(500, " boom \n"),
            "the worker answered 500: boom"
        );
        assert_eq!(failure_text(502, ""), "the worker answered 502");
        assert_eq!(
            failure_text(500, r#"{"kind": "internal", "message": "predict raised E: x"}"#),
            "the worker answered 500: predict raised E: x"
        );
        assert_eq!(failure_text(500, &"x".repeat(5000)).len(), 2000 + 25);
    }
}
