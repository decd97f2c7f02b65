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
/// per this many batches; a worker that takes several batches per request (the python shim)
/// gets them in one request.
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
    /// Batches leased at once (see [`lease_ahead`]).
    pub lease_ahead: usize,
    /// The worker takes every leased batch in one request (`POST /batches`, the python shim's
    /// batch mode) rather than one batch per `POST /`.
    pub multi: bool,
}

impl Feeder {
    /// Feeds the worker until the queue has nothing left for it or the job stops. Leases and
    /// settles go to the database together, several at a time on long queues; the worker's
    /// requests are the only thing on each batch's path. Everything the feeder holds (leases
    /// not yet sent, outcomes not yet written) is kept alive while the worker works, and given
    /// back or written before the feeder waits for its worker or ends.
    pub async fn run(self) {
        let mut held: VecDeque<jobs::Lease> = VecDeque::new();
        let mut done: Vec<jobs::Settle> = Vec::new();
        loop {
            if self.worker.ready_addr().is_none() && !(held.is_empty() && done.is_empty()) {
                // The worker is restarting (or not up yet): that can take longer than a lease.
                self.flush(&mut held, &mut done).await;
            }
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
            let group = take_group(&mut held, self.multi);
            let unwritten: Vec<(i64, String)> = done.iter().filter_map(still_leased).collect();
            match self.deliver(addr, &group, &held, unwritten).await {
                Some(settles) => done.extend(settles),
                None => {
                    for lease in group.into_iter().rev() {
                        held.push_front(lease);
                    }
                    break;
                }
            }
        }
        self.flush(&mut held, &mut done).await;
    }

    /// Writes the outcomes in `done` and gives the unsent leases in `held` back to the queue.
    async fn flush(&self, held: &mut VecDeque<jobs::Lease>, done: &mut Vec<jobs::Settle>) {
        done.extend(held.drain(..).map(|l| jobs::Settle::Release {
            seq: l.seq,
            lease_id: l.lease_id,
            crashed: false,
        }));
        if done.is_empty() {
            return;
        }
        let (job_id, settles) = (self.job_id.clone(), std::mem::take(done));
        let flushed = self
            .shared
            .store
            .call(move |c| jobs::settle_and_lease(c, &job_id, &settles, now_ms(), 0, 0))
            .await;
        if let Err(e) = flushed {
            tracing::warn!("cannot settle the batches of job {}: {e}", self.job_id);
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

    /// Posts a group of batches (one, unless the worker takes several per request); what
    /// became of each (`None`: the job stopped meanwhile). The leases in `held` and those of
    /// outcomes not written yet (`unwritten`) are kept alive too while it works.
    async fn deliver(
        &self,
        addr: SocketAddr,
        group: &[jobs::Lease],
        held: &VecDeque<jobs::Lease>,
        unwritten: Vec<(i64, String)>,
    ) -> Option<Vec<jobs::Settle>> {
        let started = Instant::now();
        let mut all_held: Vec<(i64, String)> =
            group.iter().map(|l| (l.seq, l.lease_id.clone())).collect();
        all_held.extend(held.iter().map(|l| (l.seq, l.lease_id.clone())));
        all_held.extend(unwritten);
        let answer = tokio::select! {
            answer = self.send(addr, group) => answer,
            _ = self.extend_while_working(all_held) => unreachable!("extending never ends"),
            _ = self.stop.cancelled() => return None,
        };
        let took = started.elapsed().as_millis() as i64;
        let settle = |lease: &jobs::Lease, outcome: Result<i64, String>| match outcome {
            Ok(ms) => jobs::Settle::Ack {
                seq: lease.seq,
                lease_id: lease.lease_id.clone(),
                duration_ms: ms,
            },
            Err(error) => jobs::Settle::Nack {
                seq: lease.seq,
                lease_id: lease.lease_id.clone(),
                error,
                duration_ms: took,
            },
        };
        Some(match answer {
            Ok(outcomes) => group
                .iter()
                .zip(outcomes)
                .map(|(lease, outcome)| settle(lease, outcome))
                .collect(),
            Err(e) if self.worker_exited().await => {
                tracing::info!(
                    "worker {} exited with {} batch(es) of job {}: they go back to the queue ({e})",
                    self.worker.id(),
                    group.len(),
                    self.job_id
                );
                group
                    .iter()
                    .map(|l| jobs::Settle::Release {
                        seq: l.seq,
                        lease_id: l.lease_id.clone(),
                        crashed: true,
                    })
                    .collect()
            }
            Err(e) => group
                .iter()
                .map(|l| settle(l, Err(format!("the worker did not answer: {e}"))))
                .collect(),
        })
    }

    /// Sends the group; each batch's outcome (its milliseconds, or why it failed), one per
    /// batch in order. `Err`: no answer (the connection failed).
    async fn send(
        &self,
        addr: SocketAddr,
        group: &[jobs::Lease],
    ) -> Result<Vec<Result<i64, String>>, reqwest::Error> {
        let started = Instant::now();
        let batch_id = |l: &jobs::Lease| format!("{}-{}", self.job_id, l.seq);
        let request = if self.multi {
            // The payloads are JSON already: spliced in, not parsed again.
            let mut body = String::from("[");
            for (i, l) in group.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&format!(
                    "{{\"batch_id\":\"{}\",\"payload\":{}}}",
                    batch_id(l),
                    l.payload
                ));
            }
            body.push(']');
            self.shared
                .http
                .post(format!("http://{addr}/batches"))
                .header("x-cortex-job-id", &self.job_id)
                .body(body)
        } else {
            let l = &group[0];
            self.shared
                .http
                .post(format!("http://{addr}/"))
                .header("x-cortex-job-id", &self.job_id)
                .header("x-cortex-batch-id", batch_id(l))
                .body(l.payload.clone())
        };
        let resp = request
            .header("content-type", "application/json")
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        let took = started.elapsed().as_millis() as i64;
        if !status.is_success() {
            let why = failure_text(status.as_u16(), &body);
            return Ok(group.iter().map(|_| Err(why.clone())).collect());
        }
        if !self.multi {
            return Ok(vec![Ok(took)]);
        }
        Ok(multi_outcomes(&body, group.len()))
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

/// The most bytes of batches one `POST /batches` carries (the shim takes 64 MiB).
const MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

/// The next batches to send: one, or (`multi`) as many held ones as fit in
/// [`MAX_GROUP_BYTES`] (always at least one).
fn take_group(held: &mut VecDeque<jobs::Lease>, multi: bool) -> Vec<jobs::Lease> {
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

/// The lease an outcome not yet written still holds (a release gives it up anyway).
fn still_leased(settle: &jobs::Settle) -> Option<(i64, String)> {
    match settle {
        jobs::Settle::Ack { seq, lease_id, .. } | jobs::Settle::Nack { seq, lease_id, .. } => {
            Some((*seq, lease_id.clone()))
        }
        jobs::Settle::Release { .. } => None,
    }
}

/// Each batch's outcome from a `POST /batches` answer (`[{"ok", "error", "ms"}, ...]`); an
/// answer that does not fit fails every batch, saying so.
fn multi_outcomes(body: &str, n: usize) -> Vec<Result<i64, String>> {
    #[derive(serde::Deserialize)]
    struct Outcome {
        ok: bool,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        ms: Option<f64>,
    }
    match serde_json::from_str::<Vec<Outcome>>(body) {
        Ok(outcomes) if outcomes.len() == n => outcomes
            .into_iter()
            .map(|o| {
                if o.ok {
                    Ok(o.ms.unwrap_or(0.0).round() as i64)
                } else {
                    Err(o
                        .error
                        .unwrap_or_else(|| "the worker said it failed".to_string()))
                }
            })
            .collect(),
        _ => {
            let why = format!(
                "the worker's answer to {n} batch(es) was not one outcome per batch: {}",
                body.chars().take(200).collect::<String>()
            );
            (0..n).map(|_| Err(why.clone())).collect()
        }
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
        assert_eq!(lease_ahead(5, 4, 4), 1);
        assert_eq!(lease_ahead(100, 4, 4), 1);
        assert_eq!(lease_ahead(10_000, 8, 4), 4);
        assert_eq!(lease_ahead(10_000, 8, 16), 16);
        assert_eq!(lease_ahead(0, 0, 4), 1);
    }

    #[test]
    fn groups_are_one_batch_or_as_many_as_fit() {
        use super::{take_group, MAX_GROUP_BYTES};
        let lease = |seq: i64, size: usize| crate::store::jobs::Lease {
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

    #[test]
    fn a_multi_batch_answer_settles_each_batch() {
        use super::multi_outcomes;
        assert_eq!(
            multi_outcomes(
                r#"[{"ok": true, "ms": 1.6}, {"ok": false, "error": "boom"}]"#,
                2
            ),
            vec![Ok(2), Err("boom".to_string())]
        );
        let short = multi_outcomes(r#"[{"ok": true}]"#, 2);
        assert!(short.iter().all(|o| o
            .as_ref()
            .unwrap_err()
            .contains("not one outcome per batch")));
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
