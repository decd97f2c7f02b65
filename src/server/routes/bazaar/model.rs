//! The Model Bazaar model routes its clients call besides deploying: a model's train status
//! (what the SDK's `AwaitTrain` polls: a saved model is `in_progress` until its save is
//! complete) and the calling token's permissions on a model (what upstream deployments ask
//! to authorise their own end users).

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::Json;

use super::{load_model, model_for, model_id};
use crate::api::{DeploymentStatus, ModelPermissions};
use crate::server::access::{self, Level, ModelAccess};
use crate::server::auth::AuthCaller;
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// `GET /api/v2/train/{model_id}/status` (Read): `in_progress` while a saved model's files are
/// not complete, `complete` otherwise (a model cortex runs has nothing left to train).
pub async fn train_status(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let row = model_for(&state, &user, &raw_id, Level::Read).await?;
    let status = if row.save_pending {
        "in_progress"
    } else {
        "complete"
    };
    Ok(Json(DeploymentStatus {
        status: status.to_string(),
        errors: Vec::new(),
        warnings: Vec::new(),
    }))
}

/// The last second RFC 3339 writes with four digits: the expiry of a token that has none.
const NEVER: u64 = 253_402_300_799;

/// `GET /api/v2/model/{model_id}/permissions` (any valid user token, bearer or `X-API-Key`):
/// what the calling token may do with the model, as upstream's `ModelPermissions`. A caller
/// with no access gets `false` everywhere (200), as upstream answers; an unknown model is 404.
pub async fn permissions(
    State(state): State<AppState>,
    AuthCaller(caller): AuthCaller,
    Path(raw_id): Path<String>,
) -> Result<Json<ModelPermissions>, ApiError> {
    let row = load_model(&state, &model_id(&raw_id)?).await?;
    let level = access::level(&caller.caller(), &ModelAccess::from(&row));
    let expires = caller
        .expires_at
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(NEVER)
        .min(NEVER);
    let exp = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(expires));
    Ok(Json(ModelPermissions {
        read: level >= Level::Read,
        write: level >= Level::Write,
        owner: level >= Level::Owner,
        username: caller.user.username.clone(),
        exp: exp.to_string(),
    }))
}
