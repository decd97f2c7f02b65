//! The local engine keeps each replica's output in one file: `<log root>/<api>/<replica>.log`.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::output::OutputPaths;
use crate::engine::ReplicaLogs;
use crate::tail;

/// One replica's log file, read on blocking threads.
#[derive(Debug)]
pub(super) struct FileLogs {
    pub(super) path: PathBuf,
}

impl FileLogs {
    /// Runs a blocking read of the file on tokio's blocking pool.
    fn blocking<T: Send + 'static>(
        &self,
        fallback: T,
        f: impl FnOnce(&std::path::Path) -> T + Send + 'static,
    ) -> BoxFuture<'static, T> {
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&path))
                .await
                .unwrap_or(fallback)
        })
    }
}

impl ReplicaLogs for FileLogs {
    fn tail_lines(&self, n: usize) -> BoxFuture<'static, Vec<String>> {
        self.blocking(Vec::new(), move |p| tail::tail_lines(p, n))
    }

    fn tail_offset(&self, n: usize) -> BoxFuture<'static, u64> {
        self.blocking(0, move |p| tail::tail_offset(p, n))
    }

    fn size(&self) -> BoxFuture<'static, u64> {
        self.blocking(0, |p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
    }

    fn read_from(&self, offset: u64) -> BoxFuture<'static, Option<Bytes>> {
        self.blocking(None, move |p| tail::read_from(p, offset).map(Bytes::from))
    }

    fn streams(&self, n: usize) -> BoxFuture<'static, Result<(String, String), String>> {
        let fallback = Err("the log reader stopped".to_string());
        self.blocking(fallback, move |p| {
            let paths = OutputPaths::of(p);
            let read = |path: &std::path::Path| -> Result<String, String> {
                match std::fs::metadata(path) {
                    Ok(_) => Ok(tail::tail_lines(path, n).join("\n")),
                    // Nothing written to that stream yet.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                    Err(e) => Err(format!("cannot read {}: {e}", path.display())),
                }
            };
            Ok((read(&paths.stdout)?, read(&paths.stderr)?))
        })
    }
}
