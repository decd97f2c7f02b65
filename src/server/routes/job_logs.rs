//! `GET /api/v2/apis/{name}/jobs/{job_id}/logs`: a job's log: the server's lines about it
//! (`cortex: partitioning ...`), then every worker's lines, each with a short prefix naming
//! the worker (`[w0] `). With `follow=true` the lines come as they are written, interleaved,
//! until the job ends.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;

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
    Path((name, job_id)): Path<(String, String)>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::BadRequest(format!("{}; use follow=true|false", e.body_text())))?;
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
    let mut sources = vec![Source::new(
        Origin::Server(state.jobs.log_of(&name, &job.id).path().to_path_buf()),
        String::new(),
    )];
    for index in 0..job.workers {
        sources.push(Source::new(
            Origin::Worker(
                state
                    .deployments
                    .replica_logs(&name, &worker_id(&job.id, index)),
            ),
            format!("[w{index}] "),
        ));
    }
    let follow = query.follow && job.end_ns.is_none();
    let feed = JobFeed {
        store: state.store.clone(),
        job_id: job.id.clone(),
    };
    let shutdown = state.shutdown.clone();
    let stream =
        merged(sources, follow, feed).take_until(async move { shutdown.cancelled().await });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream.map(Ok::<_, std::io::Error>)),
    )
        .into_response())
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
