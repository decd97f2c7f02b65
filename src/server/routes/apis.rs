//! `/api/v2/apis`: deploy, list, describe, delete and stream logs of APIs.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;

use super::parse_json;
use crate::api::{
    ApiResponse, ApiStatus, DeleteQuery, DeployAction, DeployRequest, DeployResult, MessageResponse,
};
use crate::server::access::Level;
use crate::server::auth::AuthMember;
use crate::server::error::ApiError;
use crate::server::state::AppState;
use crate::server::tokens::Identity;
use crate::server::{endpoints, status, versions};
use crate::spec::{self, ApiSpec, PredictorType};
use crate::store::models::{self, Saved};
use crate::store::ModelRow;

pub async fn deploy(
    State(state): State<AppState>,
    AuthMember(caller): AuthMember,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<DeployResult>>, ApiError> {
    let req: DeployRequest = parse_json(&body)?;
    let base = base_url(&headers);
    let _changing = state.changes.lock().await;
    state.disk.check()?;
    let mut specs = spec::parse_str(&req.config, &req.config_file)
        .map_err(|e| ApiError::InvalidConfig(e.to_string()))?;
    // TrafficSplitters last, as cortex deploys them: their apis are in place first.
    specs.sort_by_key(|s| s.kind == spec::ApiKind::TrafficSplitter);
    let in_file: Vec<(String, spec::ApiKind)> =
        specs.iter().map(|s| (s.name.clone(), s.kind)).collect();
    // Only a bundle the caller may use: another user's answers as if it were not stored.
    if !crate::server::bundle_access::check(&state, &caller, &req.bundle).await? {
        return Err(ApiError::NotFound(format!(
            "bundle {} was not uploaded; PUT it to /api/v2/bundles/{} first",
            req.bundle, req.bundle
        )));
    }
    let bundles = state.bundles.clone();
    let sha = req.bundle.clone();
    let project_dir = tokio::task::spawn_blocking(move || bundles.unpack(&sha))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;

    // Paths of the APIs already stored: a path serves one API.
    let rows = state.store.call(|c| models::list(c)).await?;
    let stored: Vec<endpoints::Taken> = rows.iter().flat_map(versions::taken_by).collect();
    let mut results = Vec::with_capacity(specs.len());
    for spec in specs {
        let name = spec.name.clone();
        let kind = spec.kind;
        let wire_kind = kind.into();
        let failed = |error: String| DeployResult {
            name: name.clone(),
            kind: wire_kind,
            action: DeployAction::Failed,
            model_id: None,
            message: format!("{name} ({kind}): {error}"),
            error: Some(error),
            endpoint: None,
        };
        let batch = kind == spec::ApiKind::BatchAPI;
        if let Some(why) = endpoints::conflict(&stored, &name, &spec.networking.endpoint, batch) {
            results.push(failed(why));
            continue;
        }
        if let Err(e) = check_project(&spec, &project_dir, &req.config_file) {
            results.push(failed(e));
            continue;
        }
        if let Err(e) = check_backends(&spec, &in_file, &rows, &caller) {
            results.push(failed(e));
            continue;
        }
        // A Model Bazaar deploy's parameters stay applied over the new spec.
        let n = name.clone();
        let existing = state
            .store
            .call(move |c| models::get_by_name(c, &n))
            .await?;
        // Updating an api is its owner's (or a team admin's, or an admin's) to do.
        if let Some(Err(e)) = existing
            .as_ref()
            .map(|row| super::require(&caller, row, Level::Owner))
        {
            results.push(failed(e.to_string()));
            continue;
        }
        let (params, deployment_name) = match &existing {
            Some(row) => (
                versions::stored_params(row).map_err(|e| ApiError::Internal(e.to_string()))?,
                row.deployment_name.clone(),
            ),
            None => Default::default(),
        };
        let hash = versions::version_hash(
            &versions::effective_spec(&spec, &params),
            deployment_name.as_deref(),
            &req.bundle,
        );
        if let Some(running) = state.deployments.get(&name) {
            let updating =
                status::api_status(&running) == ApiStatus::Updating && running.has_older();
            if updating && running.spec_hash == hash {
                // This very spec is what the update is rolling out.
                results.push(DeployResult {
                    name: name.clone(),
                    kind: wire_kind,
                    action: DeployAction::UpToDate,
                    model_id: Some(running.model_id.clone()),
                    message: format!("{name} ({kind}) is already updating"),
                    error: None,
                    endpoint: Some(format!("{base}{}", spec.networking.endpoint)),
                });
                continue;
            }
            if updating && !req.force {
                results.push(failed(format!(
                    "{name} is updating (override with --force)"
                )));
                continue;
            }
        }
        let spec_json =
            serde_json::to_string(&spec).map_err(|e| ApiError::Internal(e.to_string()))?;
        let (owner, bundle, config_file) = (
            caller.user.id.clone(),
            req.bundle.clone(),
            req.config_file.clone(),
        );
        let kind_str = kind.as_str();
        let n = name.clone();
        let saved = state
            .store
            .call(move |c| {
                models::save_spec(
                    c,
                    &n,
                    kind_str,
                    &owner,
                    &spec_json,
                    &hash,
                    &bundle,
                    &config_file,
                )
            })
            .await;
        let (row, saved) = match saved {
            Ok(x) => {
                // The version it replaces is swept once nothing runs from it.
                if let Some(old) = existing
                    .as_ref()
                    .filter(|old| old.bundle_sha256 != x.0.bundle_sha256)
                {
                    state.sweeper.release(old);
                }
                x
            }
            Err(crate::store::StoreError::Conflict(m)) => {
                results.push(failed(m));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // What runs can differ from what is stored when an earlier deploy saved its spec and then
        // failed to start it: the stored spec is what must run.
        let runs_stored_spec = state
            .deployments
            .get(&name)
            .is_some_and(|rt| rt.spec_hash == row.spec_hash);
        let action = match saved {
            Saved::Created => DeployAction::Created,
            Saved::Updated => DeployAction::Updated,
            Saved::Unchanged if runs_stored_spec => DeployAction::UpToDate,
            Saved::Unchanged => DeployAction::Updated,
        };
        if action != DeployAction::UpToDate {
            if !row.deploy_status.is_active() {
                // Undeployed (or failed) before: it starts again.
                let id = row.id.clone();
                state
                    .store
                    .call(move |c| models::set_status(c, &id, crate::store::DeployStatus::Starting))
                    .await?;
            }
            versions::start_or_fail(&state.bundles, &state.deployments, &state.store, &row).await?;
        }
        let message = match action {
            DeployAction::Created => format!("creating {name} ({kind})"),
            DeployAction::Updated => format!("updating {name} ({kind})"),
            _ => format!("{name} ({kind}) is up to date"),
        };
        let message = match row.inherits_env {
            true => message,
            false => format!(
                "{message}; it is a copy saved without its base's secrets, so it runs without .env and predictor.env (deploy under another name to use yours)"
            ),
        };
        results.push(DeployResult {
            name,
            kind: wire_kind,
            action,
            model_id: Some(row.id),
            message,
            error: None,
            endpoint: Some(format!("{base}{}", spec.networking.endpoint)),
        });
    }
    Ok(Json(results))
}

/// Checks that the files the spec names are in the project.
fn check_project(
    spec: &ApiSpec,
    project_dir: &std::path::Path,
    config_file: &str,
) -> Result<(), String> {
    let Some(predictor) = &spec.predictor else {
        return Ok(());
    };
    if predictor.kind == PredictorType::Python {
        let path = predictor.path.as_deref().unwrap_or_default();
        if !project_dir.join(path).is_file() {
            return Err(format!(
                "predictor.path: {path:?} is not in the project; put it next to {config_file} (paths are relative to that directory) or fix the path"
            ));
        }
    }
    Ok(())
}

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
    let axum::extract::Query(query) = query
        .map_err(|e| ApiError::BadRequest(format!("{}; use force=true|false", e.body_text())))?;
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
    state.sweeper.release(&row);
    state.sweeper.sweep_locked().await;
    Ok(Json(MessageResponse {
        message: format!("deleting {name}"),
    }))
}

/// A TrafficSplitter's apis must be RealtimeAPIs: of the same file, or deployed.
/// A TrafficSplitter's apis are RealtimeAPIs of this file or deployed ones `caller` may read;
/// one it may not read answers as one that does not exist.
fn check_backends(
    spec: &ApiSpec,
    in_file: &[(String, spec::ApiKind)],
    rows: &[ModelRow],
    caller: &crate::server::tokens::Identity,
) -> Result<(), String> {
    use crate::server::access::{level, ModelAccess};
    let unreadable = |r: &ModelRow| level(&caller.caller(), &ModelAccess::from(r)) < Level::Read;
    for (i, backend) in spec.apis.iter().enumerate() {
        let name = &backend.name;
        if *name == spec.name {
            return Err(format!(
                "apis[{i}].name: a TrafficSplitter cannot send requests to itself; name a RealtimeAPI"
            ));
        }
        let stored = rows.iter().find(|r| r.name == *name);
        let kind = if stored.is_some_and(unreadable) {
            None
        } else {
            in_file
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| k.as_str().to_string())
                .or_else(|| stored.map(|r| r.kind.clone()))
        };
        match kind.as_deref() {
            Some("RealtimeAPI") => {}
            Some(other) => {
                return Err(format!(
                    "apis[{i}].name: {name} is a {other}; a TrafficSplitter sends requests to RealtimeAPIs only"
                ))
            }
            None => {
                return Err(format!(
                    "apis[{i}].name: {name} is not deployed and not in this file; deploy it first or add it to the file"
                ))
            }
        }
    }
    Ok(())
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
fn base_url(headers: &HeaderMap) -> String {
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
    })
}
