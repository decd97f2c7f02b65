//! `/api/v2/apis`: list, describe and delete APIs (`apis_deploy.rs` deploys them).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;

use crate::api::{ApiResponse, DeleteQuery, MessageResponse};
use crate::server::access::Level;
use crate::server::auth::AuthMember;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::tokens::Identity;
use crate::server::{status, versions};
use crate::spec;
use crate::store::models;
use crate::store::ModelRow;

pub async fn list(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    headers: HeaderMap,
) -> Result<Json<Vec<ApiResponse>>, ApiError> {
    let rows = state.store.call(|c| models::list(c)).await?;
    let base = base_url(&headers);
    let mut out = Vec::with_capacity(rows.len());
    // Only the apis the caller may read.
    for row in rows
        .into_iter()
        .filter(|row| super::require(&caller, row, Level::Read).is_ok())
    {
        out.push(describe(&state, &caller, row, &base).await?);
    }
    Ok(Json(out))
}

pub async fn get_one(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<ApiResponse>, ApiError> {
    let row = find(&state, &name).await?;
    super::require(&caller, &row, Level::Read)?;
    Ok(Json(
        describe(&state, &caller, row, &base_url(&headers)).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MessageResponse>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| {
        ApiError::BadRequest(format!(
            "{}; use force=true|false and keepCache=true|false",
            e.body_text()
        ))
    })?;
    let _changing = state.changes.lock().await;
    let row = find(&state, &name).await?;
    // A model's given name finds it too; from here on, the name it is routed by.
    let name = row.name.clone();
    super::require(&caller, &row, Level::Owner)?;
    if !query.force {
        let rows = state.store.call(|c| models::list(c)).await?;
        let users = splitters_using(&rows, &name);
        if !users.is_empty() {
            return Err(ApiError::Conflict(format!(
                "{name} is used by traffic splitter {}; delete {} first, or delete {name} with -f (its share of their requests then gets 503)",
                users.join(", "),
                if users.len() == 1 { "it" } else { "them" },
            )));
        }
    }
    // All or nothing: the durable change first (the model, its jobs and their batches, its
    // tokens, in one transaction). When it cannot be stored, nothing has been stopped yet.
    let id = row.id.clone();
    state
        .store
        .call(move |c| models::delete(c, &id))
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::InsufficientStorage(why) => ApiError::InsufficientStorage(format!(
                "{why}; {name} was not deleted and keeps running"
            )),
            other => other,
        })?;
    state.jobs.stop_runners_of(&name).await;
    state.deployments.remove(&name).await;
    state.deployments.remove_logs(&name).await;
    state.jobs.remove_logs(&name).await;
    if query.keep_cache {
        let layers = super::super::cleanup::layers_of(&row);
        let bundles = state.bundles.clone();
        if let Err(e) = state
            .store
            .call(move |c| bundles.keep_for_now(c, &layers))
            .await
        {
            tracing::warn!("cannot keep the bundles of {name}: {e}");
        }
    } else {
        state.sweeper.release(&row);
    }
    state.sweeper.sweep_locked().await;
    crate::server::local_ports::sync_stored(&state.store, &state.local_ports).await;
    Ok(Json(MessageResponse {
        message: format!("deleting {name}"),
    }))
}

/// The TrafficSplitters (stored) that send requests to `name`.
fn splitters_using(rows: &[ModelRow], name: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r.kind == spec::ApiKind::TrafficSplitter.as_str())
        .filter(|r| versions::spec_of(r).is_ok_and(|s| s.apis.iter().any(|b| b.name == name)))
        .map(|r| r.name.clone())
        .collect()
}

pub(super) async fn find(state: &AppState, name: &str) -> Result<ModelRow, ApiError> {
    let n = name.to_string();
    state
        .store
        .call(move |c| models::get_by_name(c, &n))
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "api {name} is not deployed; run `cortex get` to see the deployed apis"
            ))
        })
}

/// `http://<host>` as the client reached us, for endpoint URLs.
pub(super) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The api as `caller` may see it: `predictor.env` values only for its owners (and admins).
async fn describe(
    state: &AppState,
    caller: &Identity,
    row: ModelRow,
    base: &str,
) -> Result<ApiResponse, ApiError> {
    let spec = versions::spec_of(&row).map_err(|e| {
        ApiError::Internal(format!(
            "the configuration of {} is unreadable: {e}",
            row.name
        ))
    })?;
    let live = state.deployments.get(&row.name);
    let metrics = live
        .as_ref()
        .map(|live| live.metrics.snapshot())
        .unwrap_or_default();
    let restore_error = state.deployments.restore_error(&row.name);
    let (_, deployment) =
        status::deployment(&state.store, &row, live.as_deref(), restore_error.clone()).await?;
    let summary = status::summary(live.as_deref(), restore_error);
    let batch = match spec.kind {
        spec::ApiKind::BatchAPI => {
            let id = row.id.clone();
            let jobs = state
                .store
                .call(move |c| crate::store::jobs::list(c, &id))
                .await?;
            Some(crate::api::BatchSummary {
                running_jobs: jobs.iter().filter(|j| j.end_ns.is_none()).count() as u32,
                latest_job_id: jobs.first().map(|j| j.id.clone()),
                latest_job_created_time: jobs
                    .first()
                    .map(|j| crate::clock::rfc3339_nanos(j.created_ns)),
            })
        }
        spec::ApiKind::RealtimeAPI | spec::ApiKind::TrafficSplitter => None,
    };
    let mut config = crate::api::ApiConfig::from(&spec);
    if super::require(caller, &row, Level::Owner).is_err() {
        config.redact_env();
    }
    Ok(ApiResponse {
        batch,
        endpoint: format!("{base}{}", spec.networking.endpoint),
        name: row.display_name().to_string(),
        kind: spec.kind.into(),
        model_id: row.id,
        status: summary.status,
        last_updated: row.updated_at,
        requested: summary.requested,
        up_to_date: summary.up_to_date,
        replicas: summary.replicas,
        metrics,
        errors: summary.errors,
        spec: config,
        deployment,
        engine: Some(state.engine.describe().kind).filter(|k| k != "local"),
    })
}
