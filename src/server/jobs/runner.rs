//! One job from start to end: its workers started through the engine, a feeder per worker,
//! and a watch over the job until every batch is done (then `on_job_complete`, once), a worker
//! fails, its timeout passes, or it is stopped. The ending is recorded, the workers stopped and
//! the job's token revoked.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::crew::Crew;
use super::feeder::Feeder;
use super::job_log::JobLog;
use super::{RunningJob, Shared};
use crate::batch::status::{derive, JobFacts, JobStatus};
use crate::clock::now_ns;
use crate::engine::{Replica, ReplicaPhase, ReplicaPlan};
use crate::runtime::plan::{self, JobWorker};
use crate::store::batches;
use crate::store::jobs::{self, Ending, JobRow};
use crate::store::StoreError;

/// Tells whoever waits for a runner that it ended, however it ended (a panic included).
struct FinishOnDrop(Arc<RunningJob>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finished();
    }
}

/// How long a worker gets to finish after the job ends or is stopped.
const WORKER_STOP_GRACE: Duration = Duration::from_secs(5);

/// How long `on_job_complete` may take.
const ON_COMPLETE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long the feeders get to write what they hold once the job ends.
const FEEDERS_STOP_GRACE: Duration = Duration::from_secs(10);

/// How long the runner waits before it tries again a write the database refused.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// What watching a job found.
enum Watched {
    /// Every batch is done: `on_job_complete`, then this ending.
    Done(JobStatus),
    Ended(Outcome),
}

/// How a job's run ended.
enum Outcome {
    /// The job ended this way (to be recorded).
    Ended {
        status: JobStatus,
        why: Option<String>,
    },
    /// Stopped by a user (already recorded) or by the server shutting down (the job resumes
    /// at the next start).
    Interrupted,
}

/// What starting a worker of the job takes.
struct Starter<'a> {
    config: serde_json::Map<String, serde_json::Value>,
    spec_json: String,
    token: &'a str,
    /// Told by a feeder that found the queue empty.
    progress: Arc<Notify>,
    feeders_stop: CancellationToken,
    /// Feeders per worker (requests it gets at a time).
    per_worker: usize,
    /// The job's writer, shared by its feeders.
    settler: Arc<super::settler::Settler>,
    lease_ahead: usize,
}

/// Everything one run needs.
pub(super) struct Run {
    pub shared: Arc<Shared>,
    pub job: JobRow,
    pub template: ReplicaPlan,
    pub handle: Arc<RunningJob>,
    pub log: JobLog,
    /// Feeders per worker: its predictor's concurrency (a command worker gets one more, so
    /// that its next batch is already there when it finishes one; see `Feeding`).
    pub in_flight: u32,
    /// Its workers take several batches per request (the python shim does).
    pub multi: bool,
    /// The server's shutdown.
    pub shutdown: CancellationToken,
}

impl Run {
    /// Runs the job to its end.
    pub async fn run(self) {
        let _finished = FinishOnDrop(self.handle.clone());
        let token = self
            .shared
            .tokens
            .issue_batch_job_token(&self.job.model_id, &self.job.id)
            .await;
        let planned = super::crew::planned_workers(self.job.workers, self.job.total_batches);
        // Dropped at the end of the run, after its workers were stopped: their slots go back.
        let mut crew = Crew::new(self.handle.clone(), planned);
        let outcome = match &token {
            Ok(token) => self.drive(token, &mut crew).await,
            Err(e) => Outcome::Ended {
                status: JobStatus::UnexpectedError,
                why: Some(format!("cannot issue the job's token: {e}")),
            },
        };
        let workers = self.handle.workers();
        let failed_workers = workers
            .iter()
            .filter(|w| {
                let s = w.snapshot();
                s.phase == ReplicaPhase::Failed || s.out_of_memory
            })
            .count() as u32;
        // A worker that waited for compute the whole job never ran: it counts nowhere.
        let ran = workers
            .iter()
            .filter(|w| w.snapshot().phase != ReplicaPhase::Pending)
            .count() as u32;
        futures_util::future::join_all(workers.iter().map(|w| w.stop(WORKER_STOP_GRACE))).await;
        if let Outcome::Ended { status, why } = outcome {
            let succeeded = matches!(
                status,
                JobStatus::Succeeded | JobStatus::CompletedWithFailures
            );
            let workers_succeeded = if succeeded {
                ran.saturating_sub(failed_workers)
            } else {
                0
            };
            self.record_end(status, why, workers_succeeded, failed_workers)
                .await;
        }
        if let Ok(token) = token {
            if let Err(e) = self.shared.tokens.revoke_job_token(&token).await {
                tracing::warn!("cannot revoke the token of job {}: {e}", self.job.id);
            }
        }
    }

    /// Records how the job ended (the first ending recorded stands), and logs it.
    async fn record_end(
        &self,
        status: JobStatus,
        why: Option<String>,
        workers_succeeded: u32,
        workers_failed: u32,
    ) {
        let (ending_status, end_ns) = (status.as_str(), now_ns());
        let (id, why_text) = (self.job.id.clone(), why.clone());
        let recorded = self
            .until_stored("record the end", move |c| {
                jobs::finish(
                    c,
                    &id,
                    &Ending {
                        status: ending_status,
                        end_ns,
                        failure: why_text.as_deref(),
                        workers_succeeded,
                        workers_failed,
                    },
                )
            })
            .await;
        if recorded == Some(true) {
            let because = why.map(|w| format!(": {w}")).unwrap_or_default();
            self.log
                .line(format!("job {} {}{because}", self.job.id, status.message()))
                .await;
        }
    }

    /// Runs `write` until the database takes it, trying again every [`WRITE_RETRY`] while it
    /// refuses (a full disk): a job's own writes are not given up, or it would never end.
    /// `None`: the server shuts down first (the job resumes at its next start).
    async fn until_stored<F, R>(&self, what: &str, write: F) -> Option<R>
    where
        F: Fn(&mut Connection) -> Result<R, StoreError> + Clone + Send + 'static,
        R: Send + 'static,
    {
        let mut logged = false;
        loop {
            match self.shared.store.call(write.clone()).await {
                Ok(done) => return Some(done),
                Err(e) if !logged => {
                    tracing::warn!("cannot {what} of job {}: {e}; trying again", self.job.id);
                    logged = true;
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(WRITE_RETRY) => {}
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Starts the workers (each once it has a slot) and feeds them until the job ends.
    async fn drive(&self, token: &str, crew: &mut Crew) -> Outcome {
        let job = &self.job;
        // It may have been stopped between the decision to start it and now.
        match self.recorded().await {
            Ok(Some((row, _))) if row.end_ns.is_none() => {}
            Ok(_) => return Outcome::Interrupted,
            Err(e) => tracing::warn!("cannot read job {}: {e}", job.id),
        }
        let planned = crew.waiting();
        let max = self.shared.slots.max();
        let wait = if planned as usize > max {
            format!(" (the server runs at most {max} batch workers at once: the others wait as pending)")
        } else {
            String::new()
        };
        self.log
            .line(format!(
                "starting {planned} worker{} for job {}{wait}",
                if planned == 1 { "" } else { "s" },
                job.id
            ))
            .await;
        let starter = Starter {
            config: serde_json::from_str(&job.config_json).unwrap_or_default(),
            spec_json: serde_json::to_string(&super::view::job_spec(
                job,
                &self.shared.server_url(),
            ))
            .unwrap_or_default(),
            token,
            progress: Arc::new(Notify::new()),
            feeders_stop: CancellationToken::new(),
            per_worker: self.in_flight.max(1) as usize,
            settler: Arc::new(super::settler::Settler::spawn(
                self.shared.store.clone(),
                job.id.clone(),
            )),
            lease_ahead: super::feeder::lease_ahead(
                job.total_batches,
                planned as u64 * u64::from(self.in_flight.max(1)),
                if self.multi {
                    super::feeder::LEASE_AHEAD_MULTI
                } else {
                    super::feeder::LEASE_AHEAD
                },
            ),
        };
        let watched = self.watch(crew, &starter).await;
        crew.stop_waiting();
        // The feeders stop and write what they hold (outcomes, leases not sent) before
        // anything else happens to the job.
        starter.feeders_stop.cancel();
        let drained = tokio::time::timeout(FEEDERS_STOP_GRACE, async {
            while crew.feeders.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("the feeders of job {} did not stop in time", job.id);
        }
        let status = match watched {
            Watched::Done(status) => status,
            Watched::Ended(outcome) => return outcome,
        };
        tokio::select! {
            _ = self.complete(crew.workers()) => {}
            _ = self.handle.stop.cancelled() => return Outcome::Interrupted,
            _ = self.shutdown.cancelled() => return Outcome::Interrupted,
        }
        Outcome::Ended { status, why: None }
    }

    /// Starts one more worker of the job, holding `permit`, with its feeders.
    fn start_worker(&self, crew: &mut Crew, starter: &Starter<'_>, permit: OwnedSemaphorePermit) {
        let worker = self.shared.engine.start(plan::for_job(
            &self.template,
            JobWorker {
                job_id: &self.job.id,
                index: crew.next_index(),
                job_spec_json: &starter.spec_json,
                config: &starter.config,
                job_token: starter.token,
            },
            self.shared.data_root.as_deref(),
        ));
        for _ in 0..starter.per_worker {
            crew.feeders.spawn(
                Feeder {
                    shared: self.shared.clone(),
                    job_id: self.job.id.clone(),
                    worker: worker.clone(),
                    progress: starter.progress.clone(),
                    stop: starter.feeders_stop.clone(),
                    settler: starter.settler.clone(),
                    lease_ahead: starter.lease_ahead,
                    multi: self.multi,
                }
                .run(),
            );
        }
        crew.add(worker, permit);
    }

    /// The job's row and its batches' counts, as stored (`None`: the job is gone, with its API).
    async fn recorded(
        &self,
    ) -> Result<Option<(JobRow, batches::Counts)>, crate::store::StoreError> {
        let id = self.job.id.clone();
        self.shared
            .store
            .call(move |c| {
                let Some(row) = jobs::get(c, &id)? else {
                    return Ok(None);
                };
                let counts = batches::counts(c, &id)?;
                Ok(Some((row, counts)))
            })
            .await
    }

    /// Watches the job until it ends: every batch done, a worker failed, its timeout passed, or
    /// it was stopped (or deleted) elsewhere.
    async fn watch(&self, crew: &mut Crew, starter: &Starter<'_>) -> Watched {
        let job = &self.job;
        let deadline = job.timeout_secs.map(|t| {
            let end_ns = job.created_ns.saturating_add(
                i64::try_from(t)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(1_000_000_000),
            );
            let left = end_ns.saturating_sub(now_ns()).max(0) as u64;
            tokio::time::Instant::now() + Duration::from_nanos(left)
        });
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let timed_out = || {
            Some(format!(
                "the job did not finish within its timeout of {}s",
                job.timeout_secs.unwrap_or_default()
            ))
        };
        loop {
            tokio::select! {
                _ = self.handle.stop.cancelled() => return Watched::Ended(Outcome::Interrupted),
                _ = self.shutdown.cancelled() => return Watched::Ended(Outcome::Interrupted),
                _ = sleep_until(deadline) => {}
                _ = starter.progress.notified() => {}
                _ = tick.tick() => {}
                permit = self.shared.slots.acquire(), if crew.waiting() > 0 => {
                    self.start_worker(crew, starter, permit);
                }
            }
            let failed = failed_worker(crew.workers());
            let (row, counts) = match self.recorded().await {
                Ok(Some(found)) => found,
                // Its API was deleted with it.
                Ok(None) => return Watched::Ended(Outcome::Interrupted),
                Err(e) => {
                    tracing::warn!("cannot count the batches of job {}: {e}", job.id);
                    continue;
                }
            };
            if row.end_ns.is_some() {
                // Ended elsewhere (stopped): that ending stands.
                return Watched::Ended(Outcome::Interrupted);
            }
            // The pure rule decides; this loop only gathers the facts.
            let status = derive(&JobFacts {
                recorded: JobStatus::parse(&row.status).unwrap_or(JobStatus::Running),
                total: job.total_batches,
                succeeded: counts.succeeded,
                failed: counts.failed,
                created_ns: job.created_ns,
                now_ns: now_ns(),
                timeout: job.timeout_secs,
                worker_oom: failed.as_ref().is_some_and(|f| f.out_of_memory),
                worker_failed: failed.is_some(),
            });
            match status {
                JobStatus::Running | JobStatus::Enqueuing => {}
                JobStatus::Succeeded | JobStatus::CompletedWithFailures => {
                    return Watched::Done(status)
                }
                JobStatus::TimedOut => {
                    return Watched::Ended(Outcome::Ended {
                        status,
                        why: timed_out(),
                    })
                }
                status => {
                    return Watched::Ended(Outcome::Ended {
                        status,
                        why: failed.map(|f| f.why),
                    })
                }
            }
        }
    }

    /// Runs `on_job_complete` on one ready worker, once (never again, even after a restart).
    async fn complete(&self, workers: &[Arc<dyn Replica>]) {
        let id = self.job.id.clone();
        let first = self
            .until_stored("mark on_job_complete started", move |c| {
                jobs::start_completion(c, &id)
            })
            .await;
        if first != Some(true) {
            return;
        }
        let Some((worker, addr)) = workers
            .iter()
            .find_map(|w| w.ready_addr().map(|a| (w.clone(), a)))
        else {
            self.log
                .line("no worker is ready to run on_job_complete; it is skipped".to_string())
                .await;
            return;
        };
        let answer = self
            .shared
            .http
            .post(format!("http://{addr}/on-job-complete"))
            .header("x-cortex-job-id", &self.job.id)
            // An empty body, said so: simple servers read Content-Length.
            .header(reqwest::header::CONTENT_LENGTH, "0")
            .timeout(ON_COMPLETE_TIMEOUT)
            .send()
            .await;
        let line = match answer {
            Ok(r) if r.status().is_success() => {
                format!("on_job_complete ran on worker {}", worker.id())
            }
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return,
            Ok(r) => format!(
                "on_job_complete failed on worker {}: it answered {}",
                worker.id(),
                r.status().as_u16()
            ),
            Err(e) => format!("on_job_complete failed on worker {}: {e}", worker.id()),
        };
        self.log.line(line).await;
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A worker that ends the job.
struct FailedWorker {
    why: String,
    /// It was killed for using more memory than `compute.mem` allows.
    out_of_memory: bool,
}

/// Why a worker failed (killed for memory, could not initialise, or keeps crashing), if one
/// did. A worker killed for memory fails the job at once: it would only be killed again.
fn failed_worker(workers: &[Arc<dyn Replica>]) -> Option<FailedWorker> {
    let snapshots: Vec<_> = workers.iter().map(|w| w.snapshot()).collect();
    let failed = snapshots
        .iter()
        .find(|s| s.out_of_memory)
        .or_else(|| snapshots.iter().find(|s| s.phase == ReplicaPhase::Failed))?;
    let why = failed
        .last_error
        .clone()
        .unwrap_or_else(|| "it keeps exiting".to_string());
    Some(FailedWorker {
        why: format!("worker {} failed: {why}", failed.id),
        out_of_memory: failed.out_of_memory,
    })
}
