//! `GET /api/v2/apis/{name}/logs`: a replica's log, streamed in chunks (never read whole into
//! memory); with `follow=true` it keeps streaming what the replica writes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::apis::find;
use crate::api::LogsQuery;
use crate::engine::logfile::{read_from, tail_offset};
use crate::server::auth::AuthUser;
use crate::server::deployments::{ApiRuntime, Deployments};
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::replicas;

/// How often a follower looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub async fn logs(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::BadRequest(format!(
            "{}; use follow=true|false and tail=<number of lines>",
            e.body_text()
        ))
    })?;
    let row = find(&state, &name).await?;
    let runtime = state.deployments.get(&name);
    let path = match &runtime {
        Some(rt) => rt.log_path.clone(),
        None => {
            let id = row.id.clone();
            let logged = state
                .store
                .call(move |c| replicas::latest_log(c, &id))
                .await?;
            logged.map(PathBuf::from).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "{name} has not started a replica yet, so it has no logs"
                ))
            })?
        }
    };
    let (start, end) = {
        let path = path.clone();
        let tail = query.tail;
        tokio::task::spawn_blocking(move || {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            (tail.map_or(0, |n| tail_offset(&path, n)), len)
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    };
    let follow = runtime.filter(|_| query.follow).map(|runtime| Follow {
        name,
        runtime,
        deployments: state.deployments.clone(),
    });
    let stream = LogStream {
        path,
        offset: start,
        end: if follow.is_some() { None } else { Some(end) },
        follow,
        shutdown: state.shutdown.clone(),
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, std::io::Error>(chunk), s))
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}

/// What a follower follows: an API's latest replicas.
struct Follow {
    name: String,
    runtime: Arc<ApiRuntime>,
    deployments: Arc<Deployments>,
}

/// Chunks of a log file from `offset`, up to `end` (or on and on while following).
struct LogStream {
    path: PathBuf,
    offset: u64,
    end: Option<u64>,
    follow: Option<Follow>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl LogStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.end.is_some_and(|end| self.offset >= end) || self.shutdown.is_cancelled() {
                return None;
            }
            let (path, offset) = (self.path.clone(), self.offset);
            let chunk = tokio::task::spawn_blocking(move || read_from(&path, offset))
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            if !chunk.is_empty() {
                let mut chunk = chunk;
                if let Some(end) = self.end {
                    chunk.truncate((end - self.offset) as usize);
                }
                self.offset += chunk.len() as u64;
                return Some(Bytes::from(chunk));
            }
            // Nothing new: done, unless following. A follower moves on to the new replica when
            // the API is redeployed and ends when it is deleted.
            let Some(f) = &mut self.follow else {
                return None;
            };
            match f.deployments.get(&f.name) {
                None => return None,
                Some(rt) if Arc::ptr_eq(&rt, &f.runtime) => {}
                Some(rt) => {
                    f.runtime = rt.clone();
                    if rt.log_path != self.path {
                        self.path = rt.log_path.clone();
                        self.offset = 0;
                        return Some(Bytes::from(format!(
                            "cortex: {} was redeployed; following its new replica\n",
                            f.name
                        )));
                    }
                    continue;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
                _ = self.shutdown.cancelled() => return None,
            }
        }
    }
}
