//! The Model Bazaar routes of users: deploy, undeploy, status and logs.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::{body_or_default, empty, load_model, model_for, status_of};
use crate::api::{DeployParams, DeploymentStatus, ReplicaOutput};
use crate::server::access::Level;
use crate::server::auth::AuthCaller;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::versions;
use crate::store::model_status;
use crate::store::models;

/// `POST /api/v2/deploy/{model_id}` (Owner).
pub async fn deploy(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    // Who may deploy is checked before what they sent: a caller without access hears 403.
    let row = model_for(&state, &user, &raw_id, Level::Owner).await?;
    let mut params: DeployParams = body_or_default(&body)?;
    // Model Bazaar's SDK sends `"deployment_name": ""` when it wants no name.
    params.deployment_name = params.deployment_name.filter(|n| !n.is_empty());
    versions::check_params(&params).map_err(ApiError::Unprocessable)?;
    state.disk.check()?;
    if row.kind != crate::spec::ApiKind::RealtimeAPI.as_str() {
        return Err(ApiError::Unprocessable(format!(
            "{} is a {}; only RealtimeAPIs can be deployed here",
            row.name, row.kind
        )));
    }
    let _changing = state.changes.lock().await;
    let row = load_model(&state, &row.id).await?;
    if row.save_pending {
        return Err(ApiError::Unprocessable(format!(
            "model {} ({}) is still being saved: its files are not complete (its update token marks it complete)",
            row.id, row.name
        )));
    }
    if let Some(name) = &params.deployment_name {
        let path = format!("/{name}");
        let others = state.store.call(|c| models::list(c)).await?;
        // Every path under `/<deployment_name>/` is this model's: no other api's may be there.
        let under = format!("{path}/");
        if let Some(other) = others.iter().find(|o| {
            o.id != row.id
                && versions::paths_of(o)
                    .iter()
                    .any(|p| *p == path || p.starts_with(&under))
        }) {
            return Err(ApiError::Conflict(format!(
                "deployment_name {name:?}: {path} already serves model {} ({}); choose another name",
                other.id, other.name
            )));
        }
    }
    let params_json =
        serde_json::to_string(&params).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (id, name) = (row.id.clone(), params.deployment_name.clone());
    state
        .store
        .call(move |c| models::set_deploy_params(c, &id, name.as_deref(), &params_json))
        .await?;
    let row = load_model(&state, &row.id).await?;
    let spec = versions::spec_of(&row)?;
    let hash = versions::version_hash(
        &spec,
        row.deployment_name.as_deref(),
        &versions::bundle_key(&row),
    );
    let running = state.deployments.get(&row.name);
    let serving_this = running.as_ref().is_some_and(|live| live.spec_hash == hash);
    if row.deploy_status.is_active() && serving_this {
        return Ok(empty());
    }
    if !row.deploy_status.is_active() && !running.as_ref().is_some_and(|live| live.is_ready()) {
        // Failed or stopped, and nothing of it answers: start afresh rather than keep what
        // crash-loops. (A version that still serves keeps serving until the new one is ready.)
        state.deployments.remove(&row.name).await;
    }
    let id = row.id.clone();
    let h = hash.clone();
    state
        .store
        .call(move |c| model_status::set_version(c, &id, &h))
        .await?;
    let row = load_model(&state, &row.id).await?;
    versions::start_or_fail(&state.bundles, &state.deployments, &state.store, &row).await?;
    Ok(empty())
}

/// `DELETE /api/v2/deploy/{model_id}` (Owner): replicas stopped, job tokens revoked, status
/// `stopped`; the model stays and can be deployed again.
pub async fn undeploy(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = model_for(&state, &user, &raw_id, Level::Owner).await?;
    let _changing = state.changes.lock().await;
    // Stopped first: from now on nothing the replicas report changes it.
    let id = row.id.clone();
    state
        .store
        .call(move |c| model_status::undeploy(c, &id))
        .await?;
    state.deployments.remove(&row.name).await;
    Ok(empty())
}

/// `GET /api/v2/deploy/{model_id}/status` (Read).
pub async fn deploy_status(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let row = model_for(&state, &user, &raw_id, Level::Read).await?;
    Ok(Json(status_of(&state, &row).await?))
}

/// `GET /api/v2/deploy/{model_id}/logs` (Read): the recent output of each replica of the
/// current deployment. A replica whose output cannot be read gets an entry saying so.
pub async fn deploy_logs(
    State(state): State<AppState>,
    AuthCaller(user): AuthCaller,
    Path(raw_id): Path<String>,
) -> Result<Json<Vec<ReplicaOutput>>, ApiError> {
    let row = model_for(&state, &user, &raw_id, Level::Read).await?;
    let Some(live) = state.deployments.get(&row.name) else {
        return Ok(Json(Vec::new()));
    };
    let mut out = Vec::new();
    for replica in live.versions.newest().members() {
        let entry = match replica.logs().streams(state.log_tail_lines).await {
            Ok((stdout, stderr)) => ReplicaOutput { stdout, stderr },
            Err(why) => ReplicaOutput {
                stdout: String::new(),
                stderr: format!(
                    "cortex: the output of replica {} cannot be read: {why}",
                    replica.id()
                ),
            },
        };
        out.push(entry);
    }
    Ok(Json(out))
}
