//! A job whose items are in `delimited_files`: stored `status_enqueuing`, its files read into
//! batches in the background (`sources.rs`), then started; `status_enqueue_failed`, naming the
//! file and line, when one cannot be read.

use super::sources;
use super::{Feeding, JobLog, Runners};
use crate::clock::now_ns;
use crate::engine::ReplicaPlan;
use crate::store::jobs::{self, Ending};

/// Reads a job's files into batches, then starts it; records `status_enqueue_failed` with the
/// reason when a file cannot be read (and stops when the job was stopped meanwhile).
pub(super) async fn enqueue(
    runners: Runners,
    job_id: String,
    files: Vec<sources::Source>,
    batch_size: u32,
    (template, how): (ReplicaPlan, Feeding),
    log: JobLog,
) {
    let shared = runners.shared.clone();
    let read = sources::read_batches(&shared.http, &files, batch_size, |batches| {
        let (store, id) = (shared.store.clone(), job_id.clone());
        async move {
            store
                .call(move |c| jobs::append_batches(c, &id, &batches))
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot store its batches: {e}"))
        }
    });
    let read = tokio::select! {
        read = read => read,
        _ = runners.shutdown.cancelled() => return,
    };
    let id = job_id.clone();
    let Ok(Some(job)) = shared.store.call(move |c| jobs::get(c, &id)).await else {
        return;
    };
    if job.end_ns.is_some() {
        // Stopped while its files were read.
        return;
    }
    let failure = match read {
        Ok(0) => Some("the files hold no items; each line of a file is one JSON item".to_string()),
        Ok(items) => {
            log.line(format!(
                "partitioning {items} items found in {} file(s) into {} batches of size {batch_size}",
                files.len(),
                job.total_batches
            ))
            .await;
            log.line(format!(
                "completed enqueuing a total of {} batches",
                job.total_batches
            ))
            .await;
            None
        }
        Err(why) => Some(why),
    };
    let id = job_id.clone();
    if let Some(why) = failure {
        let text = why.clone();
        let ended = shared
            .store
            .call(move |c| {
                jobs::finish(
                    c,
                    &id,
                    &Ending {
                        status: crate::batch::status::JobStatus::EnqueueFailed.as_str(),
                        end_ns: now_ns(),
                        failure: Some(&text),
                        workers_succeeded: 0,
                        workers_failed: 0,
                    },
                )
            })
            .await;
        if matches!(ended, Ok(true)) {
            log.line(format!("failed while enqueuing: {why}")).await;
        }
        return;
    }
    let started = shared
        .store
        .call(move |c| {
            if !jobs::start_running(c, &id, now_ns())? {
                return Ok(None);
            }
            jobs::get(c, &id)
        })
        .await;
    match started {
        Ok(Some(job)) => runners.start(job, template, log, how),
        Ok(None) => {}
        Err(e) => tracing::error!("cannot start job {job_id}: {e}"),
    }
}
