//! `GET /api/v2/apis/{name}/jobs/{job_id}/logs`: a job's log: the server's lines about it
//! (`cortex: partitioning ...`), then every worker's lines, each with a short prefix naming
//! the worker (`[w0] `). With `tail=N`, only the last N lines of each of them (as an API's
//! log gives the last N of each replica). With `follow=true` the lines come as they are
//! written, interleaved, until the job ends.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::access_lost::access_lost;
use super::apis::find;
use super::merged_logs::{merged, Check, Feed, Origin, Source};
use crate::api::LogsQuery;
use crate::runtime::plan::worker_id;
use crate::server::access::Level;
use crate::server::auth::AuthMember;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::jobs;

pub async fn job_logs(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    headers: HeaderMap,
    Path((name, job_id)): Path<(String, String)>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::BadRequest(format!(
            "{}; use follow=true|false and tail=<number of lines>",
            e.body_text()
        ))
    })?;
    let row = find(&state, &name).await?;
    // A model's given name finds it too; from here on, the name it is routed by.
    let name = row.name.clone();
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
    let server_log = state.jobs.log_of(&name, &job.id).path().to_path_buf();
    let start = match query.tail {
        Some(n) => file_tail_offset(server_log.clone(), n).await,
        None => 0,
    };
    let mut sources = vec![Source::from_offset(
        Origin::Server(server_log),
        String::new(),
        start,
    )];
    for index in 0..job.workers {
        let logs = state
            .deployments
            .replica_logs(&name, &worker_id(&job.id, index));
        let start = match query.tail {
            Some(n) => logs.tail_offset(n).await,
            None => 0,
        };
        sources.push(Source::from_offset(
            Origin::Worker(logs),
            format!("[w{index}] "),
            start,
        ));
    }
    let follow = query.follow && job.end_ns.is_none();
    let feed = JobFeed {
        store: state.store.clone(),
        job_id: job.id.clone(),
    };
    let shutdown = state.shutdown.clone();
    let lost = access_lost(state.clone(), headers, row.id.clone());
    let stream = merged(sources, follow, feed)
        .take_until(async move { shutdown.cancelled().await })
        .take_until(lost);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream.map(Ok::<_, std::io::Error>)),
    )
        .into_response())
}

/// Where the last `n` lines of the server's log of a job start.
async fn file_tail_offset(path: std::path::PathBuf, n: usize) -> u64 {
    tokio::task::spawn_blocking(move || crate::tail::tail_offset(&path, n))
        .await
        .unwrap_or(0)
}

/// A job's log is over once the job has ended.
struct JobFeed {
    store: crate::store::Store,
    job_id: String,
}

impl Feed for JobFeed {
    fn check<'a>(&'a mut self, _: &'a mut Vec<Source>) -> BoxFuture<'a, Check> {
        Box::pin(async move {
            Check {
                ended: job_ended(&self.store, &self.job_id).await,
                note: Vec::new(),
            }
        })
    }
}

/// Whether the job ended (or is gone).
async fn job_ended(store: &crate::store::Store, job_id: &str) -> bool {
    let id = job_id.to_string();
    store
        .call(move |c| jobs::get(c, &id))
        .await
        .map_or(true, |j| j.is_none_or(|j| j.end_ns.is_some()))
}
