//! `POST /api/v2/apis/{name}/refresh` (`cortex refresh API`): every replica of a RealtimeAPI is
//! started again with a rolling update, as for a new version of it: the old replicas serve
//! until the new ones are ready, so no request fails.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use sha2::{Digest, Sha256};

use super::apis::find;
use crate::api::{ApiStatus, MessageResponse, RefreshQuery};
use crate::server::access::Level;
use crate::server::auth::AuthMember;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::{status, versions};
use crate::store::model_status;
use crate::store::models;

pub async fn refresh(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path(name): Path<String>,
    query: Result<Query<RefreshQuery>, QueryRejection>,
) -> Result<Json<MessageResponse>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::BadRequest(format!("{}; use force=true|false", e.body_text())))?;
    let _changing = state.changes.lock().await;
    let row = find(&state, &name).await?;
    super::require(&caller, &row, Level::Owner)?;
    let name = row.name.clone();
    if row.kind != crate::spec::ApiKind::RealtimeAPI.as_str() {
        return Err(ApiError::Unprocessable(format!(
            "{name} is a {}: only a RealtimeAPI's replicas are refreshed (a BatchAPI's workers start with each job)",
            row.kind
        )));
    }
    let Some(live) = state.deployments.get(&name) else {
        return Err(ApiError::Conflict(format!(
            "{name} is not running (status {}); deploy it with `cortex deploy` first",
            row.deploy_status.as_str()
        )));
    };
    if !query.force && status::api_status(&live) == ApiStatus::Updating && live.has_older() {
        return Err(ApiError::Conflict(format!(
            "{name} is updating; refresh it once the update is done (`cortex get {name}`), or override the update with `cortex refresh {name} --force`"
        )));
    }
    // The same spec as a new version: a hash of its own, so its replicas are new ones.
    let mut h = Sha256::new();
    h.update(row.spec_hash.as_bytes());
    h.update(b"\0refresh:");
    h.update(crate::clock::now_ns().to_le_bytes());
    let hash = hex::encode(h.finalize());
    let id = row.id.clone();
    state
        .store
        .call(move |c| model_status::set_version(c, &id, &hash))
        .await?;
    let id = row.id.clone();
    let row = state
        .store
        .call(move |c| models::get(c, &id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{name} was deleted meanwhile")))?;
    versions::start_or_fail(&state.bundles, &state.deployments, &state.store, &row).await?;
    Ok(Json(MessageResponse {
        message: format!("refreshing {name}: its replicas are replaced one by one"),
    }))
}
