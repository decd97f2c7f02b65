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
    let Some(read) = read_files(&runners, &job, &files, batch_size).await else {
        return;
    };
    let Some(stored) = still_wanted(&runners, &log, &job.id).await else {
        return;
    };
    match read {
        Ok(0) => {
            let why = "the files hold no items; each line of a file is one JSON item";
            runners
                .end_unstarted(&log, &job.id, JobStatus::EnqueueFailed, why.to_string())
                .await;
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
            start(&runners, &job.id, (template, how), log).await;
        }
        Err((status, why)) => runners.end_unstarted(&log, &job.id, status, why).await,
    }
}

/// How many items `files` hold, their batches stored; why not, with the job's end status,
/// when a file cannot be read or the job's timeout passes first; `None` when the server
/// shuts down meanwhile.
async fn read_files(
    runners: &Runners,
    job: &JobRow,
    files: &[sources::Source],
    batch_size: u32,
) -> Option<Result<u64, (JobStatus, String)>> {
    let shared = &runners.shared;
    let read = sources::read_batches(
        (&shared.fetcher, &shared.objects),
        files,
        batch_size,
        |batches| {
            let (store, id) = (shared.store.clone(), job.id.clone());
            async move {
                store
                    .call(move |c| jobs::append_batches(c, &id, &batches))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("cannot store its batches: {e}"))
            }
        },
    );
    tokio::select! {
        read = read => Some(read.map_err(|why| (JobStatus::EnqueueFailed, why))),
        _ = timeout(job) => Some(Err((
            JobStatus::TimedOut,
            format!(
                "the job's files were still being read when its timeout of {}s passed",
                job.timeout_secs.unwrap_or_default()
            ),
        ))),
        _ = runners.shutdown.cancelled() => None,
    }
}

/// Ends when `job`'s timeout (counted from its creation) passes; never without one.
async fn timeout(job: &JobRow) {
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
}

/// The job as stored now, unless it was deleted with its API or stopped while its files
/// were read (or cannot be read: then it ends).
async fn still_wanted(runners: &Runners, log: &JobLog, job_id: &str) -> Option<JobRow> {
    let id = job_id.to_string();
    match runners.shared.store.call(move |c| jobs::get(c, &id)).await {
        Ok(Some(stored)) if stored.end_ns.is_none() => Some(stored),
        Ok(_) => None,
        Err(e) => {
            let why = format!("cannot read the job: {e}");
            runners
                .end_unstarted(log, job_id, JobStatus::UnexpectedError, why)
                .await;
            None
        }
    }
}

/// Marks the job running and starts its workers (unless it was stopped just now).
async fn start(
    runners: &Runners,
    job_id: &str,
    (template, how): (ReplicaPlan, Feeding),
    log: JobLog,
) {
    let id = job_id.to_string();
    let started = runners
        .shared
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
                .end_unstarted(&log, job_id, JobStatus::UnexpectedError, why)
                .await;
        }
    }
}
