//! BatchAPI jobs as the server runs them: submission (the batches are stored in one
//! transaction before the answer), one runner per job (`runner.rs`) with a feeder per worker
//! (`feeder.rs`), stopping, resuming after a restart, and what the API says about a job
//! (`view.rs`). The pure rules are in `batch/`; the queue is `store/jobs.rs`.

mod crew;
mod enqueue;
mod feeder;
mod group_stream;
mod inputs;
mod job_log;
mod kept;
mod outcome;
mod resume;
mod runner;
mod runners;
mod settler;
pub mod sources;
pub mod view;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crew::WorkerSlots;
pub use feeder::visibility_ms;
pub use job_log::JobLog;
use runners::{feeding, Feeding, Runners};

use super::fetch::Fetcher;
use super::live_api::LiveApi;
use super::objects::S3Access;
use super::tokens::Tokens;
use crate::api;
use crate::batch::submission::Submission;
use crate::clock::now_ns;
use crate::engine::{Engine, Replica, ReplicaPhase};
use crate::store::batches;
use crate::store::jobs::{self, Ending, NewJob};
use crate::store::{Store, StoreError};
use sources::SourceError;

/// What runners and feeders share.
pub(crate) struct Shared {
    pub store: Store,
    pub engine: Arc<dyn Engine>,
    pub tokens: Arc<Tokens>,
    /// To workers on loopback (pooled, no proxy).
    pub http: reqwest::Client,
    /// To `delimited_files` URLs: allowed addresses only, and time limits so a source that
    /// stalls fails the job instead of holding it.
    pub fetcher: Fetcher,
    /// To S3, for `s3_paths`: with the server's own credentials and endpoint.
    pub objects: S3Access,
    /// The server-wide cap on batch workers running at once.
    pub slots: WorkerSlots,
    server_url: OnceLock<String>,
    /// `--data-root`, which workers may read.
    pub data_root: Option<PathBuf>,
}

impl Shared {
    pub fn server_url(&self) -> String {
        self.server_url.get().cloned().unwrap_or_default()
    }
}

/// A job whose runner is running.
pub struct RunningJob {
    pub api: String,
    stop: CancellationToken,
    workers: RwLock<Vec<Arc<dyn Replica>>>,
    /// The unpacked project its workers run from.
    project: PathBuf,
    /// Workers waiting for one of the server's batch-worker slots.
    waiting: AtomicU32,
    done: watch::Sender<bool>,
}

impl RunningJob {
    fn workers(&self) -> Vec<Arc<dyn Replica>> {
        self.workers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_workers(&self, workers: Vec<Arc<dyn Replica>>) {
        *self.workers.write().unwrap_or_else(|p| p.into_inner()) = workers;
    }

    fn set_waiting(&self, n: u32) {
        self.waiting.store(n, Ordering::Relaxed);
    }

    fn finished(&self) {
        self.done.send_replace(true);
    }

    /// What its workers are doing (the seed's `worker_stats`).
    pub fn worker_stats(&self) -> api::WorkerStats {
        let mut stats = api::WorkerStats {
            pending: self.waiting.load(Ordering::Relaxed),
            ..api::WorkerStats::default()
        };
        for w in self.workers() {
            match w.snapshot().phase {
                ReplicaPhase::Pending => stats.pending += 1,
                ReplicaPhase::Initializing | ReplicaPhase::Restarting => stats.initializing += 1,
                ReplicaPhase::Ready => stats.running += 1,
                ReplicaPhase::Failed => stats.failed += 1,
                ReplicaPhase::Stopped => stats.succeeded += 1,
            }
        }
        stats
    }
}

/// Where a job's `delimited_files` and `file_path_lister` may come from.
pub struct Sources {
    /// URLs: fetched from allowed addresses only.
    pub fetcher: Fetcher,
    /// Files: beneath `cortex server --data-root`, if given.
    pub data_root: Option<PathBuf>,
    /// `s3_paths`: the server's S3 access (none without AWS credentials).
    pub objects: S3Access,
}

/// Every job of this server.
pub struct Jobs {
    runners: Runners,
    shared: Arc<Shared>,
    logs_dir: PathBuf,
    /// Where `delimited_files` may name local files (`cortex server --data-root`).
    data_root: Option<PathBuf>,
    /// The creation time of the last job, so two jobs never share an id.
    last_created_ns: AtomicI64,
}

impl Jobs {
    pub fn new(
        store: Store,
        engine: Arc<dyn Engine>,
        tokens: Arc<Tokens>,
        http: reqwest::Client,
        sources: Sources,
        data_dir: &std::path::Path,
        slots: WorkerSlots,
    ) -> Jobs {
        let Sources {
            fetcher,
            data_root,
            objects,
        } = sources;
        let shared = Arc::new(Shared {
            store,
            engine,
            tokens,
            http,
            fetcher,
            objects,
            slots,
            server_url: OnceLock::new(),
            data_root: data_root.clone(),
        });
        Jobs {
            runners: Runners {
                shared: shared.clone(),
                running: Arc::default(),
                tasks: tokio_util::task::TaskTracker::new(),
                shutdown: CancellationToken::new(),
            },
            shared,
            logs_dir: data_dir.join("jobs"),
            data_root,
            last_created_ns: AtomicI64::new(0),
        }
    }

    /// The URL this server answers at (jobs' `sqs_url` is under it); set once it listens.
    pub fn set_server_url(&self, url: String) {
        let _ = self.shared.server_url.set(url);
    }

    pub fn server_url(&self) -> String {
        self.shared.server_url()
    }

    /// The server's log of a job.
    pub fn log_of(&self, api: &str, job_id: &str) -> JobLog {
        JobLog::new(&self.logs_dir, api, job_id)
    }

    /// Forgets the job logs of `api` (it was deleted).
    pub async fn remove_logs(&self, api: &str) {
        job_log::remove_all(&self.logs_dir, api).await;
    }

    /// The running job `job_id`, if its runner runs.
    /// The projects running jobs' workers run from (they must stay on disk).
    pub fn projects_in_use(&self) -> Vec<PathBuf> {
        self.runners
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|r| r.project.clone())
            .collect()
    }

    pub fn running(&self, job_id: &str) -> Option<Arc<RunningJob>> {
        self.runners
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(job_id)
            .cloned()
    }

    /// A creation time later than every job's so far (job ids are made from it).
    fn next_created_ns(&self) -> i64 {
        let now = now_ns();
        let mut last = self.last_created_ns.load(Ordering::Relaxed);
        loop {
            let next = now.max(last + 1);
            match self.last_created_ns.compare_exchange(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Checks where a submission's files come from, before anything is stored (local paths
    /// under the data root, URLs on addresses the server may fetch from, `s3_paths` listed
    /// with their `includes` and `excludes`); the files, in order.
    pub async fn check_sources(
        &self,
        sub: &Submission,
    ) -> Result<Vec<sources::Source>, SourceError> {
        let readers = (&self.shared.fetcher, &self.shared.objects);
        inputs::check(readers, self.data_root.as_deref(), sub).await
    }

    /// Stores a job and starts it. Items: the job and all its batches in one transaction,
    /// before the answer. Files (`files`, checked by [`Jobs::check_sources`]): the job is
    /// stored `status_enqueuing`, its files are read into batches in the background, and it
    /// runs once they are all in (`status_enqueue_failed`, naming the file and line, when one
    /// cannot be read). `live` is the BatchAPI.
    pub async fn submit(
        &self,
        live: &LiveApi,
        sub: Submission,
        files: Vec<sources::Source>,
    ) -> Result<api::JobSpec, StoreError> {
        let template = live.versions.newest().template().cloned().ok_or_else(|| {
            StoreError::Conflict(format!("{} has no version to run", live.spec.name))
        })?;
        let mut config = live
            .spec
            .predictor
            .as_ref()
            .map(|p| p.config.clone())
            .unwrap_or_default();
        config.extend(sub.config.clone());
        let created_ns = self.next_created_ns();
        let id = crate::batch::ids::job_id(created_ns);
        let (model_id, api_name) = (live.model_id.clone(), live.spec.name.clone());
        let config_json = serde_json::Value::Object(config).to_string();
        let (workers, timeout, max_receive_count, batch_size) = (
            sub.workers,
            sub.timeout,
            sub.max_receive_count,
            sub.batch_size,
        );
        let log = self.log_of(&api_name, &id);
        let (items, batches) = match inputs::batches_now(sub.input, &files, batch_size) {
            Some((items, origin, batches)) => (Some((items, origin)), batches),
            None => (None, Vec::new()),
        };
        let n_batches = batches.len();
        // A worker without a batch would only start and stop (files: the runner decides once
        // they are read).
        let workers = match items {
            Some(_) => crew::planned_workers(workers, n_batches as u64),
            None => workers,
        };
        let job_id = id.clone();
        let row = self
            .shared
            .store
            .call(move |c| {
                let job = NewJob {
                    id: &job_id,
                    model_id: &model_id,
                    api_name: &api_name,
                    workers,
                    config_json: &config_json,
                    timeout_secs: timeout,
                    max_receive_count,
                    created_ns,
                };
                match items {
                    Some(_) => jobs::create(c, &job, &batches),
                    None => jobs::create_enqueuing(c, &job),
                }
            })
            .await?;
        match items {
            Some((items, origin)) => {
                log.line(format!(
                    "partitioning {items} items {origin} into {n_batches} batches of size {batch_size}"
                ))
                .await;
                log.line(format!("validations passed; enqueued {n_batches} batches"))
                    .await;
                self.runners
                    .start(row.clone(), template, log, feeding(&live.spec));
            }
            None => {
                log.line(format!(
                    "started enqueuing batches from {} file(s)",
                    files.len()
                ))
                .await;
                let (runners, job) = (self.runners.clone(), row.clone());
                let depth = feeding(&live.spec);
                self.runners.tasks.spawn(async move {
                    enqueue::enqueue(runners, job, files, batch_size, (template, depth), log).await;
                });
            }
        }
        Ok(view::job_spec(&row, &self.server_url()))
    }

    /// The job `job_id` of `live`, with its status.
    pub async fn status(
        &self,
        live: &LiveApi,
        job_id: &str,
        all_dead_letters: bool,
    ) -> Result<api::JobStatus, StoreError> {
        let (id, model) = (job_id.to_string(), live.model_id.clone());
        let found = self
            .shared
            .store
            .call(move |c| {
                let Some(job) = jobs::get(c, &id)?.filter(|j| j.model_id == model) else {
                    return Ok(None);
                };
                let counts = batches::counts(c, &id)?;
                let dead = batches::dead_letters(c, &id, (!all_dead_letters).then_some(100))?;
                Ok(Some((job, counts, dead)))
            })
            .await?;
        let Some((job, counts, dead)) = found else {
            return Err(StoreError::NotFound(format!(
                "{} has no job {job_id}; `cortex get {}` lists its jobs",
                live.spec.name, live.spec.name
            )));
        };
        let workers = self.running(&job.id).map(|r| r.worker_stats());
        Ok(view::job_status(
            &job,
            &counts,
            dead,
            workers,
            &self.server_url(),
        ))
    }

    /// The jobs of `live`, newest first.
    pub async fn list(&self, live: &LiveApi) -> Result<Vec<api::JobStatus>, StoreError> {
        let model = live.model_id.clone();
        let rows = self
            .shared
            .store
            .call(move |c| {
                jobs::list(c, &model)?
                    .into_iter()
                    .map(|job| {
                        let counts = batches::counts(c, &job.id)?;
                        Ok((job, counts))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        let url = self.server_url();
        Ok(rows
            .into_iter()
            .map(|(job, counts)| {
                let workers = self.running(&job.id).map(|r| r.worker_stats());
                view::job_status(&job, &counts, Vec::new(), workers, &url)
            })
            .collect())
    }

    /// Stops a job: recorded `status_stopped` first, then its workers are stopped (this waits
    /// for them). A job that already ended is a conflict.
    pub async fn stop(&self, live: &LiveApi, job_id: &str) -> Result<(), StoreError> {
        let (id, model) = (job_id.to_string(), live.model_id.clone());
        let name = live.spec.name.clone();
        self.shared
            .store
            .call(move |c| {
                let Some(job) = jobs::get(c, &id)?.filter(|j| j.model_id == model) else {
                    return Err(StoreError::NotFound(format!(
                        "{name} has no job {id}; `cortex get {name}` lists its jobs"
                    )));
                };
                let ended = !jobs::finish(
                    c,
                    &id,
                    &Ending {
                        status: crate::batch::status::JobStatus::Stopped.as_str(),
                        end_ns: now_ns(),
                        failure: None,
                        workers_succeeded: 0,
                        workers_failed: 0,
                    },
                )?;
                if ended {
                    let status = crate::batch::status::JobStatus::parse(&job.status)
                        .map_or(job.status.clone(), |s| s.message().to_string());
                    return Err(StoreError::Conflict(format!(
                        "job {id} already ended ({status}); there is nothing to stop"
                    )));
                }
                Ok(())
            })
            .await?;
        self.log_of(&live.spec.name, job_id)
            .line(format!("job {job_id} stopped"))
            .await;
        if let Some(running) = self.running(job_id) {
            running.stop.cancel();
            let mut done = running.done.subscribe();
            let _ = done.wait_for(|d| *d).await;
        }
        Ok(())
    }

    /// Stops the runners of `api`'s jobs, whose records were deleted with the API (nothing is
    /// recorded: there is nothing left to record it in). Waits for their workers to stop.
    pub async fn stop_runners_of(&self, api: &str) {
        let running: Vec<Arc<RunningJob>> = self
            .runners
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|r| r.api == api)
            .cloned()
            .collect();
        for job in running {
            job.stop.cancel();
            let mut done = job.done.subscribe();
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Stops every runner and its workers (server shutdown); the jobs resume at the next start.
    pub async fn shutdown(&self) {
        self.runners.shutdown.cancel();
        self.runners.tasks.close();
        self.runners.tasks.wait().await;
    }
}
