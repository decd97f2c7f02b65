//! The Model Bazaar v2 deployment API (`/api/v2/deploy/...`), as its documentation writes it:
//! deploy, undeploy, status and logs for users with the right permission on the model, and
//! the internal routes a deployment's replicas call with their job token.
//!
//! `deploy.rs` holds the user routes (deploy, undeploy, status, logs), `internal.rs` the routes
//! a deployment calls with its job token, `save.rs` saving a model and its update token,
//! `model.rs` a model's train status and the caller's permissions on it.

mod deploy;
mod internal;
mod model;
mod save;

pub use deploy::{deploy, deploy_logs, deploy_status, undeploy};
pub use internal::{log, status_internal, status_internal_of, train_update_status, update_status};
pub use model::{permissions, train_status};
pub use save::{save, save_files};

use axum::Json;
use serde_json::{json, Value};

use crate::api::DeploymentStatus;
use crate::server::access::Level;
use crate::server::auth::JobAuth;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::status;
use crate::server::tokens::Identity;
use crate::store::{models, ModelRow};

/// `{}`: what the Model Bazaar API answers when there is nothing to say.
pub(super) fn empty() -> Json<Value> {
    Json(json!({}))
}

/// A Model Bazaar body: an empty or `null` body is `T`'s default (`{}`); otherwise a JSON
/// object (fields it does not know are ignored, as upstream's server does).
pub(super) fn body_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, ApiError> {
    let text = body.trim_ascii();
    if text.is_empty() || text == b"null" {
        return Ok(T::default());
    }
    crate::server::routes::parse_json(body)
}

/// The model id of a path: a UUID (400 otherwise).
pub(super) fn model_id(raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|u| u.to_string())
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{raw:?} is not a model id; model ids are UUIDs (`cortex get <api> -o json` shows an api's model_id)"
            ))
        })
}

pub(super) async fn load_model(state: &AppState, id: &str) -> Result<ModelRow, ApiError> {
    let id_ = id.to_string();
    state
        .store
        .call(move |c| models::get(c, &id_))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("model {id} does not exist")))
}

/// The model of the path, when the caller has at least `needed` on it (403 otherwise).
pub(super) async fn model_for(
    state: &AppState,
    caller: &Identity,
    raw_id: &str,
    needed: Level,
) -> Result<ModelRow, ApiError> {
    let id = model_id(raw_id)?;
    let row = load_model(state, &id).await?;
    super::require(caller, &row, needed)?;
    Ok(row)
}

/// The status of a model's current deployment: what it logged, and what its replicas say.
pub(super) async fn status_of(
    state: &AppState,
    row: &ModelRow,
) -> Result<DeploymentStatus, ApiError> {
    let live = state.deployments.get(&row.name);
    let restore_error = state.deployments.restore_error(&row.name);
    let (status, _) = status::deployment(&state.store, row, live.as_deref(), restore_error).await?;
    Ok(status)
}

/// The model a job token speaks for; with a model in the path, it must be that one (403).
pub(super) async fn job_model(
    state: &AppState,
    job: &JobAuth,
    path_id: Option<&str>,
) -> Result<ModelRow, ApiError> {
    if let Some(raw) = path_id {
        let id = model_id(raw)?;
        if id != job.0.model_id {
            return Err(ApiError::Forbidden(format!(
                "this job token belongs to model {}, not to model {id}",
                job.0.model_id
            )));
        }
    }
    load_model(state, &job.0.model_id).await
}
