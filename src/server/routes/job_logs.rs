//! `GET /api/v2/apis/{name}/jobs/{job_id}/logs`: a job's log: the server's lines about it
//! (`cortex: partitioning ...`), then every worker's lines, each with a short prefix naming
//! the worker (`[w0] `). With `follow=true` the lines come as they are written, interleaved,
//! until the job ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::apis::find;
use crate::api::LogsQuery;
use crate::engine::ReplicaLogs;
use crate::runtime::plan::worker_id;
use crate::server::access::Level;
use crate::server::auth::AuthMember;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::jobs;

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// About how much of one source is read per chunk sent (logs are never read whole into memory).
const MAX_READ: usize = 1024 * 1024;

/// Where one part of a job's log comes from.
enum Origin {
    /// The server's own lines (a file the jobs module appends to).
    Server(PathBuf),
    Worker(Arc<dyn ReplicaLogs>),
}

/// One part of a job's log, read on from `offset`; a line is sent once it is complete.
struct Source {
    origin: Origin,
    prefix: String,
    offset: u64,
    partial: Vec<u8>,
}

impl Source {
    async fn read(&mut self) -> Option<Bytes> {
        match &self.origin {
            Origin::Worker(logs) => logs.read_from(self.offset).await,
            Origin::Server(path) => {
                let (path, offset) = (path.clone(), self.offset);
                tokio::task::spawn_blocking(move || read_file_from(&path, offset))
                    .await
                    .ok()
                    .flatten()
            }
        }
    }

    /// The complete lines written since the last call, each prefixed (at most about
    /// [`MAX_READ`] bytes), and whether more is written than was read.
    async fn new_lines(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut read = 0;
        let more = loop {
            if read >= MAX_READ {
                break true;
            }
            let Some(chunk) = self.read().await.filter(|c| !c.is_empty()) else {
                break false;
            };
            read += chunk.len();
            self.offset += chunk.len() as u64;
            self.partial.extend_from_slice(&chunk);
        };
        prefixed_lines(&mut self.partial, &self.prefix, &mut out);
        (out, more)
    }

    /// What is left after the last newline, once the log is over.
    fn rest(&mut self) -> Vec<u8> {
        if self.partial.is_empty() {
            return Vec::new();
        }
        self.partial.push(b'\n');
        let mut out = Vec::new();
        prefixed_lines(&mut self.partial, &self.prefix, &mut out);
        out
    }
}

/// Up to 64 KiB of a file from `offset` (`None` at its end or when it does not exist).
fn read_file_from(path: &std::path::Path, offset: u64) -> Option<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = f.read(&mut buf).ok()?;
    (n > 0).then(|| {
        buf.truncate(n);
        Bytes::from(buf)
    })
}

/// Moves every complete line of `partial` to `out`, each after `prefix`.
fn prefixed_lines(partial: &mut Vec<u8>, prefix: &str, out: &mut Vec<u8>) {
    let Some(last_newline) = partial.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    let complete: Vec<u8> = partial.drain(..=last_newline).collect();
    for line in complete.split_inclusive(|b| *b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
    }
}

pub async fn job_logs(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path((name, job_id)): Path<(String, String)>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::BadRequest(format!("{}; use follow=true|false", e.body_text())))?;
    let row = find(&state, &name).await?;
    super::require(&caller, &row, Level::Read)?;
    if row.kind != "BatchAPI" {
        return Err(ApiError::Unprocessable(format!(
            "{name} is a {}, not a BatchAPI: it has no jobs; `cortex logs {name}` shows its logs",
            row.kind
        )));
    }
    let id = job_id.clone();
    let job = state
        .store
        .call(move |c| jobs::get(c, &id))
        .await?
        .filter(|j| j.model_id == row.id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{name} has no job {job_id}; `cortex get {name}` lists its jobs"
            ))
        })?;
    let mut sources = vec![Source {
        origin: Origin::Server(state.jobs.log_of(&name, &job.id).path().to_path_buf()),
        prefix: String::new(),
        offset: 0,
        partial: Vec::new(),
    }];
    for index in 0..job.workers {
        sources.push(Source {
            origin: Origin::Worker(
                state
                    .deployments
                    .replica_logs(&name, &worker_id(&job.id, index)),
            ),
            prefix: format!("[w{index}] "),
            offset: 0,
            partial: Vec::new(),
        });
    }
    let follow = query.follow && job.end_ns.is_none();
    let (store, job_id, shutdown) = (state.store.clone(), job.id.clone(), state.shutdown.clone());
    let stream = futures_util::stream::unfold((sources, false), move |(mut sources, done)| {
        let (store, job_id) = (store.clone(), job_id.clone());
        async move {
            if done {
                return None;
            }
            loop {
                // Read whether the job ended before reading: lines written before the
                // ending are then all read.
                let ended = !follow || job_ended(&store, &job_id).await;
                let (mut out, mut more) = (Vec::new(), false);
                for s in &mut sources {
                    let (lines, unread) = s.new_lines().await;
                    out.extend(lines);
                    more |= unread;
                    if ended && !unread {
                        out.extend(s.rest());
                    }
                }
                if ended && !more {
                    return Some((Bytes::from(out), (sources, true)));
                }
                if !out.is_empty() {
                    return Some((Bytes::from(out), (sources, false)));
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        }
    })
    .take_until(async move { shutdown.cancelled().await });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream.map(Ok::<_, std::io::Error>)),
    )
        .into_response())
}

/// Whether the job ended (or is gone).
async fn job_ended(store: &crate::store::Store, job_id: &str) -> bool {
    let id = job_id.to_string();
    store
        .call(move |c| jobs::get(c, &id))
        .await
        .map_or(true, |j| j.is_none_or(|j| j.end_ns.is_some()))
}

#[cfg(test)]
mod tests {
    use super::prefixed_lines;

    #[test]
    fn only_complete_lines_are_sent_each_with_the_prefix() {
        let mut partial = b"one\ntwo\nthr".to_vec();
        let mut out = Vec::new();
        prefixed_lines(&mut partial, "[w1] ", &mut out);
        assert_eq!(out, b"[w1] one\n[w1] two\n");
        assert_eq!(partial, b"thr");
        partial.extend_from_slice(b"ee\n");
        prefixed_lines(&mut partial, "[w1] ", &mut out);
        assert_eq!(out, b"[w1] one\n[w1] two\n[w1] three\n");
        assert!(partial.is_empty());
    }
}
