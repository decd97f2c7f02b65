//! Starting a job's runner and remembering it while it runs; how a job's workers are fed.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{runner, JobLog, RunningJob, Shared};
use crate::batch::status::JobStatus;
use crate::clock::now_ns;
use crate::engine::ReplicaPlan;
use crate::store::jobs::{self, Ending, JobRow};

/// Forgets a runner once it ended, however it ended (a panic included).
struct Forget {
    id: String,
    running: Arc<Mutex<HashMap<String, Arc<RunningJob>>>>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Starts runners and remembers the running ones (cheap to clone into tasks).
#[derive(Clone)]
pub(super) struct Runners {
    pub(super) shared: Arc<Shared>,
    pub(super) running: Arc<Mutex<HashMap<String, Arc<RunningJob>>>>,
    pub(super) tasks: tokio_util::task::TaskTracker,
    pub(super) shutdown: CancellationToken,
}

impl Runners {
    /// Starts the runner of a stored job.
    pub(super) fn start(&self, job: JobRow, template: ReplicaPlan, log: JobLog, feeding: Feeding) {
        let handle = Arc::new(RunningJob {
            api: job.api_name.clone(),
            stop: CancellationToken::new(),
            workers: RwLock::new(Vec::new()),
            project: template.cwd.clone(),
            waiting: AtomicU32::new(0),
            done: watch::Sender::new(false),
        });
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), handle.clone());
        let run = runner::Run {
            shared: self.shared.clone(),
            job,
            template,
            handle,
            log,
            in_flight: feeding.in_flight,
            multi: feeding.multi,
            shutdown: self.shutdown.clone(),
        };
        let forget = Forget {
            id: run.job.id.clone(),
            running: self.running.clone(),
        };
        self.tasks.spawn(async move {
            let _forget = forget;
            run.run().await;
        });
    }

    /// Records how the job ended before it ran (the first ending recorded stands).
    pub(super) async fn end_unstarted(
        &self,
        log: &JobLog,
        job_id: &str,
        status: JobStatus,
        why: String,
    ) {
        let (id, text) = (job_id.to_string(), why.clone());
        let ended = self
            .shared
            .store
            .call(move |c| {
                jobs::finish(
                    c,
                    &id,
                    &Ending {
                        status: status.as_str(),
                        end_ns: now_ns(),
                        failure: Some(&text),
                        workers_succeeded: 0,
                        workers_failed: 0,
                    },
                )
            })
            .await;
        match ended {
            Ok(true) => {
                log.line(format!("job {job_id} {}: {why}", status.message()))
                    .await
            }
            Ok(false) => {}
            Err(e) => tracing::error!("cannot record the end of job {job_id}: {e}"),
        }
    }
}

/// How a job's workers are fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Feeding {
    /// Feeders per worker, each with one request at a time: as many as its predictor runs at
    /// once; a command worker gets one more, waiting, so that it never idles between batches
    /// (a stream to the python shim already holds its next batch: `group_stream::WINDOW`).
    pub(super) in_flight: u32,
    /// Several batches per request: the python shim takes them as a stream
    /// (`POST /batches`); a command worker gets one batch per `POST /`, as the contract says.
    pub(super) multi: bool,
}

pub(super) fn feeding(spec: &crate::spec::ApiSpec) -> Feeding {
    let (processes, threads, python) = spec.predictor.as_ref().map_or((1, 1, false), |p| {
        (
            p.processes_per_replica,
            p.threads_per_process,
            p.kind.runs_shim(),
        )
    });
    Feeding {
        in_flight: processes
            .saturating_mul(threads)
            .saturating_add(u32::from(!python)),
        multi: python,
    }
}
