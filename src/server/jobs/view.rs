//! What the API says about a job: the seed's fields, from its stored row, its batches' counts
//! and its workers. Pure.

use crate::api;
use crate::batch::status::JobStatus;
use crate::batch::submission::batches_per_worker;
use crate::clock::rfc3339_nanos;
use crate::store::batches::{Counts, DeadLetter};
use crate::store::jobs::JobRow;

/// The URL of a job's queue on the server at `server_url`.
pub fn sqs_url(server_url: &str, job_id: &str) -> String {
    format!("{server_url}/api/v2/queues/{job_id}")
}

/// The seed's job fields (the answer to a submission).
pub fn job_spec(job: &JobRow, server_url: &str) -> api::JobSpec {
    api::JobSpec {
        job_id: job.id.clone(),
        api_name: job.api_name.clone(),
        workers: job.workers,
        batches_per_worker: batches_per_worker(job.total_batches as usize, job.workers) as u64,
        config: serde_json::from_str(&job.config_json).unwrap_or_default(),
        api_id: job.model_id.clone(),
        sqs_url: sqs_url(server_url, &job.id),
        created_time: rfc3339_nanos(job.created_ns),
        total_batch_count: job.total_batches,
        timeout: job.timeout_secs,
        max_receive_count: job.max_receive_count,
    }
}

/// The seed's `job_status` object. `workers` is what its running workers say (`None` once the
/// job ended: then how they ended is stored).
pub fn job_status(
    job: &JobRow,
    counts: &Counts,
    dead_letters: Vec<DeadLetter>,
    workers: Option<api::WorkerStats>,
    server_url: &str,
) -> api::JobStatus {
    // What the job's runner recorded: it decides (`batch::status::derive`) and records before
    // anyone is told, so a job seen `status_succeeded` has run its `on_job_complete` too.
    let status = JobStatus::parse(&job.status).unwrap_or(JobStatus::UnexpectedError);
    let worker_stats = match workers {
        Some(w) if job.end_ns.is_none() => w,
        _ => api::WorkerStats {
            succeeded: job.workers_succeeded,
            failed: job.workers_failed,
            ..api::WorkerStats::default()
        },
    };
    api::JobStatus {
        spec: job_spec(job, server_url),
        status: status.as_str().to_string(),
        batches_in_queue: counts.queued,
        batch_metrics: api::BatchMetrics {
            succeeded: counts.succeeded,
            failed: counts.failed,
            avg_time_per_batch: counts.avg_time_ms.map(|ms| ms / 1000.0),
            total: job.total_batches,
        },
        worker_counts: worker_stats.clone(),
        worker_stats,
        start_time: rfc3339_nanos(job.start_ns.unwrap_or(job.created_ns)),
        end_time: job.end_ns.map(rfc3339_nanos),
        message: job.failure.clone(),
        dead_letters: dead_letters
            .into_iter()
            .map(|d| api::DeadLetter {
                batch: d.seq.max(0) as u64,
                receive_count: d.receive_count,
                error: d.last_error,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobRow {
        JobRow {
            id: "7ffffffffffffff0".into(),
            model_id: "m".into(),
            api_name: "sum".into(),
            workers: 2,
            config_json: "{\"k\":1}".into(),
            timeout_secs: None,
            max_receive_count: 1,
            status: "status_running".into(),
            total_batches: 5,
            failure: None,
            created_ns: 1_594_911_370_276_007_415,
            start_ns: Some(1_594_911_370_276_007_415),
            end_ns: None,
            completion_started: false,
            workers_succeeded: 0,
            workers_failed: 0,
        }
    }

    #[test]
    fn the_seed_fields_are_filled_in() {
        let counts = Counts {
            queued: 1,
            leased: 1,
            succeeded: 2,
            failed: 1,
            avg_time_ms: Some(1500.0),
        };
        let running = api::WorkerStats {
            running: 2,
            ..Default::default()
        };
        let s = job_status(
            &job(),
            &counts,
            Vec::new(),
            Some(running.clone()),
            "http://h",
        );
        assert_eq!(s.status, "status_running");
        assert_eq!(s.spec.batches_per_worker, 3);
        assert_eq!(s.spec.sqs_url, "http://h/api/v2/queues/7ffffffffffffff0");
        assert_eq!(s.spec.created_time, "2020-07-16T14:56:10.276007415Z");
        assert_eq!(s.batch_metrics.avg_time_per_batch, Some(1.5));
        assert_eq!((s.batches_in_queue, s.batch_metrics.total), (1, 5));
        assert_eq!(s.worker_stats, running);
        assert_eq!(s.end_time, None);
        let json = serde_json::to_value(&s).unwrap();
        for field in [
            "job_id",
            "api_name",
            "workers",
            "batches_per_worker",
            "config",
            "api_id",
            "sqs_url",
            "created_time",
            "status",
            "batches_in_queue",
            "batch_metrics",
            "worker_stats",
            "start_time",
        ] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
    }

    #[test]
    fn an_ended_job_shows_how_its_workers_ended() {
        let ended = JobRow {
            status: "status_succeeded".into(),
            end_ns: Some(1_594_911_371_000_000_000),
            workers_succeeded: 2,
            ..job()
        };
        let s = job_status(
            &ended,
            &Counts::default(),
            Vec::new(),
            Some(api::WorkerStats::default()),
            "http://h",
        );
        assert_eq!(s.worker_stats.succeeded, 2);
        assert_eq!(
            s.end_time.as_deref(),
            Some("2020-07-16T14:56:11.000000000Z")
        );
    }
}
