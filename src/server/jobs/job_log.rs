//! The server's own lines about one job (`partitioning 10 items ... into 4 batches`, workers
//! started, the ending), kept in `<data>/jobs/<api>/<job_id>.log` next to what its workers
//! write (which the engine keeps). `cortex logs API JOB` shows both.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Appends lines to one job's server log.
#[derive(Debug, Clone)]
pub struct JobLog {
    path: PathBuf,
}

impl JobLog {
    /// The log of job `job_id` of `api` under `dir` (`<data>/jobs`).
    pub fn new(dir: &Path, api: &str, job_id: &str) -> JobLog {
        JobLog {
            path: dir.join(api).join(format!("{job_id}.log")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `cortex: <line>` (on a blocking thread; a log that cannot be written is only
    /// traced: the job goes on).
    pub async fn line(&self, line: String) {
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || append(&path, &line)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!("cannot write the job log {}: {e}", self.path.display());
        }
    }
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "cortex: {line}")
}

/// Removes the job logs of every job of `api` (after the API is deleted).
pub async fn remove_all(dir: &Path, api: &str) {
    let dir = dir.join(api);
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}
