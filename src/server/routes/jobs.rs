//! A BatchAPI's own routes on the gateway's paths: `POST /<api>` submits a job (`?dryRun=true`:
//! checks it and says what would be enqueued, creating nothing), `GET /<api>` lists its jobs,
//! `GET /<api>/<job_id>` is a job's status (`?failed=true`: every dead letter), `DELETE
//! /<api>/<job_id>` stops it; `?jobID=<job_id>` on `/<api>` is the same as `/<api>/<job_id>`,
//! as cortex 0.2x wrote it. Everything else goes to the prediction gateway.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{JobList, JobStatusResponse, MessageResponse};
use crate::batch::submission::{self, Input, S3Use, Submission, MAX_BODY_BYTES};
use crate::server::access::{self, Access, Level};
use crate::server::auth::{anonymous, identity_from_headers};
use crate::server::error::{error_response, ApiError};
use crate::server::gateway;
use crate::server::jobs::sources::{Source, SourceError};
use crate::server::live_api::LiveApi;
use crate::server::state::AppState;

/// What the fallback does with a path.
pub enum Target {
    /// A BatchAPI's own path (submit or list its jobs, or one job by `?jobID=`).
    Batch(Arc<LiveApi>),
    /// `/<batch-api>/<job_id>`.
    Job(Arc<LiveApi>, String),
    /// Anything else: the gateway (a prediction, or its 404), with the API deployed at the
    /// path when there is one.
    Gateway(Option<Arc<LiveApi>>),
}

/// Where the fallback sends a request for `path`.
pub fn target(state: &AppState, path: &str) -> Target {
    let path = path.trim_end_matches('/');
    match state.deployments.by_path(path) {
        Some(live) if live.is_batch() => Target::Batch(live),
        found @ Some(_) => Target::Gateway(found),
        None => match path.rsplit_once('/') {
            Some((prefix, job_id)) => match state.deployments.by_path(prefix) {
                Some(live) if live.is_batch() => Target::Job(live, job_id.to_string()),
                _ => Target::Gateway(None),
            },
            None => Target::Gateway(None),
        },
    }
}

/// The gateway's fallback: a BatchAPI's routes, or a prediction.
pub async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    match target(&state, req.uri().path()) {
        Target::Batch(live) => {
            if let Some(job_id) = query_param(req.uri().query(), "jobID") {
                return job(state, live, job_id, req).await;
            }
            guarded(&state, &live, req, |state, live, req| async move {
                api_route(state, live, req).await
            })
            .await
        }
        Target::Job(live, job_id) => job(state, live, job_id, req).await,
        Target::Gateway(found) => gateway::answer(&Arc::new(state), req, found).await,
    }
}

/// One job's routes (its status, or stopping it).
async fn job(
    state: AppState,
    live: std::sync::Arc<LiveApi>,
    job_id: String,
    req: Request,
) -> Response {
    // Stopping someone's job takes more than reading: write access, even on a public API (a
    // server on loopback only lets a caller without a token in, as cortex did).
    if req.method() == Method::DELETE && !anonymous(req.headers(), state.anonymous_ok) {
        if let Err(e) = needs_write(&state, &live, req.headers()).await {
            return e.into_response();
        }
    }
    guarded(&state, &live, req, |state, live, req| async move {
        job_route(state, live, &job_id, req).await
    })
    .await
}

/// The value of `key` in a query string (`a=1&key=value`), when it has one.
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key && !v.is_empty()).then(|| v.to_string())
    })
}

/// 403 unless the caller has write access to the API's model.
async fn needs_write(
    state: &AppState,
    live: &LiveApi,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    let identity = identity_from_headers(state, headers).await?;
    if access::level(&identity.caller(), &live.access()) < Level::Write {
        if let Some(why) = access::out_of_scope(&identity.caller(), &live.model_id, &live.spec.name)
        {
            return Err(ApiError::Forbidden(why));
        }
        return Err(ApiError::Forbidden(format!(
            "user {} may not stop jobs of {}: it needs write access to the model",
            identity.user.username, live.spec.name
        )));
    }
    Ok(())
}

/// Checks the caller as a prediction is checked (a token presented always is), then runs
/// `route`.
async fn guarded<F, Fut>(
    state: &AppState,
    live: &std::sync::Arc<LiveApi>,
    req: Request,
    route: F,
) -> Response
where
    F: FnOnce(AppState, std::sync::Arc<LiveApi>, Request) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let open = state.anonymous_ok || live.access().access == Access::Public;
    if !anonymous(req.headers(), open) {
        if let Err(e) = gateway::check_caller(state, live, req.headers()).await {
            return e.into_response();
        }
    }
    route(state.clone(), live.clone(), req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn api_route(
    state: AppState,
    live: std::sync::Arc<LiveApi>,
    req: Request,
) -> Result<Response, ApiError> {
    match *req.method() {
        Method::POST => submit(&state, &live, req).await,
        Method::GET => Ok(Json(JobList {
            jobs: state.jobs.list(&live).await?,
        })
        .into_response()),
        _ => Ok(not_allowed(
            &live,
            req.method(),
            "POST (submit a job) and GET (list its jobs)",
        )),
    }
}

async fn job_route(
    state: AppState,
    live: std::sync::Arc<LiveApi>,
    job_id: &str,
    req: Request,
) -> Result<Response, ApiError> {
    match *req.method() {
        Method::GET => {
            let all = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "failed=true"));
            let job_status = state.jobs.status(&live, job_id, all).await?;
            let mut api_spec = crate::api::ApiConfig::from(&live.spec);
            api_spec.redact_env();
            let endpoint = format!(
                "{}{}",
                super::apis::base_url(req.headers()),
                live.spec.networking.endpoint
            );
            Ok(Json(JobStatusResponse {
                job_status,
                endpoint: Some(endpoint),
                api_spec: Some(api_spec),
            })
            .into_response())
        }
        Method::DELETE => {
            state.jobs.stop(&live, job_id).await?;
            Ok(Json(MessageResponse {
                message: format!("stopped job {job_id}"),
            })
            .into_response())
        }
        _ => Ok(not_allowed(
            &live,
            req.method(),
            "GET (the job's status) and DELETE (stop it) on a job",
        )),
    }
}

fn not_allowed(live: &LiveApi, method: &Method, allowed: &str) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is a BatchAPI: it answers {allowed}; {method} is not supported",
            live.spec.name
        ),
    )
}

/// `POST /<api>`: checks the submission, stores the job and its batches, starts it; with
/// `?dryRun=true`, only says what would be enqueued.
async fn submit(state: &AppState, live: &LiveApi, req: Request) -> Result<Response, ApiError> {
    let dry_run = query_param(req.uri().query(), "dryRun").is_some_and(|v| v == "true");
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::PayloadTooLarge(format!(
                    "the job submission is larger than {} MB; write the items to files as newline-delimited JSON and submit them with delimited_files",
                    MAX_BODY_BYTES / (1024 * 1024)
                ))
            } else {
                ApiError::BadRequest(format!(
                    "the job submission could not be read ({e}); send it again"
                ))
            }
        })?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the job submission is not valid JSON: {e}")))?;
    let sub = submission::check(&value).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let files = state.jobs.check_sources(&sub).await.map_err(|e| match e {
        SourceError::Invalid(m) => ApiError::BadRequest(m),
        SourceError::Forbidden(m) => ApiError::Forbidden(m),
        SourceError::Unavailable(m) => ApiError::Unavailable(m),
        SourceError::Upstream(m) => ApiError::BadGateway(m),
    })?;
    if dry_run {
        return Ok(dry_run_answer(&sub, &files));
    }
    state.disk.check()?;
    let spec = state.jobs.submit(live, sub, files).await?;
    Ok(Json(spec).into_response())
}

/// What a job of `sub` would enqueue, in plain text as cortex 0.2x answered a dry run: the
/// files it would read (or whose paths it would take as items, for `file_path_lister`), one
/// per line, and what becomes of them (or how many items in how many batches), then
/// `validations passed`.
fn dry_run_answer(sub: &Submission, files: &[Source]) -> Response {
    let mut text = String::new();
    let for_workers = |items: usize| {
        let batches = items.div_ceil(sub.batch_size.max(1) as usize);
        format!(
            "in {batches} batch(es) of up to {}, for {} worker(s)\n",
            sub.batch_size,
            sub.workers.min(batches.max(1) as u32)
        )
    };
    match &sub.input {
        Input::Files(_) | Input::S3(_) => {
            for file in files {
                text.push_str(&file.to_string());
                text.push('\n');
            }
            let lister = matches!(&sub.input, Input::S3(l) if l.of == S3Use::FilePathLister);
            if lister {
                text.push_str(&format!("{} file path(s) ", files.len()));
                text.push_str(&for_workers(files.len()));
            } else {
                text.push_str(&format!(
                    "{} file(s): their items are read into batches of {} when the job runs\n",
                    files.len(),
                    sub.batch_size
                ));
            }
        }
        Input::Items(items) => {
            text.push_str(&format!("{} item(s) ", items.len()));
            text.push_str(&for_workers(items.len()));
        }
    }
    text.push_str("validations passed");
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
