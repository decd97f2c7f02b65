//! A job's status, derived from durable facts (its recorded status, its batches' counts, what
//! its workers did, the clock), never guessed: every batch succeeded or failed means done.

/// cortex's job statuses, as the API writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Enqueuing,
    Running,
    Succeeded,
    CompletedWithFailures,
    EnqueueFailed,
    WorkerError,
    WorkerOom,
    UnexpectedError,
    TimedOut,
    Stopped,
}

impl JobStatus {
    pub const ALL: [JobStatus; 10] = [
        JobStatus::Enqueuing,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::CompletedWithFailures,
        JobStatus::EnqueueFailed,
        JobStatus::WorkerError,
        JobStatus::WorkerOom,
        JobStatus::UnexpectedError,
        JobStatus::TimedOut,
        JobStatus::Stopped,
    ];

    /// The API's string, e.g. `status_running`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Enqueuing => "status_enqueuing",
            JobStatus::Running => "status_running",
            JobStatus::Succeeded => "status_succeeded",
            JobStatus::CompletedWithFailures => "status_completed_with_failures",
            JobStatus::EnqueueFailed => "status_enqueue_failed",
            JobStatus::WorkerError => "status_worker_error",
            JobStatus::WorkerOom => "status_worker_oom",
            JobStatus::UnexpectedError => "status_unexpected_error",
            JobStatus::TimedOut => "status_timed_out",
            JobStatus::Stopped => "status_stopped",
        }
    }

    /// The words `cortex get` shows, as cortex does.
    pub fn message(self) -> &'static str {
        match self {
            JobStatus::Enqueuing => "enqueuing",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::CompletedWithFailures => "completed with failures",
            JobStatus::EnqueueFailed => "failed while enqueuing",
            JobStatus::WorkerError => "worker error",
            JobStatus::WorkerOom => "out of memory",
            JobStatus::UnexpectedError => "unexpected error",
            JobStatus::TimedOut => "timed out",
            JobStatus::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// Whether the job is over (its workers stop, `end_time` is set).
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Enqueuing | JobStatus::Running)
    }
}

const NANOS: i64 = 1_000_000_000;

/// What is known for certain about a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFacts {
    /// The status last written down (enqueuing, running, or a terminal one).
    pub recorded: JobStatus,
    /// Batches of the job, and how many are done either way.
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Nanoseconds since the Unix epoch of the submission, and of now.
    pub created_ns: i64,
    pub now_ns: i64,
    /// Seconds after submission at which the job is stopped.
    pub timeout: Option<u64>,
    /// A worker was killed for using too much memory.
    pub worker_oom: bool,
    /// A worker could not initialise, or kept crashing.
    pub worker_failed: bool,
}

/// The job's status now. A recorded terminal status stands; then, in cortex's order: out of
/// memory, worker error, timed out; a running job whose every batch is done succeeded (or
/// completed with failures); otherwise what was recorded.
pub fn derive(f: &JobFacts) -> JobStatus {
    if f.recorded.is_terminal() {
        return f.recorded;
    }
    if f.worker_oom {
        return JobStatus::WorkerOom;
    }
    if f.worker_failed {
        return JobStatus::WorkerError;
    }
    if let Some(timeout) = f.timeout {
        let deadline = f.created_ns.saturating_add(
            i64::try_from(timeout)
                .unwrap_or(i64::MAX)
                .saturating_mul(NANOS),
        );
        if f.now_ns >= deadline {
            return JobStatus::TimedOut;
        }
    }
    let done = f.succeeded.saturating_add(f.failed);
    if f.recorded == JobStatus::Running && f.total > 0 && done >= f.total {
        return if f.failed > 0 {
            JobStatus::CompletedWithFailures
        } else {
            JobStatus::Succeeded
        };
    }
    f.recorded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(total: u64, succeeded: u64, failed: u64) -> JobFacts {
        JobFacts {
            recorded: JobStatus::Running,
            total,
            succeeded,
            failed,
            created_ns: 1000 * NANOS,
            now_ns: 1010 * NANOS,
            timeout: None,
            worker_oom: false,
            worker_failed: false,
        }
    }

    #[test]
    fn a_job_is_done_when_every_batch_is() {
        assert_eq!(
            derive(&running(3, 1, 1)),
            JobStatus::Running,
            "one batch left"
        );
        assert_eq!(derive(&running(3, 3, 0)), JobStatus::Succeeded);
        assert_eq!(derive(&running(3, 2, 1)), JobStatus::CompletedWithFailures);
        let enqueuing = JobFacts {
            recorded: JobStatus::Enqueuing,
            ..running(3, 3, 0)
        };
        assert_eq!(
            derive(&enqueuing),
            JobStatus::Enqueuing,
            "more batches may come"
        );
    }

    #[test]
    fn workers_timeouts_and_recorded_endings_come_first() {
        let oom = JobFacts {
            worker_oom: true,
            worker_failed: true,
            ..running(3, 3, 0)
        };
        assert_eq!(derive(&oom), JobStatus::WorkerOom);
        let crashed = JobFacts {
            worker_failed: true,
            ..running(3, 1, 0)
        };
        assert_eq!(derive(&crashed), JobStatus::WorkerError);
        let late = JobFacts {
            timeout: Some(10),
            ..running(3, 1, 0)
        };
        assert_eq!(derive(&late), JobStatus::TimedOut);
        let in_time = JobFacts {
            timeout: Some(11),
            ..running(3, 1, 0)
        };
        assert_eq!(derive(&in_time), JobStatus::Running);
        let stopped = JobFacts {
            recorded: JobStatus::Stopped,
            worker_oom: true,
            ..running(3, 3, 0)
        };
        assert_eq!(
            derive(&stopped),
            JobStatus::Stopped,
            "a recorded ending stands"
        );
    }

    #[test]
    fn strings_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                s.is_terminal(),
                !matches!(s, JobStatus::Enqueuing | JobStatus::Running)
            );
        }
    }
}
