//! The local engine keeps each replica's output in one log: `<log root>/<api>/<replica>.log`,
//! capped and rotated (`rotating.rs`), read here as one log whose offsets only grow.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::output::OutputPaths;
use super::rotating;
use crate::engine::ReplicaLogs;

/// One replica's log file, read on blocking threads.
#[derive(Debug)]
pub(crate) struct FileLogs {
    pub(crate) path: PathBuf,
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
        self.blocking(Vec::new(), move |p| rotating::tail_lines(p, n))
    }

    fn tail_offset(&self, n: usize) -> BoxFuture<'static, u64> {
        self.blocking(0, move |p| rotating::tail_offset(p, n))
    }

    fn size(&self) -> BoxFuture<'static, u64> {
        self.blocking(0, rotating::size)
    }

    fn read_from(&self, offset: u64) -> BoxFuture<'static, Option<Bytes>> {
        self.blocking(None, move |p| {
            rotating::read_from(p, offset).map(|(_, bytes)| Bytes::from(bytes))
        })
    }

    fn read_next(&self, offset: u64) -> BoxFuture<'static, Option<(u64, Bytes)>> {
        self.blocking(None, move |p| {
            rotating::read_from(p, offset).map(|(from, bytes)| (from, Bytes::from(bytes)))
        })
    }

    fn streams(&self, n: usize) -> BoxFuture<'static, Result<(String, String), String>> {
        let fallback = Err("the log reader stopped".to_string());
        self.blocking(fallback, move |p| {
            let paths = OutputPaths::of(p);
            let read = |path: &std::path::Path| -> Result<String, String> {
                match std::fs::metadata(path) {
                    Ok(_) => Ok(rotating::tail_lines(path, n).join("\n")),
                    // Nothing written to that stream yet.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                    Err(e) => Err(format!("cannot read {}: {e}", path.display())),
                }
            };
            Ok((read(&paths.stdout)?, read(&paths.stderr)?))
        })
    }
}
