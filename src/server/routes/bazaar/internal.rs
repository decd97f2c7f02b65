//! The Model Bazaar routes a deployment calls with its job token: its status, status updates
//! and messages.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::{body_or_default, empty, job_model, status_of};
use crate::api::{DeploymentStatus, JobLog, UpdateStatus};
use crate::server::auth::JobAuth;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::store::model_status;
use crate::store::saved_models;
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

/// `POST /api/v2/deploy/update-status` (job token): any status of the seed, from the current
/// deployment. Once a deployment's job has reported, its latest word stands over what the
/// server observes (but for a crash loop, which makes it `failed`). A saved model's update
/// token completes its save here too (as on `/api/v2/train/update-status`).
pub async fn update_status(
    State(state): State<AppState>,
    job: JobAuth,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // No deploy lock: a deployment reporting must not wait for another API's stop. The
    // writes below are guarded by the deployment number instead.
    let row = job_model(&state, &job, None).await?;
    let req: UpdateStatus = body_or_default(&body)?;
    let status = parse_status(&req.status)?;
    let Some(deployment) = job.0.deployment else {
        return finish_save(&state, &row, status).await;
    };
    if deployment != row.deployment {
        return Err(ApiError::Conflict(format!(
            "this token belongs to deployment {deployment} of model {}, which a newer deployment ({}) superseded",
            row.id, row.deployment
        )));
    }
    if row.deploy_status == DeployStatus::Stopped && !row.reported() {
        return Err(undeployed(&row, status));
    }
    let id = row.id.clone();
    // `{}` or no metadata leaves what is stored.
    let metadata = match req.metadata.as_ref().filter(|m| !is_empty_object(m)) {
        Some(m) => Some(serde_json::to_string(m).map_err(|e| ApiError::Internal(e.to_string()))?),
        None => None,
    };
    let message = req.message.clone();
    let written = state
        .store
        .call(move |c| {
            if !model_status::report_status(c, &id, deployment, status)? {
                return Ok(false);
            }
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
            Ok(true)
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

/// `POST /api/v2/train/update-status` (a saved model's update token): `complete` makes the
/// saved model deployable (again and again while the token lives), `in_progress` changes
/// nothing. This is how Model Bazaar's deployment job completes a save.
pub async fn train_update_status(
    State(state): State<AppState>,
    job: JobAuth,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let row = job_model(&state, &job, None).await?;
    let req: UpdateStatus = body_or_default(&body)?;
    let status = parse_status(&req.status)?;
    if job.0.deployment.is_some() || job.0.job_id.is_some() {
        return Err(ApiError::Forbidden(
            "this is a deployment's job token: a deployment reports at /api/v2/deploy/update-status; /api/v2/train/update-status takes a saved model's update token".into(),
        ));
    }
    finish_save(&state, &row, status).await
}

/// A status string of the seed (422 otherwise).
fn parse_status(raw: &str) -> Result<DeployStatus, ApiError> {
    DeployStatus::parse(raw).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "invalid status {raw:?}: use one of not_started, starting, in_progress, complete, stopped, failed"
        ))
    })
}

/// 409: the model was undeployed, so its deployment's job no longer reports.
fn undeployed(row: &ModelRow, status: DeployStatus) -> ApiError {
    ApiError::Conflict(format!(
        "model {} was undeployed (stopped); its deployment cannot set it {}",
        row.id,
        status.as_str()
    ))
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty()) || v.is_null()
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
                .call(move |c| saved_models::finish_save(c, &id))
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
    let Some(deployment) = job.0.deployment else {
        return Err(ApiError::Forbidden(
            "an update token only uploads its saved model's files and marks it complete; log with the deployment's job token".into(),
        ));
    };
    let row = job_model(&state, &job, None).await?;
    let req: JobLog = body_or_default(&body)?;
    let level = deploy_logs::Level::parse(&req.level).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "invalid log level {:?}: use \"warning\" or \"error\"",
            req.level
        ))
    })?;
    if deployment != row.deployment
        || (row.deploy_status == DeployStatus::Stopped && !row.reported())
    {
        return Err(ApiError::Conflict(format!(
            "deployment {deployment} of model {} is no longer current (superseded or undeployed); it logs no more",
            row.id
        )));
    }
    let id = row.id.clone();
    state
        .store
        .call(move |c| deploy_logs::add(c, &id, deployment, level, &req.message))
        .await?;
    Ok(empty())
}
