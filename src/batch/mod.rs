//! BatchAPI jobs: what a submission becomes (`submission.rs`: validation and partitioning into
//! batches; `file_inputs.rs`: `delimited_files` and `file_path_lister`; `input.rs`: where
//! items come from and how problems are said, shared by both), job ids (`ids.rs`), and a job's status derived from durable facts (`status.rs`).
//! Pure: the queue itself is `store/jobs.rs`; running workers is the engine's.

mod file_inputs;
pub mod ids;
mod input;
pub mod status;
pub mod submission;
