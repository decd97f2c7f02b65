//! A job whose items are in `delimited_files`: stored `status_enqueuing`, its files read into
//! batches in the background (`sources.rs`), then started; `status_enqueue_failed`, naming the
//! file and line, when one cannot be read; `status_timed_out` when its `timeout` passes first.

use std::time::Duration;

use super::sources;
use super::{Feeding, JobLog, Runners};
use crate::batch::status::JobStatus;
use crate::clock::now_ns;
use crate::engine::ReplicaPlan;
use crate::store::jobs::{self, JobRow};

/// Reads a job's files into batches, then starts it (unless it was stopped meanwhile).
pub(super) async fn enqueue(
    runners: Runners,
    job: JobRow,
    files: Vec<sources::Source>,
    batch_size: u32,
    (template, how): (ReplicaPlan, Feeding),
    log: JobLog,
) {
    let shared = runners.shared.clone();
    let job_id = job.id.clone();
    let read = sources::read_batches(
        (&shared.fetcher, &shared.objects),
        &files,
        batch_size,
        |batches| {
            let (store, id) = (shared.store.clone(), job_id.clone());
            async move {
                store
                    .call(move |c| jobs::append_batches(c, &id, &batches))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("cannot store its batches: {e}"))
            }
        },
    );
    let deadline = async {
        match job.timeout_secs {
            Some(t) => {
                let end_ns = job.created_ns.saturating_add(
                    i64::try_from(t)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1_000_000_000),
                );
                let left = end_ns.saturating_sub(now_ns()).max(0) as u64;
                tokio::time::sleep(Duration::from_nanos(left)).await;
            }
            None => std::future::pending().await,
        }
    };
    let read = tokio::select! {
        read = read => read.map_err(|why| (JobStatus::EnqueueFailed, why)),
        _ = deadline => Err((
            JobStatus::TimedOut,
            format!(
                "the job's files were still being read when its timeout of {}s passed",
                job.timeout_secs.unwrap_or_default()
            ),
        )),
        _ = runners.shutdown.cancelled() => return,
    };
    let id = job_id.clone();
    let stored = match shared.store.call(move |c| jobs::get(c, &id)).await {
        Ok(Some(stored)) => stored,
        // Deleted with its API meanwhile.
        Ok(None) => return,
        Err(e) => {
            runners
                .end_unstarted(
                    &log,
                    &job_id,
                    JobStatus::UnexpectedError,
                    format!("cannot read the job: {e}"),
                )
                .await;
            return;
        }
    };
    if stored.end_ns.is_some() {
        // Stopped while its files were read.
        return;
    }
    match read {
        Ok(0) => {
            let why = "the files hold no items; each line of a file is one JSON item";
            runners
                .end_unstarted(&log, &job_id, JobStatus::EnqueueFailed, why.to_string())
                .await;
            return;
        }
        Ok(items) => {
            log.line(format!(
                "partitioning {items} items found in {} file(s) into {} batches of size {batch_size}",
                files.len(),
                stored.total_batches
            ))
            .await;
            log.line(format!(
                "completed enqueuing a total of {} batches",
                stored.total_batches
            ))
            .await;
        }
        Err((status, why)) => {
            runners.end_unstarted(&log, &job_id, status, why).await;
            return;
        }
    }
    let id = job_id.clone();
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
        Err(e) => {
            let why = format!("cannot start the job: {e}");
            runners
                .end_unstarted(&log, &job_id, JobStatus::UnexpectedError, why)
                .await;
        }
    }
}
