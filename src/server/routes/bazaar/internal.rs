//! The Model Bazaar routes a deployment calls with its job token: its status, status updates
//! and messages.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::{empty, job_model, status_of};
use crate::api::{DeploymentStatus, JobLog, UpdateStatus};
use crate::server::auth::JobAuth;
use crate::server::error::ApiError;
use crate::server::routes::parse_json;
use crate::server::state::AppState;
use crate::store::{deploy_logs, models, DeployStatus, ModelRow};

/// `GET /api/v2/deploy/status-internal` (job token).
pub async fn status_internal(
    State(state): State<AppState>,
    job: JobAuth,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let row = job_model(&state, &job, None).await?;
    Ok(Json(status_of(&state, &row).await?))
}

/// `GET /api/v2/deploy/{model_id}/status-internal` (job token of that model).
pub async fn status_internal_of(
    State(state): State<AppState>,
    job: JobAuth,
    Path(raw_id): Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let row = job_model(&state, &job, Some(&raw_id)).await?;
    Ok(Json(status_of(&state, &row).await?))
}

/// `POST /api/v2/deploy/update-status` (job token): `in_progress`, `complete` or `failed`,
/// from the current deployment only.
pub async fn update_status(
    State(state): State<AppState>,
    job: JobAuth,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: UpdateStatus = parse_json(&body)?;
    let status = DeployStatus::parse(&req.status).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "invalid status {:?}: use one of not_started, starting, in_progress, complete, stopped, failed",
            req.status
        ))
    })?;
    // No deploy lock: a deployment reporting must not wait for another API's stop. The
    // writes below are guarded by the deployment number instead.
    let row = job_model(&state, &job, None).await?;
    if job.0.deployment.is_none() {
        return finish_save(&state, &row, status).await;
    }
    if !matches!(
        status,
        DeployStatus::InProgress | DeployStatus::Complete | DeployStatus::Failed
    ) {
        return Err(ApiError::Conflict(format!(
            "a deployment cannot set its own status to {}; it reports in_progress, complete or failed",
            status.as_str()
        )));
    }
    if row.deploy_status == DeployStatus::Stopped {
        return Err(ApiError::Conflict(format!(
            "model {} was undeployed (stopped); its deployment cannot set it {}",
            row.id,
            status.as_str()
        )));
    }
    if job.0.deployment.is_some_and(|d| d != row.deployment) {
        return Err(ApiError::Conflict(format!(
            "this token belongs to deployment {} of model {}, which a newer deployment ({}) superseded",
            job.0.deployment.unwrap_or_default(),
            row.id,
            row.deployment
        )));
    }
    let (id, deployment) = (row.id.clone(), row.deployment);
    let metadata = match &req.metadata {
        Some(m) => Some(serde_json::to_string(m).map_err(|e| ApiError::Internal(e.to_string()))?),
        None => None,
    };
    // `complete` is what the server sees, not only what a replica says: until the version
    // answers through the gateway it stays `starting` (the watcher records `complete` then).
    let serving = state
        .deployments
        .get(&row.name)
        .is_some_and(|live| live.versions.newest().is_ready());
    let record = status != DeployStatus::Complete || serving;
    let message = req.message.clone();
    let written = state
        .store
        .call(move |c| {
            if let Some(m) = &metadata {
                models::set_metadata(c, &id, m)?;
            }
            if let Some(text) = &message {
                let level = if status == DeployStatus::Failed {
                    deploy_logs::Level::Error
                } else {
                    deploy_logs::Level::Warning
                };
                deploy_logs::add(c, &id, deployment, level, text)?;
            }
            if !record {
                return Ok(true);
            }
            models::set_status_of_deployment(c, &id, deployment, status)
        })
        .await?;
    if !written {
        return Err(ApiError::Conflict(format!(
            "deployment {deployment} of model {} was superseded or undeployed meanwhile; its status stays",
            row.id
        )));
    }
    Ok(empty())
}

/// `update-status` with a saved model's update token: `complete` makes it deployable.
async fn finish_save(
    state: &AppState,
    row: &ModelRow,
    status: DeployStatus,
) -> Result<Json<Value>, ApiError> {
    match status {
        DeployStatus::Complete => {
            let id = row.id.clone();
            state
                .store
                .call(move |c| models::finish_save(c, &id))
                .await?;
            Ok(empty())
        }
        DeployStatus::InProgress => Ok(empty()),
        other => Err(ApiError::Conflict(format!(
            "an update token marks its saved model complete (or in_progress), not {}",
            other.as_str()
        ))),
    }
}

/// `GET|POST /api/v2/deploy/log` (job token): a warning or an error of the deployment.
pub async fn log(
    State(state): State<AppState>,
    job: JobAuth,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: JobLog = parse_json(&body)?;
    let level = deploy_logs::Level::parse(&req.level).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "invalid log level {:?}: use \"warning\" or \"error\"",
            req.level
        ))
    })?;
    let Some(deployment) = job.0.deployment else {
        return Err(ApiError::Forbidden(
            "an update token only uploads its saved model's files and marks it complete; log with the deployment's job token".into(),
        ));
    };
    let row = job_model(&state, &job, None).await?;
    let id = row.id.clone();
    state
        .store
        .call(move |c| deploy_logs::add(c, &id, deployment, level, &req.message))
        .await?;
    Ok(empty())
}
