//! BatchAPI jobs: what a submission becomes (`submission.rs`: validation and partitioning into
//! batches), job ids (`ids.rs`), and a job's status derived from durable facts (`status.rs`).
//! Pure: the queue itself is `store/jobs.rs`; running workers is the engine's.

pub mod ids;
pub mod status;
pub mod submission;
