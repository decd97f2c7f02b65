//! `/api/v2/apis/{name}/jobs...`: a BatchAPI's jobs for the CLI (list, status, stop), with the
//! control API's permission checks (read to look, owner to stop). The same answers as the
//! seed's routes on the API's own path.

use axum::extract::{Path, Query, State};
use axum::Json;

use super::apis::find;
use crate::api::{JobList, JobStatusResponse, MessageResponse};
use crate::server::access::Level;
use crate::server::auth::AuthMember;
use crate::server::error::ApiError;
use crate::server::live_api::LiveApi;
use crate::server::state::AppState;

#[derive(Debug, serde::Deserialize)]
pub struct StatusQuery {
    /// List every batch that failed for good (otherwise the first 100).
    #[serde(default)]
    failed: bool,
}

/// The running BatchAPI `name`, after checking that the caller has `needed` on it.
async fn batch_api(
    state: &AppState,
    caller: &crate::server::tokens::Identity,
    name: &str,
    needed: Level,
) -> Result<std::sync::Arc<LiveApi>, ApiError> {
    let row = find(state, name).await?;
    super::require(caller, &row, needed)?;
    let live = state.deployments.get(name).ok_or_else(|| {
        ApiError::NotReady(format!(
            "{name} is not running; run `cortex get {name}` to see why"
        ))
    })?;
    if !live.is_batch() {
        return Err(ApiError::Unprocessable(format!(
            "{name} is a {}, not a BatchAPI: it has no jobs",
            live.spec.kind
        )));
    }
    Ok(live)
}

pub async fn list(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path(name): Path<String>,
) -> Result<Json<JobList>, ApiError> {
    let live = batch_api(&state, &caller, &name, Level::Read).await?;
    Ok(Json(JobList {
        jobs: state.jobs.list(&live).await?,
    }))
}

pub async fn get_one(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path((name, job_id)): Path<(String, String)>,
    Query(q): Query<StatusQuery>,
) -> Result<Json<JobStatusResponse>, ApiError> {
    let live = batch_api(&state, &caller, &name, Level::Read).await?;
    let job_status = state.jobs.status(&live, &job_id, q.failed).await?;
    Ok(Json(JobStatusResponse {
        job_status,
        endpoint: None,
        api_spec: None,
    }))
}

pub async fn stop(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path((name, job_id)): Path<(String, String)>,
) -> Result<Json<MessageResponse>, ApiError> {
    let live = batch_api(&state, &caller, &name, Level::Owner).await?;
    state.jobs.stop(&live, &job_id).await?;
    Ok(Json(MessageResponse {
        message: format!("stopped job {job_id}"),
    }))
}
