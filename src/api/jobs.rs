//! BatchAPI jobs on the wire: the seed's submit answer, job status, stop answer, the job list,
//! and the queue routes behind a job's `sqs_url`. Field names are the seed's contract.

use serde::{Deserialize, Serialize};

/// The job fields every answer about a job carries (the seed's submit response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub job_id: String,
    pub api_name: String,
    pub workers: u32,
    pub batches_per_worker: u64,
    /// The job's config merged over the API's `predictor.config`.
    pub config: serde_json::Map<String, serde_json::Value>,
    pub api_id: String,
    /// The queue of the job's batches on this server (workers elsewhere use it with the job's
    /// token).
    pub sqs_url: String,
    /// RFC 3339 with nanoseconds, e.g. `2020-07-16T14:56:10.276007415Z`.
    pub created_time: String,
    /// Batches the job was cut into (so far, while it is enqueuing).
    pub total_batch_count: u64,
    /// Seconds after submission at which the job is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Deliveries of a batch before it counts as failed.
    pub max_receive_count: u32,
}

/// `batch_metrics` of a job's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchMetrics {
    pub succeeded: u64,
    pub failed: u64,
    /// Mean seconds per batch, once one is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avg_time_per_batch: Option<f64>,
    pub total: u64,
}

/// `worker_stats` of a job's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub pending: u32,
    pub initializing: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub stalled: u32,
}

/// A batch that failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its place in the job (0 for the first batch).
    pub batch: u64,
    /// Deliveries it had.
    pub receive_count: u32,
    /// What its last delivery ended with.
    pub error: Option<String>,
}

/// A job's status: the seed's `job_status` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    #[serde(flatten)]
    pub spec: JobSpec,
    /// One of the seed's strings, e.g. `status_running`.
    pub status: String,
    pub batches_in_queue: u64,
    pub batch_metrics: BatchMetrics,
    pub worker_stats: WorkerStats,
    /// The same numbers as `worker_stats`, under the name upstream cortex's server used.
    #[serde(default)]
    pub worker_counts: WorkerStats,
    pub start_time: String,
    /// Only once the job ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Why it ended badly (worker error, enqueue failure, timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The batches that failed for good (`GET /<api>/<job_id>?failed=true` lists them all;
    /// otherwise the first 100).
    #[serde(default)]
    pub dead_letters: Vec<DeadLetter>,
}

/// `GET /<batch-api>/<job_id>` (or `?jobID=<job_id>`): the seed's `job_status`, and beside it
/// what upstream cortex's server answered too: the API's endpoint and configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatusResponse {
    pub job_status: JobStatus,
    /// The BatchAPI's endpoint, e.g. `http://localhost:8888/sum-batch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The BatchAPI's configuration (its predictor's `env` redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_spec: Option<crate::api::ApiConfig>,
}

/// `GET /<batch-api>`: its jobs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobList {
    pub jobs: Vec<JobStatus>,
}

/// What `cortex get` lists of a BatchAPI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// Jobs enqueuing or running.
    pub running_jobs: u32,
    pub latest_job_id: Option<String>,
    /// When the latest job was submitted (RFC 3339).
    pub latest_job_created_time: Option<String>,
}

/// A batch handed out by `POST <sqs_url>/receive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedBatch {
    /// `<job_id>-<n>`: what `predict` gets as `batch_id`.
    pub batch_id: String,
    /// Proves the delivery; ack, nack and extend send it back.
    pub receipt: String,
    /// The batch: a JSON array of items, as text.
    pub body: String,
    pub receive_count: u32,
    /// Milliseconds the lease lasts unless extended.
    pub visibility_ms: u64,
}

/// `POST <sqs_url>/ack`, `/nack`, `/extend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchReceipt {
    pub batch_id: String,
    pub receipt: String,
    /// `nack`: why the batch failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `ack` and `nack`: how long the batch took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}
